"""Mirrors: a local copy of a key range, kept current by a watch, read without a round trip.

``Mirror`` loads the range as one snapshot (every page read at the same revision R), then applies the
changes from R + 1 on, in order. The watch already resumes from the next revision after a broken
stream; if history was compacted past that point meanwhile, the mirror loads a fresh snapshot and
tells its subscribers what changed in between, as if they had seen it happen.

``TableMirror`` and ``IndexMirror`` (made by ``table.mirror(db)``) are the same for a persistent map:
table keys and decoded objects instead of bytes. ``children``, ``delete_prefix`` and ``PathCache``
treat '/'-separated keys as a tree, the way ZooKeeper users expect.

Built only on the public client: ``get`` (paged, at a revision) and ``watch``.
"""

from __future__ import annotations

import bisect
import random
import struct

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..errors import ClientClosed, Compacted, TransportError, Unavailable
from ..keyset import KeySet, as_key, prefix_range_end
from ..results import KeyValue
from ..watch import WatchEvent

__all__ = ('Mirror', 'TableMirror', 'IndexMirror', 'PathCache', 'children', 'delete_prefix')

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


def _pause(failures: int) -> float:
    return random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2 ** min(failures, 6))


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

    ``on_change(event)`` (and every ``subscribe``d callback) gets each change as a ``WatchEvent``,
    after it was applied, with ``prev_kv`` filled in from the copy. ``on_resync(error)`` is told when
    compacted history forced a fresh snapshot (``error`` is the ``Compacted``); ``resyncs`` counts them.
    """

    def __init__(self, client, keys, on_change=None, *, on_resync=None, page_size: int = _PAGE):
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
                pause = _pause(failures)
                _log.info('{mirror!r}: snapshot read failed ({error}); again in {pause:.2f} s',
                          mirror=self, error=error, pause=pause)
                await self._wait(deferLater(self._reactor, pause, lambda: None))

    async def _read_all(self) -> tuple[dict, int]:
        """Every key of the range as ``{key: packed}`` in key order, all pages at one revision."""
        keyset, data = self.keyset, {}
        result = await self._wait(self._client.get(keyset, limit=self._page_size))
        revision = result.header.revision
        while True:
            for kv in result.kvs:
                data[kv.key] = _pack(kv)
            if not (result.more and result.kvs):
                return data, revision
            rest = KeySet(result.kvs[-1].key + b'\0', keyset.range_end)
            result = await self._wait(self._client.get(rest, limit=self._page_size, revision=revision))

    async def _wait(self, d: Deferred):
        if self.state == 'closed':
            d.cancel()
            raise CancelledError()
        self._pending = d
        try:
            return await d
        finally:
            self._pending = None

    def _watch_ready(self, _) -> None:
        if self.state == 'closed':
            return
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
        self.state = 'closed'
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


class _View:
    """What the table and index mirrors share: a raw Mirror underneath, and its life cycle."""

    def __init__(self, db, start: bytes, on_change, on_resync, page_size: int):
        self._cut = len(db.prefix)
        self._callbacks = [on_change] if on_change is not None else []
        self.mirror = Mirror(db.client, KeySet(db.prefix + start, prefix=True), self._raw_change,
                             on_resync=on_resync, page_size=page_size)

    @property
    def revision(self) -> int:
        return self.mirror.revision

    @property
    def resyncs(self) -> int:
        return self.mirror.resyncs

    @property
    def done(self) -> Deferred:
        return self.mirror.done

    def ready(self) -> Deferred:
        """Fires (with this mirror) once the snapshot is loaded and the watch runs."""
        return self.mirror.ready().addCallback(lambda _: self)

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        """Fires once the write at ``revision`` (to this table or index) is applied; see Mirror."""
        return self.mirror.wait_for(revision, timeout).addCallback(lambda _: self)

    def subscribe(self, callback) -> None:
        """Call ``callback(key, old, new)`` for every change from now on (None: absent)."""
        self._callbacks.append(callback)

    def unsubscribe(self, callback) -> None:
        self._callbacks.remove(callback)

    def close(self) -> None:
        self.mirror.close()

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def items(self) -> list:
        return [(key, self[key]) for key in self]

    def _raw_change(self, event: WatchEvent) -> None:
        raise NotImplementedError


class TableMirror(_View):
    """A local copy of a persistent map's records (made by ``table.mirror(db)``).

    ``mirror[key]`` is the decoded object (KeyError if absent); ``get``, ``in``, ``len``, iteration
    over the keys in the table's order, ``items()``. Objects are decoded when first read and kept
    until their record changes: treat them as read-only. Callbacks get ``(key, old_obj, new_obj)``.
    """

    def __init__(self, db, table, on_change=None, *, on_resync=None, page_size: int = _PAGE):
        self.table = table
        self._base = db.prefix
        self._objects: dict[bytes, object] = {}     # raw key -> decoded object, once read
        start, _ = table._range()
        super().__init__(db, start, on_change, on_resync, page_size)

    def __repr__(self):
        return f'<TableMirror {self.table.name} {self.mirror.state} records={len(self)}>'

    def __getitem__(self, key):
        raw = self._base + self.table.encode_key(key)
        obj = self._objects.get(raw)
        if obj is None:
            data = self.mirror.get(raw)
            if data is None:
                raise KeyError(key)
            obj = self._objects[raw] = self.table.decode_value(key, data)
        return obj

    def __contains__(self, key) -> bool:
        return self._base + self.table.encode_key(key) in self.mirror

    def __len__(self) -> int:
        return len(self.mirror)

    def __iter__(self):
        cut, decode = self._cut, self.table.decode_key
        return (decode(raw[cut:]) for raw in self.mirror.keys())

    def kv(self, key) -> KeyValue | None:
        """The record's raw KeyValue (revisions, version), or None if absent."""
        return self.mirror.kv(self._base + self.table.encode_key(key))

    def _raw_change(self, event: WatchEvent) -> None:
        raw = event.kv.key
        cached = self._objects.pop(raw, None)
        if not self._callbacks:
            return
        table = self.table
        key = table.decode_key(raw[self._cut:])
        old = cached
        if old is None and event.prev_kv is not None:
            old = table.decode_value(key, event.prev_kv.value)
        new = table.decode_value(key, event.kv.value) if event.type == 'PUT' else None
        _notify(self._callbacks, key, old, new)


class IndexMirror(_View):
    """A local copy of a table's index (made by ``table.mirror(db, index=name)``): index value →
    record key (a unique index) or → the list of record keys, in key order (a non-unique one).

    Iteration gives the index values in order; callbacks get ``(value, old_record_key,
    new_record_key)`` for each entry added, moved or removed.
    """

    def __init__(self, db, index, on_change=None, *, on_resync=None, page_size: int = _PAGE):
        self.index = index
        self._base = db.prefix
        start, _ = index.map._range()
        super().__init__(db, start, on_change, on_resync, page_size)

    def __repr__(self):
        return f'<IndexMirror {self.index.name} of {self.index.table.name} {self.mirror.state}>'

    def __getitem__(self, value):
        index = self.index
        if index.unique:
            entry = self.mirror.get(self._base + index.map.encode_key(value))
            if entry is None:
                raise KeyError(value)
            return index.record_key(entry)
        start, _ = index._bounds(None, None, value)
        keys = [index.record_key(entry) for _, entry in self.mirror.items(self._base + start)]
        if not keys:
            raise KeyError(value)
        return keys

    def __iter__(self):
        last = object()
        for raw in self.mirror.keys():
            value = self._value_of(raw)
            if value != last:
                yield value
                last = value

    def __len__(self) -> int:
        if self.index.unique:
            return len(self.mirror)
        return sum(1 for _ in self)

    def _value_of(self, raw: bytes):
        decoded = self.index.map.decode_key(raw[self._cut:])
        if self.index.unique:
            return decoded
        parts = decoded[:-1]
        return parts[0] if len(parts) == 1 else parts

    def _raw_change(self, event: WatchEvent) -> None:
        if not self._callbacks:
            return
        index = self.index
        value = self._value_of(event.kv.key)
        old = index.record_key(event.prev_kv.value) if event.prev_kv is not None else None
        new = index.record_key(event.kv.value) if event.type == 'PUT' else None
        if old != new:
            _notify(self._callbacks, value, old, new)


# -- keys as paths

def _directory(path: bytes) -> bytes:
    """``b'/app'`` and ``b'/app/'`` both name the level below ``/app``: ``b'/app/'``."""
    path = as_key(path, 'path')
    return path if path.endswith(b'/') else path + b'/'


def _child(directory: bytes, key: bytes) -> tuple[bytes, bool]:
    """The name one level below ``directory`` that ``key`` lies in, and whether it lies deeper."""
    name, slash, _ = key[len(directory):].partition(b'/')
    return name, bool(slash)


async def children(client, prefix: bytes, *, page_size: int = _PAGE) -> list:
    """The names one '/'-level below ``prefix``, sorted: keys ``/app/a`` and ``/app/b/c`` under
    ``b'/app/'`` give ``[b'a', b'b']``. One consistent read; a big subtree is skipped, not listed."""
    directory = _directory(prefix)
    end = prefix_range_end(directory)
    for attempt in range(3):
        names, start, revision = set(), directory, None
        try:
            while True:
                result = await client.get(KeySet(start, end), keys_only=True, limit=page_size,
                                          revision=revision)
                revision = revision or result.header.revision
                for kv in result.kvs:
                    name, _ = _child(directory, kv.key)
                    if name:
                        names.add(name)
                if not (result.more and result.kvs):
                    return sorted(names)
                last = result.kvs[-1].key
                name, deeper = _child(directory, last)
                # Every key left below ``name`` sorts before ``directory + name + b'0'`` ('/' + 1).
                start = directory + name + b'0' if deeper and name else last + b'\0'
        except Compacted:
            if attempt == 2:
                raise


async def delete_prefix(client, prefix: bytes) -> int:
    """Delete every key that starts with ``prefix`` (one request) → how many were deleted."""
    prefix = as_key(prefix, 'prefix')
    if not prefix:
        raise ValueError('delete_prefix: the empty prefix would delete every key in etcd')
    result = await client.delete(KeySet(prefix, prefix=True))
    return result.deleted


class PathCache:
    """A Mirror of the tree below ``root`` (keys starting with ``root + b'/'``), asked like ZooKeeper:
    ``get(path)`` (the value, or None), ``exists(path)`` (a key, or a level with keys below it) and
    ``children(path)`` - all synchronous. Paths are whole keys, such as ``b'/app/config/db'``.
    """

    def __init__(self, client, root: bytes, on_change=None, *, on_resync=None, page_size: int = _PAGE):
        self.root = _directory(root)
        self.mirror = Mirror(client, KeySet(self.root, prefix=True), on_change, on_resync=on_resync,
                             page_size=page_size)

    def __repr__(self):
        return f'<PathCache {self.root!r} {self.mirror.state} keys={len(self.mirror)}>'

    @property
    def revision(self) -> int:
        return self.mirror.revision

    def ready(self) -> Deferred:
        return self.mirror.ready().addCallback(lambda _: self)

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        return self.mirror.wait_for(revision, timeout).addCallback(lambda _: self)

    def subscribe(self, callback) -> None:
        """Call ``callback(event)`` (a WatchEvent) for every change below the root."""
        self.mirror.subscribe(callback)

    def close(self) -> None:
        self.mirror.close()

    def get(self, path: bytes):
        return self.mirror.get(path)

    def exists(self, path: bytes) -> bool:
        if path in self.mirror:
            return True
        lo, hi = self.mirror._span(_directory(path))
        return lo < hi

    def children(self, path: bytes) -> list:
        """The names one level below ``path``, sorted (``[]`` for a leaf or an absent path)."""
        directory = _directory(path)
        keys = self.mirror._keys()
        end = prefix_range_end(directory)
        names = set()
        i = bisect.bisect_left(keys, directory)
        while i < len(keys) and keys[i] < end:
            name, deeper = _child(directory, keys[i])
            if name:
                names.add(name)
            if deeper and name:
                i = bisect.bisect_left(keys, directory + name + b'0', i + 1)
            else:
                i += 1
        return sorted(names)
