"""The Watch service: change events for keys, ranges and prefixes, without losing or repeating any.

A ``client.watch(...)`` call opens one gateway stream per KeySet. Each watch keeps the next revision
it must deliver; when the stream breaks (connection lost, server restarted, member
stopped) it is opened again - on whatever endpoint answers - from those revisions, and events below
them are dropped, so every event arrives exactly once and in order. If history was compacted past that
point meanwhile, the watch ends with ``Compacted`` carrying the compact revision.
"""

from __future__ import annotations

from twisted.internet.defer import DeferredQueue
from twisted.logger import Logger

from ._defer import Deferred, returns_deferred
from .retry import RECONNECT
from .errors import AuthFailed, ClientClosed, Compacted, Error, ServerError, TransportError
from .keyset import KeySet
from .results import WatchEvent, WatchResponse
from .rpc import WatchCreate

__all__ = ('Watch', 'WatchEvent', 'Watching', 'EventStream')

_log = Logger()
_FILTERS = ('noput', 'nodelete')


class _Target:
    """One KeySet watched over a stream of its own, and the revision it must deliver next.

    One stream per KeySet: etcd's gateway can take several create requests in one request body, but
    was seen to drop one now and then (2 in 40 tries) - a stream each is reliable.
    """

    __slots__ = ('keyset', 'next_revision', 'created', 'stream', 'retry', 'failures')

    def __init__(self, keyset: KeySet, start_revision):
        self.keyset = keyset
        self.next_revision = start_revision    # None: from "now" (fixed by the first created response)
        self.created = False
        self.stream = None
        self.retry = None
        self.failures = 0


class Watching:
    """A running watch. ``cancel()`` stops it; ``done`` fires (None) when cancelled or when the client
    is closed, or fails with the reason it ended (e.g. ``Compacted``). ``revision`` is the highest
    revision delivered, ``resume_revision`` where to watch again from without losing anything."""

    def __init__(self, client, keysets, on_change, start_revision, prev_kv, filters, progress_notify):
        self._client = client
        self._reactor = client._reactor
        self._on_change = on_change
        self._targets = [_Target(keyset, start_revision) for keyset in keysets]
        self._prev_kv = prev_kv
        self._filters = tuple(filters)
        self._progress_notify = progress_notify
        self.revision = 0             # the highest revision delivered (see resume_revision)
        self.reconnects = 0
        self.state = 'connecting'     # connecting | watching | reconnecting | ended
        self.done = Deferred(lambda _: self._end(None, cancelled=True))
        self._ready = []
        for target in self._targets:
            self._open(target)

    def __repr__(self):
        return f'<Watching {[t.keyset for t in self._targets]} {self.state} revision={self.revision}>'

    @property
    def resume_revision(self) -> int | None:
        """A revision to watch again from without losing anything: every event before it has been
        delivered, for every KeySet of this watch (events are in revision order per KeySet; across
        KeySets of one call they may interleave while etcd catches its watchers up)."""
        pending = [t.next_revision for t in self._targets]
        return None if None in pending else min(pending)

    def ready(self) -> Deferred:
        """Fires once every watch of this call has been created on the server (events from then on are
        seen even without a start revision)."""
        d = Deferred()
        if self.state == 'watching':
            d.callback(self)
        elif self.state == 'ended':
            d.errback(ClientClosed('the watch has ended'))
        else:
            self._ready.append(d)
        return d

    def cancel(self) -> None:
        """Stop watching; ``done`` fires with None."""
        if self.state != 'ended':
            self._end(None)

    # -- the streams

    def _request(self, target: _Target) -> WatchCreate:
        return WatchCreate(target.keyset, target.next_revision or 0, self._prev_kv, self._filters,
                           self._progress_notify)

    def _open(self, target: _Target) -> None:
        target.retry = None
        d = self._client._ensure_login()
        d.addCallbacks(lambda _: self._start_stream(target), self._login_failed, errbackArgs=(target,))

    def _login_failed(self, failure, target: _Target) -> None:
        if isinstance(failure.value, AuthFailed):     # wrong credentials: retrying cannot help
            self._end(failure.value)
        else:
            self._broken(target, failure.value)

    def _start_stream(self, target: _Target) -> None:
        if self.state == 'ended':
            return
        target.created = False
        try:
            target.stream = self._client._watch(self._request(target),
                                                lambda message: self._message(target, message))
        except Error as error:
            self._broken(target, error)
            return
        target.stream.done.addCallbacks(self._stream_ended, self._stream_failed,
                                        callbackArgs=(target,), errbackArgs=(target,))

    def _message(self, target: _Target, message: WatchResponse) -> None:
        if self.state == 'ended':
            return
        if message.canceled:
            self._on_canceled(target, message)
            return
        if message.created:
            self._on_created(target, message)
            return
        if message.events:
            self._deliver(target, message.events)
        else:
            # A progress notification: nothing for this watch up to the header revision.
            revision = message.header.revision
            if target.next_revision is not None and revision >= target.next_revision:
                target.next_revision = revision + 1
        target.failures = 0

    def _on_created(self, target: _Target, message: WatchResponse) -> None:
        target.created = True
        target.failures = 0
        if target.next_revision is None:
            target.next_revision = message.header.revision + 1
        if all(t.created for t in self._targets):
            self.state = 'watching'
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(self)

    def _on_canceled(self, target: _Target, message: WatchResponse) -> None:
        compact = message.compact_revision
        describe = f'watch of {target.keyset.describe()}'
        if compact:
            error = Compacted(f'history before revision {compact} was compacted; the watch could not '
                              f'continue from revision {target.next_revision} (events in between are '
                              f'lost: read the current state and watch again from revision {compact})',
                              describe, 11, 'required revision has been compacted', compact)
        else:
            error = ServerError(message.cancel_reason or 'cancelled by the server', describe)
        self._end(error)

    def _deliver(self, target: _Target, events: list) -> None:
        floor = target.next_revision or 0
        last = 0
        for event in events:
            revision = event.kv.mod_revision
            if revision < floor:
                continue            # already delivered before a reconnect
            last = revision
            try:
                self._on_change(event)
            except Exception:
                _log.failure('watch callback raised on {event!r}; the watch goes on', event=event)
            if self.state == 'ended':
                return
        if last:
            # etcd sends all events of one revision in one response, so the next one starts after it.
            target.next_revision = last + 1
            self.revision = max(self.revision, last)

    # -- endings and reconnects

    def _stream_ended(self, _, target: _Target) -> None:
        if self.state != 'ended':
            self._broken(target, TransportError('the server ended the watch stream'))

    def _stream_failed(self, failure, target: _Target) -> None:
        if self.state == 'ended':
            return
        error = failure.value
        if isinstance(error, ClientClosed):
            self._end(None)         # closing the client is a deliberate end, like cancel()
        elif isinstance(error, (TransportError, ServerError)):
            self._broken(target, error)
        else:
            self._end(error)

    def _broken(self, target: _Target, error: Exception) -> None:
        """A stream is gone: open it again after a short, growing, jittered pause."""
        if self.state == 'ended':
            return
        if self._client._closed:
            self._end(None)
            return
        target.stream = None
        target.created = False
        if self.state == 'watching':
            self.state = 'reconnecting'
        target.failures += 1
        self.reconnects += 1
        pause = RECONNECT.pause(target.failures)
        _log.info('watch stream broken ({error}); reconnecting in {pause:.2f} s', error=error, pause=pause)
        self._client._transport_broken(error)
        target.retry = self._reactor.callLater(pause, self._open, target)

    def _end(self, error, cancelled: bool = False) -> None:
        if self.state == 'ended':
            return
        self.state = 'ended'
        for target in self._targets:
            if target.retry is not None and target.retry.active():
                target.retry.cancel()
            target.retry = None
            stream, target.stream = target.stream, None
            if stream is not None:
                stream.cancel()
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(error or ClientClosed('the watch was cancelled'))
        if cancelled:
            return
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)


class EventStream:
    """``async for event in client.watch_events(...)``: the same watch, as an async iterator.

    Iteration ends when ``cancel()`` is called; a watch that fails (e.g. Compacted) raises from the
    iterator.
    """

    _END = object()

    def __init__(self, client, keysets, **options):
        self._queue = DeferredQueue()
        self._cancelled = False
        self.watching = Watching(client, keysets, self._queue.put, **options)
        self.watching.done.addBoth(self._ended)

    def _ended(self, result):
        self._queue.put(EventStream._END if result is None else result)
        return None

    def ready(self) -> Deferred:
        return self.watching.ready()

    def cancel(self) -> None:
        """End the iteration now (events still queued are dropped) and stop the watch."""
        self._cancelled = True
        self.watching.cancel()

    def __aiter__(self):
        return self

    @returns_deferred
    async def __anext__(self) -> WatchEvent:
        if self._cancelled:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is EventStream._END:
            self._queue.put(item)
            raise StopAsyncIteration
        if hasattr(item, 'raiseException'):      # the Failure the watch ended with
            self._queue.put(item)
            item.raiseException()
        return item


class Watch:
    """Watch calls of the Client (mixed into it)."""

    def watch(self, keys, on_change, *, start_revision: int | None = None, prev_kv: bool = False,
              filters=(), progress_notify: bool = False) -> Watching:
        """Call ``on_change(event)`` for every change of ``keys`` (a key, KeySet, or a list of them).

        ``start_revision`` replays history from that revision; without it the watch starts now (wait
        for ``watching.ready()`` to be sure). ``prev_kv`` adds the previous key-value to events;
        ``filters`` may hold 'noput' and/or 'nodelete'. Returns a ``Watching`` handle.
        """
        return Watching(self, _keysets(keys), on_change, **_options(start_revision, prev_kv, filters,
                                                                      progress_notify))

    def watch_events(self, keys, *, start_revision: int | None = None, prev_kv: bool = False,
                     filters=(), progress_notify: bool = False) -> EventStream:
        """The same as ``watch`` as an async iterator: ``async for event in client.watch_events(...)``."""
        return EventStream(self, _keysets(keys), **_options(start_revision, prev_kv, filters,
                                                              progress_notify))


def _keysets(keys) -> list:
    items = keys if isinstance(keys, (list, tuple)) else [keys]
    if not items:
        raise ValueError('watch needs at least one key or KeySet')
    return [KeySet.of(item) for item in items]


def _options(start_revision, prev_kv, filters, progress_notify) -> dict:
    if start_revision is not None and (type(start_revision) is not int or start_revision < 1):
        raise ValueError(f'start_revision must be an int >= 1, not {start_revision!r}')
    filters = tuple(filters)
    unknown = [f for f in filters if f not in _FILTERS]
    if unknown:
        raise ValueError(f'unknown watch filter(s) {unknown}: use "noput" and/or "nodelete"')
    return {'start_revision': start_revision, 'prev_kv': prev_kv, 'filters': filters,
            'progress_notify': progress_notify}
