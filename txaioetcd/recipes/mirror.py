"""Mirrors: a local copy of a key range, kept current by a watch, read without a round trip.

``Mirror`` loads the range as one snapshot (every page read at the same revision R), then applies the
changes from R + 1 on, in order. The watch already resumes from the next revision after a broken
stream; if history was compacted past that point meanwhile, the mirror loads a fresh snapshot and
tells its subscribers what changed in between, as if they had seen it happen.

``table_mirror`` has the same for persistent maps (``table.mirror(db)``) and ``paths`` treats
'/'-separated keys as a tree, the way ZooKeeper users expect; both are built on ``Mirror``.

Built only on the public client: ``get`` (paged, at a revision) and ``watch``.
"""

from __future__ import annotations

import bisect
import struct

from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .._defer import Deferred
from ..retry import RECONNECT, Deadline
from ..errors import ClientClosed, Compacted, Timeout, TransportError, Unavailable
from ..keyset import KeySet, as_key, prefix_range_end
from ..results import KeyValue
from ..watch import WatchEvent

__all__ = ('Mirror',)

_log = Logger()

# What the mirror stores per key: these four numbers packed in front of the value, in one bytes
# object. A KeyValue (or a tuple of ints) per key would cost several times the value itself.
_META = struct.Struct('>qqqq')      # create_revision, mod_revision, version, lease
_CUT = _META.size
_PAGE = 1000
# Reading the snapshot is retried after these (the server is restarting, a page's revision was
# compacted away meanwhile); anything else ends the mirror.
_TRANSIENT = (TransportError, Unavailable, Compacted)


def _pack(kv: KeyValue) -> bytes:
    return _META.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease) + kv.value


def _unpack(key: bytes, blob: bytes) -> KeyValue:
    return KeyValue(key, blob[_CUT:], *_META.unpack_from(blob))


def _notify(callbacks, *args) -> None:
    for callback in list(callbacks):
        try:
            callback(*args)
        except Exception:
            _log.failure('mirror callback {callback!r} raised; the mirror goes on', callback=callback)


class Mirror:
    """A local copy of ``keys`` (a key, KeySet or prefix range), kept current by a watch.

    Reads are synchronous: ``mirror[key]`` (the value; KeyError if absent), ``get``, ``in``, ``len``,
    iteration over the keys in key order, ``items()``, ``kv(key)``. ``revision`` is the store revision
    the copy reflects (every change up to it applied). ``await mirror.ready()`` once, before trusting
    it; ``wait_for(revision)`` waits for a write of your own.

    ``on_change(event)`` (and every callback given to ``subscribe``) gets each change as a ``WatchEvent``,
    after it was applied, with ``prev_kv`` filled in from the copy. ``on_resync(error)`` is told when
    compacted history forced a fresh snapshot (``error`` is the ``Compacted``); ``resyncs`` counts them.

    ``timeout`` (seconds) bounds the start: every read of the first snapshot gets what is left of it,
    and a mirror not ready by then ends - ``ready()`` and ``done`` fail with ``Timeout``.
    """

    def __init__(self, client, keys, on_change=None, *, on_resync=None, page_size: int = _PAGE,
                 timeout: float | None = None):
        self.keyset = KeySet.of(keys)
        self.revision = 0
        self.resyncs = 0
        self.state = 'loading'          # loading | following | resyncing | closed
        self.done = Deferred()          # None once closed; fails with the error that ended it
        self._client = client
        self._reactor = client.reactor
        self._page_size = page_size
        self._data: dict[bytes, bytes] = {}         # key -> _pack(kv)
        self._sorted: list[bytes] | None = None     # the keys in order, kept once asked for
        self._callbacks = [on_change] if on_change is not None else []
        self._resync_callbacks = [on_resync] if on_resync is not None else []
        self._ready: list[Deferred] | None = []     # None once ready
        self._waiters: list[tuple[int, Deferred]] = []
        self._watching = None
        self._pending: Deferred | None = None
        self._applied = 0                           # the revision of the last change applied
        self._settling = None                       # the call that makes it ``revision``
        self._start = Deadline(self._reactor, timeout) if timeout is not None else None
        self._start_timer = (self._reactor.callLater(timeout, self._start_expired)
                             if timeout is not None else None)
        self._error = None                          # what ends the mirror, if not close()
        Deferred.fromCoroutine(self._follow())

    def __repr__(self):
        return f'<Mirror {self.keyset!r} {self.state} keys={len(self._data)} revision={self.revision}>'

    # -- reading

    def __getitem__(self, key: bytes) -> bytes:
        blob = self._data.get(key)
        if blob is None:
            as_key(key)
            raise KeyError(key)
        return blob[_CUT:]

    def get(self, key: bytes, default=None):
        blob = self._data.get(key)
        if blob is None:
            as_key(key)
            return default
        return blob[_CUT:]

    def kv(self, key: bytes) -> KeyValue | None:
        """The key's KeyValue (value, revisions, version, lease), or None if absent."""
        blob = self._data.get(key)
        if blob is None:
            as_key(key)
            return None
        return _unpack(key, blob)

    def __contains__(self, key) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self.keys())

    def keys(self, prefix: bytes = b'') -> list:
        """The keys in key order (those starting with ``prefix``, if given), as a list of their own."""
        keys = self._keys()
        if not prefix:
            return list(keys)
        return keys[slice(*self._span(prefix))]

    def items(self, prefix: bytes = b'') -> list:
        """``(key, value)`` pairs in key order (of the keys starting with ``prefix``, if given)."""
        data = self._data
        return [(key, data[key][_CUT:]) for key in self.keys(prefix)]

    def values(self) -> list:
        return [value for _, value in self.items()]

    def _keys(self) -> list:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        return self._sorted

    def _span(self, prefix: bytes) -> tuple[int, int]:
        """Where the keys starting with ``prefix`` lie in ``_keys()``: ``[lo, hi)``."""
        keys = self._keys()
        end = prefix_range_end(prefix)
        hi = len(keys) if end == b'\0' else bisect.bisect_left(keys, end)
        return bisect.bisect_left(keys, prefix, 0, hi), hi

    # -- waiting and callbacks

    def ready(self) -> Deferred:
        """Fires (with the mirror) once the snapshot is loaded and the watch runs."""
        d = Deferred()
        if self._ready is None:
            d.callback(self)
        elif self.state == 'closed':
            d.errback(ClientClosed('the mirror is closed'))
        else:
            self._ready.append(d)
        return d

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        """Fires (with the mirror) once ``revision`` - that of a write to a mirrored key - is applied.

        Only changes of mirrored keys move ``revision``: waiting for any other revision waits until
        one of them changes (give a ``timeout``).
        """
        d = Deferred()
        if self.revision >= revision:
            d.callback(self)
            return d
        if self.state == 'closed':
            d.errback(ClientClosed('the mirror is closed'))
            return d
        self._waiters.append((revision, d))
        if timeout is not None:
            d.addTimeout(timeout, self._reactor)
        return d

    def subscribe(self, callback) -> None:
        """Call ``callback(event)`` for every change from now on (after ``on_change``)."""
        self._callbacks.append(callback)

    def unsubscribe(self, callback) -> None:
        self._callbacks.remove(callback)

    def subscribe_resync(self, callback) -> None:
        """Call ``callback(error)`` after every resync (like ``on_resync``)."""
        self._resync_callbacks.append(callback)

    def close(self) -> None:
        """Stop following; the copy stays readable as it is. ``done`` fires with None."""
        if self.state == 'closed':
            return
        self.state = 'closed'
        if self._watching is not None:
            self._watching.cancel()
        if self._pending is not None:
            self._pending.cancel()

    # -- following

    async def _follow(self) -> None:
        error = None
        try:
            data, revision = await self._snapshot()
            self._data, self.revision, self._applied = data, revision, revision
            while self.state != 'closed':
                watching = self._client.watch(self.keyset, self._apply, start_revision=revision + 1)
                self._watching = watching
                watching.ready().addCallbacks(self._watch_ready, lambda _: None)
                try:
                    await watching.done
                    return                      # cancelled by close()
                except Compacted as compacted:
                    if self.state == 'closed':
                        return
                    _log.info('{mirror!r}: history compacted ({error}); loading a fresh snapshot',
                              mirror=self, error=compacted)
                    self.state = 'resyncing'
                    data, revision = await self._snapshot()
                    self._resync(data, revision, compacted)
        except CancelledError:
            pass                                # close() while reading
        except Exception as failure:
            if self.state != 'closed':
                error = failure
        finally:
            self._end(error)

    async def _snapshot(self) -> tuple[dict, int]:
        failures = 0
        while True:
            try:
                return await self._read_all()
            except _TRANSIENT as error:
                if self.state == 'closed':
                    raise CancelledError() from None
                failures += 1
                pause = RECONNECT.pause(failures)
                _log.info('{mirror!r}: snapshot read failed ({error}); again in {pause:.2f} s',
                          mirror=self, error=error, pause=pause)
                await self._wait(deferLater(self._reactor, pause, lambda: None))

    async def _read_all(self) -> tuple[dict, int]:
        """Every key of the range as ``{key: packed}`` in key order, all pages at one revision."""
        keyset, data = self.keyset, {}
        result = await self._wait(self._client.get(keyset, limit=self._page_size, timeout=self._timeout()))
        revision = result.header.revision
        while True:
            for kv in result.kvs:
                data[kv.key] = _pack(kv)
            if not (result.more and result.kvs):
                return data, revision
            rest = KeySet(result.kvs[-1].key + b'\0', keyset.range_end)
            result = await self._wait(self._client.get(rest, limit=self._page_size, revision=revision,
                                                       timeout=self._timeout()))

    async def _wait(self, d: Deferred):
        if self.state == 'closed':
            d.cancel()
            raise CancelledError()
        self._pending = d
        try:
            return await d
        finally:
            self._pending = None

    def _timeout(self) -> float | None:
        """Reads while starting get what is left of the start's deadline; later ones their own."""
        if self._start is None or self._ready is None:
            return None
        return self._start.bound(self._client.timeout)

    def _start_expired(self) -> None:
        self._start_timer = None
        if self._ready is not None and self.state != 'closed':
            self._error = Timeout(f'the mirror did not load and start watching within '
                                  f'{self._start.seconds:g} s', f'mirror of {self.keyset.describe()}')
            self.close()

    def _watch_ready(self, _) -> None:
        if self.state == 'closed':
            return
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self._start_timer = None
        self.state = 'following'
        ready, self._ready = self._ready, None
        for d in ready or ():
            d.callback(self)

    def _apply(self, event: WatchEvent) -> None:
        kv = event.kv
        key = kv.key
        old = self._data.get(key)
        if event.type == 'DELETE':
            if old is not None:
                del self._data[key]
                self._forget(key)
        else:
            self._data[key] = _pack(kv)
            if old is None:
                self._remember(key)
        if self._callbacks:
            _notify(self._callbacks, WatchEvent(event.type, kv, _unpack(key, old) if old else None))
        # One revision can change many keys (a transaction), and they come as one message: the
        # revision is complete once that message was handled - on the reactor's next turn.
        self._applied = kv.mod_revision
        if self._settling is None:
            self._settling = self._reactor.callLater(0, self._settle)

    def _settle(self) -> None:
        self._settling = None
        self.revision = max(self.revision, self._applied)
        self._wake()

    def _remember(self, key: bytes) -> None:
        if self._sorted is not None:
            bisect.insort(self._sorted, key)

    def _forget(self, key: bytes) -> None:
        if self._sorted is not None:
            del self._sorted[bisect.bisect_left(self._sorted, key)]

    def _resync(self, data: dict, revision: int, compacted: Compacted) -> None:
        """Swap in a fresh snapshot and tell subscribers, in key order, what differs from the copy."""
        old = self._data
        changes = []
        for key, blob in data.items():
            before = old.get(key)
            if before != blob:
                changes.append((key, 'PUT', before, blob))
        for key in old.keys() - data.keys():
            changes.append((key, 'DELETE', old[key], None))
        changes.sort(key=lambda change: change[0])
        self._data, self._sorted = data, None
        self.revision = self._applied = revision
        self.resyncs += 1
        self.state = 'following'
        for key, kind, before, after in changes:
            kv = _unpack(key, after) if after is not None else KeyValue(key, mod_revision=revision)
            prev = _unpack(key, before) if before is not None else None
            _notify(self._callbacks, WatchEvent(kind, kv, prev))
        _notify(self._resync_callbacks, compacted)
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        reached = [d for revision, d in self._waiters if revision <= self.revision]
        self._waiters = [(r, d) for r, d in self._waiters if r > self.revision and not d.called]
        for d in reached:
            if not d.called:
                d.callback(self)

    def _end(self, error) -> None:
        error = error or self._error
        self.state = 'closed'
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self._start_timer = None
        self._watching = None
        if self._settling is not None:
            self._settling.cancel()
            self._settle()
        ready, self._ready = self._ready, None
        waiters, self._waiters = self._waiters, []
        for d in list(ready or ()) + [d for _, d in waiters]:
            if not d.called:
                d.errback(error or ClientClosed('the mirror was closed'))
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)
