"""Election: leader election on etcd, after etcd's Go ``concurrency.Election``.

Candidates queue exactly like Lock contenders (``_queue``): each puts ``name/<its lease id in hex>``,
attached to a lease of its own, and the candidate whose key is the oldest leads. The leader's key holds
the value it proclaims, so followers and bystanders read (``leader()``) or follow (``observe()``) it
there. A leader that resigns or dies (its lease revoked or expired) takes its key with it, and the next
candidate in line leads.
"""

from __future__ import annotations

from twisted.internet.defer import DeferredQueue
from twisted.logger import Logger

from .._defer import Deferred, returns_deferred
from ..errors import Failed, NotLeader
from ..keyset import KeySet, as_key
from ..ops import OpSet, Transaction
from ._queue import Place, cancel_and_wait, check_name, check_ttl

__all__ = ('Election', 'NotLeader', 'LeaderObserver')

_log = Logger()


class Election:
    """A leader election named ``name`` (bytes), shared by every client that uses the same name.

    ``await election.campaign(value)`` returns once this candidate leads; ``proclaim(value)`` changes
    the value while it still leads; ``resign()`` steps down (or gives up a campaign). ``leader()`` and
    ``observe()`` need no campaign: any client can follow an election. Every method but ``observe`` returns
    a Deferred that runs whether it is awaited or not.

    The candidate's lease of ``ttl`` seconds is kept alive in the background; if it is lost, so is the
    leadership (``leading`` turns False). One Election object is one candidate.
    """

    lost_error = NotLeader       # what a transaction guarded by this election raises once it leads no more

    def __init__(self, client, name: bytes, ttl: int = 10):
        self._client = client
        self.name = check_name(name, 'election name')
        self.ttl = check_ttl(ttl)
        self._prefix = self.name + b'/'
        self._place = None
        self._pending = None
        self._leading = False

    def __repr__(self):
        state = 'leading' if self._leading else 'campaigning' if self._pending else 'not leading'
        return f'<Election {self.name!r} {state}>'

    @property
    def leading(self) -> bool:
        """Whether this candidate leads (as far as it knows: False once its lease is lost)."""
        return self._leading

    @property
    def key(self) -> bytes | None:
        """This candidate's key in etcd, while it campaigns or leads."""
        return self._place.key if self._place is not None else None

    @property
    def lease(self):
        """This candidate's Lease, while it campaigns or leads."""
        return self._place.lease if self._place is not None else None

    @property
    def revision(self) -> int | None:
        """While leading, the fencing token: the create revision of this candidate's key (each leader's
        is larger than every earlier leader's). None when not leading."""
        return self._place.revision if self._leading and self._place is not None else None

    @property
    def fence(self):
        """A comparison that holds only while this candidate still leads (its key exists as created);
        see ``Lock.fence``. Raises ``NotLeader`` at once when this candidate knows it does not lead."""
        if not self._leading or self._place is None:
            raise NotLeader('this candidate does not lead', f'fence of {self.describe()}')
        return self._place.fence()

    def describe(self) -> str:
        return f'election {self.name!r}'

    @returns_deferred
    async def campaign(self, value: bytes) -> None:
        """Stand with ``value`` and return once this candidate leads (candidates lead in the order
        they stood). Already leading, it proclaims ``value``. Cancelling the returned Deferred gives
        up the campaign and leaves nothing behind."""
        value = as_key(value, 'campaign value')
        if self._leading:
            await self.proclaim(value)
            return
        if self._place is not None:
            raise RuntimeError(f'{self!r}: this candidate already campaigns; resign first, or use '
                               f'another Election object for another candidate')
        place = self._place = Place(self._client, self._prefix, self.ttl, self.describe(), self._lost)
        entered = self._pending = Deferred.fromCoroutine(place.enter(value))
        try:
            await entered
        except BaseException:
            self._place = None
            raise
        finally:
            self._pending = None
        self._leading = True

    @returns_deferred
    async def proclaim(self, value: bytes) -> None:
        """Change the leader's value - only while this candidate still leads, else ``NotLeader``."""
        value = as_key(value, 'proclaimed value')
        place = self._place
        if not self._leading or place is None:
            raise NotLeader('this candidate does not lead', f'proclaim in {self.describe()}')
        # Our key with our create revision still there means nobody else leads: put only then.
        proclaim = Transaction(compare=[place.fence()],
                               success=[OpSet(place.key, value, lease=place.lease)])
        try:
            await self._client.submit(proclaim)
        except Failed:
            self._leading = False
            raise NotLeader('this candidate\'s key is gone (its lease expired or was revoked), so it '
                            'leads no more', f'proclaim in {self.describe()}') from None

    @returns_deferred
    async def resign(self) -> None:
        """Step down (delete our key, revoke our lease), letting the next candidate lead; a campaign
        still waiting is given up (it raises CancelledError). Does nothing if not standing."""
        if self._pending is not None:
            await cancel_and_wait(self._pending)
            return
        place, self._place = self._place, None
        self._leading = False
        if place is not None:
            await place.leave()

    @returns_deferred
    async def leader(self) -> tuple[bytes, bytes] | None:
        """The current leader's ``(key, value)``, or None when no candidate stands."""
        found = await self._client.get(KeySet(self._prefix, prefix=True), limit=1, sort_order='ascend',
                                       sort_target='create')
        if not found.kvs:
            return None
        return found.kvs[0].key, found.kvs[0].value

    def observe(self) -> 'LeaderObserver':
        """``async for value in election.observe():`` the leader's value now, and again each time
        leadership or the value changes; ``cancel()`` ends the iteration."""
        return LeaderObserver(self._client, self._prefix)

    def _lost(self, reason) -> None:
        if self._leading:
            _log.warn('{election!r} lost its leadership: {reason}', election=self, reason=reason)
        self._leading = False


class LeaderObserver:
    """Follows an election: the candidates are read once, then one watch of the prefix, from the
    revision just after that read, keeps the picture up to date - no change is missed or seen twice.

    Yields the leader's value (bytes) when a leader first appears, when another candidate takes over
    and when the leader proclaims a new value; a time without any leader yields nothing. Iteration
    ends after ``cancel()``; a watch that fails raises from the iterator.
    """

    _END = object()

    def __init__(self, client, prefix: bytes):
        self._keys = KeySet(prefix, prefix=True)
        self._queue = DeferredQueue()
        self._candidates = {}      # key -> KeyValue of every candidate standing
        self._shown = None         # (key, create revision, value) of the leader last yielded
        self._watching = None
        self._cancelled = False
        Deferred.fromCoroutine(self._start(client)).addErrback(self._failed)

    async def _start(self, client) -> None:
        found = await client.get(self._keys)
        if self._cancelled:
            return
        for kv in found.kvs:
            self._candidates[kv.key] = kv
        self._changed()
        # From just after the read, not from "now": nothing that happens in between is lost.
        self._watching = client.watch(self._keys, self._on_event, start_revision=found.header.revision + 1)
        self._watching.done.addCallbacks(self._ended, self._failed)

    def _on_event(self, event) -> None:
        if event.type == 'DELETE':
            self._candidates.pop(event.key, None)
        else:
            self._candidates[event.key] = event.kv
        self._changed()

    def _changed(self) -> None:
        if not self._candidates:
            self._shown = None
            return
        leader = min(self._candidates.values(), key=lambda kv: kv.create_revision)
        shown = (leader.key, leader.create_revision, leader.value)
        if shown != self._shown:
            self._shown = shown
            self._queue.put(leader.value)

    def _ended(self, _) -> None:
        self._queue.put(LeaderObserver._END)

    def _failed(self, failure) -> None:
        self._queue.put(failure)

    def cancel(self) -> None:
        """Stop following; the iteration ends (after the values already queued)."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._watching is not None:
            self._watching.cancel()       # its done fires, which ends the iteration
        else:
            self._queue.put(LeaderObserver._END)

    def __aiter__(self):
        return self

    @returns_deferred
    async def __anext__(self) -> bytes:
        item = await self._queue.get()
        if item is LeaderObserver._END:
            self._queue.put(item)          # every later call ends too
            raise StopAsyncIteration
        if hasattr(item, 'raiseException'):
            self._queue.put(item)
            item.raiseException()
        return item
