"""Lock: a distributed mutex on etcd, after etcd's Go ``concurrency.Mutex``.

Contenders queue as ``_queue`` describes: each puts ``name/<its lease id in hex>``, the oldest key holds
the lock, every other contender watches the key just ahead of its own.

``client.lock(name, ttl=, timeout=)`` is the usual way in: ``await`` it for an acquired Lock, or use it
as ``async with client.lock(name):``.
"""

from __future__ import annotations

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from .._defer import Deferred, returns_deferred, succeed
from ..errors import LeaseLost, LockLost, LockTimeout
from ..retry import Deadline
from ._queue import Place, cancel_and_wait, check_name, check_ttl

__all__ = ('Lock', 'LockTimeout', 'LockLost')

_log = Logger()


class Lock:
    """A distributed mutex named ``name`` (bytes), shared by every client that uses the same name.

    ``await lock.acquire()`` waits (contenders are served in the order they asked) and ``await
    lock.release()`` lets the next one in; ``async with`` a Lock acquires it (unless this Lock holds it
    already) and releases it on exit. ``client.lock(name)`` makes one and starts acquiring it.

    The holder's lease of ``ttl`` seconds is kept alive in the background. If it is lost (the process
    stalled, or etcd was out of reach for longer than the TTL) the lock is lost with it: ``held`` turns
    False and ``lock.lease.expired`` fires, while another contender may already hold the lock.

    A holder cannot learn of that loss in time (it may have been paused while it happened), so writes
    that need the lock should be fenced: ``lock.fence`` is a comparison etcd checks in the write's own
    transaction (``db.begin(write=True, guard=lock)`` adds it), and ``lock.revision`` the fencing token
    for systems outside etcd. See docs/locks.md.

    One Lock object is one contender: it is not re-entrant; tasks that must exclude each other each use
    a Lock of their own. The keys live under ``name + b'/'``, so two names should not be such that one
    is the other followed by ``b'/'`` and more.
    """

    lost_error = LockLost        # what a transaction guarded by this lock raises when it was lost

    def __init__(self, client, name: bytes, ttl: int = 10):
        self._client = client
        self.name = check_name(name, 'lock name')
        self.ttl = check_ttl(ttl)
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

    @property
    def revision(self) -> int | None:
        """While held, the fencing token: the create revision of this holder's key. Each holder of the
        lock gets a larger one than every holder before it, so a store outside etcd can refuse a write
        that carries a token smaller than the largest it has seen. None when not held."""
        return self._place.revision if self._held else None

    @property
    def fence(self):
        """A comparison (``CompCreated``) that holds only while this holder's key still exists as it was
        created - that is, while this holder still holds the lock. Put it in the ``compare`` of any
        ``Transaction`` whose writes need the lock: if the lock was lost meanwhile (the lease expired
        during a pause), etcd refuses the whole transaction. Raises ``LockLost`` at once when this
        Lock knows it does not hold the lock."""
        if not self._held:
            raise LockLost('this contender does not hold the lock (never acquired, released, or its lease '
                           'was lost): acquire it first', f'fence of lock {self.name!r}')
        return self._place.fence()

    def describe(self) -> str:
        return f'lock {self.name!r}'

    @returns_deferred
    async def acquire(self, timeout: float | None = None) -> 'Lock':
        """Wait until the lock is ours → this Lock.

        ``timeout`` (seconds) bounds the wait: past it, ``LockTimeout`` is raised and the attempt left
        nothing behind. Cancelling the returned Deferred gives up the same way (it fails with
        CancelledError once the attempt has left the queue).
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f'timeout must be None or seconds >= 0, not {timeout!r}')
        if self._place is not None:
            raise RuntimeError(f'{self!r}: this Lock object holds or is acquiring it already; release '
                               f'it first, or use another Lock object for another contender')
        place = self._place = Place(self._client, self.name + b'/', self.ttl, f'lock {self.name!r}',
                                    self._lost)
        deadline = Deadline(self._client.reactor, timeout) if timeout is not None else None
        entered = self._pending = Deferred.fromCoroutine(place.enter(b'', deadline))
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

    @returns_deferred
    async def release(self) -> None:
        """Let the next contender in (delete our key, revoke our lease). Also gives up a lock that was
        lost, or an acquire still waiting; does nothing when there is nothing to release. It runs
        whether the returned Deferred is awaited or not."""
        if self._pending is not None:
            # The waiting acquire leaves the queue, then raises CancelledError.
            await cancel_and_wait(self._pending)
            return
        place, self._place = self._place, None
        self._held = False
        if place is not None:
            await place.leave()

    def _lost(self, reason: LeaseLost) -> None:
        if self._held:
            _log.warn('{lock!r} lost: {reason}', lock=self, reason=reason)
        self._held = False

    def __aenter__(self) -> Deferred:
        return succeed(self) if self._held else self.acquire()

    def __aexit__(self, *exc_info) -> Deferred:
        return self.release().addCallback(lambda _: False)
