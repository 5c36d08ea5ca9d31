"""Elle's list-append through Database transactions: each transaction reads some keys and appends a
unique element to others; the lists read tell the order of every append, from which the checker
infers the dependencies between transactions and looks for cycles (G0, G1c, G2) and aborted or lost
writes made visible."""

from __future__ import annotations

from ... import pmap
from ..checkers import check_list_append
from ._common import Workload, record

LISTS = pmap.MapStringCbor(1, name='lists')


class ListAppend(Workload):
    """``keys`` lists in use at a time (few, so that transactions contend), 1 to ``max_ops``
    micro-operations per transaction. A key takes about ``max_appends`` appends, then a fresh key
    replaces it (as Elle does): lists stay short, so reads and the checker stay fast however long
    the run."""

    name = 'list-append'

    def __init__(self, history, prefix, rng, keys: int = 6, max_ops: int = 4, max_appends: int = 32):
        super().__init__(history, prefix, rng)
        self.active = [f'k{i}' for i in range(keys)]
        self.keys = list(self.active)           # every key used, for the final read
        self.max_ops = max_ops
        self.max_appends = max_appends
        self._appends = dict.fromkeys(self.active, 0)
        self._next = 0

    def _micro_ops(self):
        ops = []
        for _ in range(self.random.randint(1, self.max_ops)):
            position = self.random.randrange(len(self.active))
            key = self.active[position]
            if self.random.random() < 0.5:
                ops.append(('r', key, None))
                continue
            self._next += 1
            ops.append(('append', key, self._next))
            self._appends[key] += 1
            if self._appends[key] >= self.max_appends:
                fresh = f'k{len(self.keys)}'
                self.keys.append(fresh)
                self._appends[fresh] = 0
                self.active[position] = fresh
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
        return await self.database(client).run(apply, retries=5, timeout=5), None

    async def finish(self, client) -> None:
        reads = [('r', key, None) for key in self.keys]
        op = self.history.invoke(-1, 'txn', reads)
        await record(self.history, op, lambda: self._transact(client, reads))

    def check(self):
        return check_list_append(self.history)
