"""Elle's list-append through Database transactions: each transaction reads some keys and appends a
unique element to others; the lists read tell the order of every append, from which the checker
infers the dependencies between transactions and looks for cycles (G0, G1c, G2) and aborted or lost
writes made visible."""

from __future__ import annotations

from ... import pmap
from ...database import Database
from ..checkers import check_list_append
from ._common import Workload, record

LISTS = pmap.MapStringCbor(1, name='lists')


class ListAppend(Workload):
    """``keys`` lists (few, so that transactions contend), 1 to ``max_ops`` micro-operations each."""

    name = 'list-append'

    def __init__(self, history, prefix, rng, keys: int = 6, max_ops: int = 4):
        super().__init__(history, prefix, rng)
        self.keys = [f'k{i}' for i in range(keys)]
        self.max_ops = max_ops
        self._next = 0
        self._dbs = {}

    def _db(self, client):
        db = self._dbs.get(id(client))
        if db is None:
            db = self._dbs[id(client)] = Database(client, prefix=self.prefix)
        return db

    def _micro_ops(self):
        ops = []
        for _ in range(self.random.randint(1, self.max_ops)):
            key = self.random.choice(self.keys)
            if self.random.random() < 0.5:
                ops.append(('r', key, None))
            else:
                self._next += 1
                ops.append(('append', key, self._next))
        return ops

    async def step(self, worker, client) -> None:
        micro = self._micro_ops()
        op = self.history.invoke(worker.process, 'txn', micro)
        outcome = await record(self.history, op, lambda: self._transact(client, micro))
        if outcome == 'unknown':
            worker.retire()

    async def _transact(self, client, micro):
        async def apply(txn):
            done = []
            for f, key, element in micro:
                current = list(await LISTS[txn, key] or [])
                if f == 'r':
                    done.append(('r', key, current))
                else:
                    LISTS[txn, key] = current + [element]
                    done.append(('append', key, element))
            return done
        return await self._db(client).run(apply, retries=5, timeout=5), None

    async def finish(self, client) -> None:
        reads = [('r', key, None) for key in self.keys]
        op = self.history.invoke(-1, 'txn', reads)
        await record(self.history, op, lambda: self._transact(client, reads))

    def check(self):
        return check_list_append(self.history)
