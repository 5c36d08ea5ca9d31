"""The queue under Lock and Election: each contender puts ``prefix + <its lease id in hex>``, attached
to a lease of its own that is kept alive in the background, and etcd's create revisions order those
keys. The contender whose key is the oldest is first in line (holds the lock, leads the election).

Every other contender watches only the key just ahead of its own (its predecessor), from the revision
of the read that found it, so a release wakes one waiter, not the whole herd, and a release that lands
between the read and the watch is not missed. A contender that dies stops keeping its lease alive; the
lease expires, etcd deletes the key and the next in line moves up.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from .._defer import Deferred
from ..errors import Compacted, LeaseLost
from ..keyset import KeySet, as_key
from ..ops import CompCreated, OpGet, OpSet, Transaction
from ..retry import Deadline

__all__ = ('Place', 'check_name', 'check_ttl', 'cancel_and_wait')

_log = Logger()


def check_name(name, what: str) -> bytes:
    name = as_key(name, what)
    if not name:
        raise ValueError(f'{what} must not be empty')
    return name


def check_ttl(ttl) -> int:
    if type(ttl) is not int or ttl < 1:
        raise ValueError(f'ttl must be a whole number of seconds >= 1, not {ttl!r}')
    return ttl


async def cancel_and_wait(pending: Deferred) -> None:
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


class Place:
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
        self._deadline = None    # of the entry under way

    def fence(self) -> CompCreated:
        """A comparison that holds only while our key still exists with the revision it was created at:
        once the lease is gone (expired, revoked) the key is gone, and a key of the same name made
        later has a later create revision."""
        return CompCreated(self.key, '==', self.revision)

    def _timeout(self) -> float | None:
        return None if self._deadline is None else self._deadline.bound(self._client.timeout)

    async def enter(self, value: bytes, deadline: Deadline | None = None) -> None:
        """Queue up with ``value`` and return once first in line. On any failure - a cancellation
        included - leave the queue again before raising. Each request made on the way gets what is
        left of ``deadline`` (the wait itself is bounded by whoever awaits: a timeout cancels)."""
        self._deadline = deadline
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
        lease = await self._client.lease(self.ttl, timeout=self._timeout())
        self.lease = lease
        lease.on_expired(self._lease_lost)
        self.key = self.prefix + b'%x' % lease.lease_id
        # The compare keeps a key's first place should the same lease join again.
        joined = await self._client.do(Transaction(compare=[CompCreated(self.key, '==', 0)],
                                                   success=[OpSet(self.key, value, lease=lease)],
                                                   failure=[OpGet(self.key)]), timeout=self._timeout())
        self.revision = (joined.header.revision if joined.succeeded
                         else joined.responses[0].kvs[0].create_revision)

    async def _wait_turn(self) -> None:
        # etcd applies limit after the create-revision filter and the sort: this is the nearest older key.
        ahead = OpGet(KeySet(self.prefix, prefix=True), limit=1, sort_order='descend',
                      sort_target='create', max_create_revision=self.revision - 1, keys_only=True)
        mine = OpGet(self.key, keys_only=True)
        while True:
            # Both reads at one revision, so "nobody ahead" and "still queued" hold together.
            read = await self._client.do(Transaction(success=[ahead, mine]), timeout=self._timeout())
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
