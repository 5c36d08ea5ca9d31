"""Registers with compare-and-set through the raw client: reads, blind writes and CAS on a few keys.
etcd's revisions order the writes; the checker tests every read against that order and real time
(linearizability: no stale read, no read of the future, no value nobody wrote)."""

from __future__ import annotations

from ...ops import CompValue, CompVersion, OpSet, Transaction
from ..checkers import check_register
from ._common import Workload, record


class Register(Workload):
    name = 'register'

    def __init__(self, history, prefix, rng, keys: int = 3):
        super().__init__(history, prefix, rng)
        self.keys = [prefix + b'r%d' % i for i in range(keys)]
        self._next = 0
        self._last_read = {}        # (worker index, key) -> value it last read: what its CAS expects

    async def step(self, worker, client) -> None:
        key = self.random.choice(self.keys)
        roll = self.random.random()
        if roll < 0.5:
            op = self.history.invoke(worker.process, 'read', (key, None))
            outcome = await record(self.history, op, lambda: self._read(client, key))
            if outcome == 'ok':
                self._last_read[worker.index, key] = op.result[0]
        else:
            self._next += 1
            new = self._next
            if roll < 0.75:
                op = self.history.invoke(worker.process, 'write', (key, new))
                outcome = await record(self.history, op, lambda: self._write(client, key, new))
            else:
                old = self._last_read.get((worker.index, key))
                op = self.history.invoke(worker.process, 'cas', (key, old, new))
                outcome = await record(self.history, op, lambda: self._cas(client, key, old, new))
        if outcome == 'unknown':
            worker.retire()

    @staticmethod
    async def _read(client, key):
        found = await client.get(key)
        if not found.kvs:
            return (None, 0), found.header.revision
        kv = found.kvs[0]
        return (int(kv.value), kv.mod_revision), found.header.revision

    @staticmethod
    async def _write(client, key, new):
        written = await client.set(key, b'%d' % new)
        return None, written.header.revision

    @staticmethod
    async def _cas(client, key, old, new):
        held = CompVersion(key, '==', 0) if old is None else CompValue(key, '==', b'%d' % old)
        # A compare that does not hold raises Failed: certainly not applied, recorded as fail.
        done = await client.submit(Transaction(compare=[held], success=[OpSet(key, b'%d' % new)]))
        return None, done.header.revision

    def check(self):
        return check_register(self.history)

