"""Locks with fencing: holders take turns on one lock and write to a target while they hold it; every
few holds the process stalls (a GC pause) past the lease's TTL in the middle of its critical section.
The lock's tenures come from etcd's own history of the lock keys; a write that lands outside its
holder's tenure broke mutual exclusion. Unfenced, such writes happen; fenced, they are refused."""

from __future__ import annotations

from ... import pmap
from ...keyset import KeySet
from ...ops import OpSet, Transaction
from ...recipes.lock import Lock
from .._stall import stall_reactor
from ..checkers import check_lock
from ._common import Workload, outcome_of, record, replay

TARGET = pmap.MapStringCbor(1, name='guarded')


class LockWorkload(Workload):
    name = 'lock'

    def __init__(self, history, prefix, rng, fenced: bool = True, ttl: int = 2, writes: int = 3,
                 stall_every: int = 3):
        super().__init__(history, prefix, rng)
        self.fenced = fenced
        self.ttl = ttl
        self.writes = writes
        self.stall_every = stall_every
        self.name_key = prefix + b'lock'
        self.target = prefix + b'target'
        self.stalls = 0
        self._holds = 0
        self._next = 0
        self.keys = {}

    async def setup(self, client, clients=()) -> None:
        self.start = (await client.status()).header.revision + 1

    async def step(self, worker, client) -> None:
        lock = Lock(client, self.name_key, ttl=self.ttl)
        hold = self.history.invoke(worker.process, 'hold', {'holder': worker.process})
        try:
            await lock.acquire(timeout=10)
        except Exception as error:
            getattr(self.history, outcome_of(error))(hold, error)
            return
        self.history.ok(hold, {'key': lock.key, 'created': lock.revision}, lock.revision)
        self._holds += 1
        stall_at = 1 if self._holds % self.stall_every == 0 else None
        try:
            for i in range(self.writes):
                if i == stall_at:
                    # Past the TTL and etcd's expiry sweep: the lease is gone when the process wakes.
                    stall_reactor(self.ttl + 1.5)
                    self.stalls += 1
                self._next += 1
                data = self._next
                write = self.history.invoke(worker.process, 'write',
                                            {'hold': hold.index, 'fenced': self.fenced, 'data': data})
                if await record(self.history, write, lambda: self._write(client, lock, data)) == 'unknown':
                    worker.retire()
        finally:
            try:
                await lock.release()
            except Exception as error:   # its lease expires by itself
                outcome_of(error)

    async def _write(self, client, lock, data):
        if not self.fenced:
            return None, (await client.set(self.target, b'%d' % data)).header.revision
        if data % 2:
            txn = self.database(client).begin(write=True, guard=lock)
            async with txn:
                TARGET[txn, 'owner'] = data
            return None, txn.committed_revision
        done = await client.submit(Transaction(compare=[lock.fence],
                                               success=[OpSet(self.target, b'%d' % data)]))
        return None, done.header.revision

    async def finish(self, client) -> None:
        events = await replay(client, KeySet(self.name_key + b'/', prefix=True), self.start,
                              self.name_key + b'/~sentinel')
        self.keys = {}
        for revision, kind, key, _ in events:
            if kind == 'PUT' and key not in self.keys:
                self.keys[key] = (revision, None)
            elif kind == 'DELETE' and key in self.keys:
                self.keys[key] = (self.keys[key][0], revision)
        self.keys.pop(self.name_key + b'/~sentinel', None)

    def check(self):
        return check_lock(self.history, self.keys)
