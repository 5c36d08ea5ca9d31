"""Lock: a distributed mutex on etcd, after etcd's Go ``concurrency.Mutex``.

Each contender puts the key ``name/<its lease id in hex>``, attached to a lease of its own that is kept
alive in the background. etcd's create revisions order those keys into a queue: the contender whose key
is the oldest holds the lock. Every other contender watches only the key just ahead of its own (its
predecessor), so a release wakes one waiter, not the whole herd. A holder that dies stops keeping its
lease alive; the lease expires, etcd deletes the key and the next in line moves up.

``Election`` (election.py) queues the same way, through ``_Place``.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from ..errors import Compacted, Error
from ..keyset import KeySet, as_key
from ..lease import LeaseLost
from ..ops import CompCreated, OpGet, OpSet, Transaction

__all__ = ('Lock', 'LockTimeout', 'lock')

_log = Logger()


class LockTimeout(Error):
    """``Lock.acquire(timeout=...)`` gave up: the lock did not come free in time. The attempt left
    nothing behind (its key is deleted and its lease revoked)."""


def _check_name(name, what: str) -> bytes:
    name = as_key(name, what)
    if not name:
        raise ValueError(f'{what} must not be empty')
    return name


def _check_ttl(ttl) -> int:
    if type(ttl) is not int or ttl < 1:
        raise ValueError(f'ttl must be a whole number of seconds >= 1, not {ttl!r}')
    return ttl


async def _cancel_and_wait(pending: Deferred) -> None:
    """Cancel a running entry and wait until it has cleaned up after itself."""
    settled = Deferred()
    # A cancelled coroutine's Deferred fires only once the coroutine has finished its cleanup.
    pending.addBoth(lambda _: settled.callback(None))
    pending.cancel()
    await settled


async def _finish(running: Deferred) -> None:
    """Wait until ``running`` (which never fails) has fired; cancelling this wait neither stops
    ``running`` nor ends the wait."""
    while True:
        shield = Deferred()             # cancelling it leaves ``running`` alone
        running.chainDeferred(shield)
        try:
            await shield
            return
        except CancelledError:
            continue


class _Place:
    """One contender's place in the queue under ``prefix``: its key, attached to a lease of its own.

    ``on_lost(reason)`` is called if the lease is lost (it expired, or someone revoked it) while the
    place is kept.
    """

    def __init__(self, client, prefix: bytes, ttl: int, describe: str, on_lost):
        self._client = client
        self.prefix = prefix
        self.ttl = ttl
        self.describe = describe
        self._on_lost = on_lost
        self.lease = None
        self.key = None
        self.revision = 0        # create revision of our key: our position in the queue
        self._waiting = None     # the wait for a predecessor's deletion, while one runs

    async def enter(self, value: bytes) -> None:
        """Queue up with ``value`` and return once first in line. On any failure - a cancellation
        included - leave the queue again before raising."""
        try:
            await self._join(value)
            await self._wait_turn()
        except Exception:          # CancelledError included
            left = Deferred.fromCoroutine(self.leave())
            left.addErrback(self._leave_failed)
            # A second cancel (a timeout, then a release) must neither cut the cleanup short nor end
            # the wait for it: whoever awaits this entry hears of its end once nothing is left behind.
            await _finish(left)
            raise

    def _leave_failed(self, failure) -> None:
        # The entry's own error is the one to raise; the lease, no longer kept alive, expires anyway.
        _log.failure('{describe}: leaving the queue after a failed entry failed', failure,
                     describe=self.describe)

    async def _join(self, value: bytes) -> None:
        lease = await self._client.lease(self.ttl)
        self.lease = lease
        lease.on_expired(self._lease_lost)
        self.key = self.prefix + b'%x' % lease.lease_id
        # The compare keeps a key's first place should the same lease join again.
        joined = await self._client.do(Transaction(compare=[CompCreated(self.key, '==', 0)],
                                                   success=[OpSet(self.key, value, lease=lease)],
                                                   failure=[OpGet(self.key)]))
        self.revision = (joined.header.revision if joined.succeeded
                         else joined.responses[0].kvs[0].create_revision)

    async def _wait_turn(self) -> None:
        # etcd applies limit after the create-revision filter and the sort: this is the nearest older key.
        ahead = OpGet(KeySet(self.prefix, prefix=True), limit=1, sort_order='descend',
                      sort_target='create', max_create_revision=self.revision - 1, keys_only=True)
        mine = OpGet(self.key, keys_only=True)
        while True:
            # Both reads at one revision, so "nobody ahead" and "still queued" hold together.
            read = await self._client.do(Transaction(success=[ahead, mine]))
            predecessor, own = read.responses
            if not own.kvs:
                raise LeaseLost('our key vanished while waiting: the lease expired or was revoked',
                                self.describe)
            if not predecessor.kvs:
                if self.lease.state != 'alive':
                    # Keepalives failed for longer than the TTL: etcd may drop the key any moment.
                    raise LeaseLost('the lease was lost while waiting', self.describe)
                return
            # Watch from just after the read, not from "now": a delete between the read and the
            # watch's creation would otherwise go unseen and we would wait forever.
            await self._deleted(predecessor.kvs[0].key, read.header.revision + 1)

    async def _deleted(self, key: bytes, start_revision: int) -> None:
        """Wait until ``key`` is deleted at ``start_revision`` or later."""
        deleted = Deferred()

        def on_change(event):
            if event.type == 'DELETE' and not deleted.called:
                deleted.callback(None)

        def ended(failure):
            if deleted.called:
                return None
            if failure.check(Compacted):
                # The history we needed is gone: reading the queue again tells what happened.
                deleted.callback(None)
            else:
                deleted.errback(failure)
            return None

        watching = self._client.watch(key, on_change, start_revision=start_revision)
        watching.done.addErrback(ended)
        self._waiting = deleted
        try:
            await deleted
        finally:
            self._waiting = None
            watching.cancel()

    def _lease_lost(self, lease, reason: LeaseLost) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.called:
            waiting.errback(reason)
        self._on_lost(reason)

    async def leave(self) -> None:
        """Give up the place: delete the key (waking whoever waits behind it), revoke the lease."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            await self._client.delete(self.key)
        finally:
            # revoke() stops the keepalives before it asks etcd, so even when etcd cannot be reached
            # the lease - and the key with it - expires within its TTL.
            await lease.revoke()


class Lock:
    """A distributed mutex named ``name`` (bytes), shared by every client that uses the same name.

    ``await lock.acquire()`` waits (contenders are served in the order they asked) and ``await
    lock.release()`` lets the next one in; ``async with Lock(client, b'name'):`` does both.

    The holder's lease of ``ttl`` seconds is kept alive in the background. If it is lost (the process
    stalled, or etcd was out of reach for longer than the TTL) the lock is lost with it: ``held`` turns
    False and ``lock.lease.expired`` fires, while another contender may already hold the lock.

    One Lock object is one contender: it is not re-entrant; tasks that must exclude each other each use
    a Lock of their own. The keys live under ``name + b'/'``, so two names should not be such that one
    is the other followed by ``b'/'`` and more.
    """

    def __init__(self, client, name: bytes, ttl: int = 10):
        self._client = client
        self.name = _check_name(name, 'lock name')
        self.ttl = _check_ttl(ttl)
        self._place = None
        self._pending = None
        self._held = False

    def __repr__(self):
        state = 'held' if self._held else 'acquiring' if self._pending else 'not held'
        return f'<Lock {self.name!r} {state}>'

    @property
    def held(self) -> bool:
        """Whether this contender holds the lock (False once its lease is lost)."""
        return self._held

    @property
    def lease(self):
        """The Lease of the current attempt or hold, else None."""
        return self._place.lease if self._place is not None else None

    @property
    def key(self) -> bytes | None:
        """This contender's key in etcd (``name/<lease id in hex>``), while it has one."""
        return self._place.key if self._place is not None else None

    async def acquire(self, timeout: float | None = None) -> 'Lock':
        """Wait until the lock is ours → this Lock.

        ``timeout`` (seconds) bounds the wait: past it, ``LockTimeout`` is raised and the attempt left
        nothing behind. Cancelling the returned Deferred gives up the same way.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f'timeout must be None or seconds >= 0, not {timeout!r}')
        if self._place is not None:
            raise RuntimeError(f'{self!r}: this Lock object holds or is acquiring it already; release '
                               f'it first, or use another Lock object for another contender')
        place = self._place = _Place(self._client, self.name + b'/', self.ttl, f'lock {self.name!r}',
                                     self._lost)
        entered = self._pending = Deferred.fromCoroutine(place.enter(b''))
        if timeout is not None:
            # Twisted's reactor is the client's clock; a timeout cancels the entry, which cleans up.
            entered.addTimeout(timeout, self._client.reactor)
        try:
            await entered
        except DeferredTimeout:
            self._place = None
            raise LockTimeout(f'not acquired within {timeout} s', f'acquire of lock {self.name!r}') from None
        except BaseException:
            self._place = None
            raise
        finally:
            self._pending = None
        self._held = True
        return self

    async def release(self) -> None:
        """Let the next contender in (delete our key, revoke our lease). Also gives up a lock that was
        lost, or an acquire still waiting; does nothing when there is nothing to release."""
        if self._pending is not None:
            # The waiting acquire leaves the queue, then raises CancelledError.
            await _cancel_and_wait(self._pending)
            return
        place, self._place = self._place, None
        self._held = False
        if place is not None:
            await place.leave()

    def _lost(self, reason: LeaseLost) -> None:
        if self._held:
            _log.warn('{lock!r} lost: {reason}', lock=self, reason=reason)
        self._held = False

    async def __aenter__(self) -> 'Lock':
        return await self.acquire()

    async def __aexit__(self, *exc_info) -> bool:
        await self.release()
        return False


def lock(client, name: bytes, ttl: int = 10) -> Lock:
    """``async with lock(client, b'name'):`` - a Lock named ``name`` on ``client``."""
    return Lock(client, name, ttl)
