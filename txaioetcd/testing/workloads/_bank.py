"""Bank through ``db.run``: transfers between accounts, each logged under its own id in the same
transaction, and reads of every balance with the log. The total never changes; the balances are the
initial ones plus exactly the logged transfers (none lost, none applied twice - a commit whose
outcome was unknown must never be applied again by a retry)."""

from __future__ import annotations

from ... import pmap
from ...errors import Error
from ..checkers import check_bank
from ._common import Workload, record

ACCOUNTS = pmap.MapStringCbor(1, name='accounts')
TRANSFERS = pmap.MapStringCbor(2, name='transfers')


class Insufficient(Error):
    """The transfer would overdraw its account: nothing was written."""


class Bank(Workload):
    name = 'bank'

    def __init__(self, history, prefix, rng, accounts: int = 5, balance: int = 100):
        super().__init__(history, prefix, rng)
        self.initial = {f'a{i}': balance for i in range(accounts)}
        self._next = 0

    async def setup(self, client, clients=()) -> None:
        def open_accounts(txn):
            for account, balance in self.initial.items():
                ACCOUNTS[txn, account] = balance
        await self.database(client).run(open_accounts, timeout=30)

    async def step(self, worker, client) -> None:
        if self.random.random() < 0.2:
            op = self.history.invoke(worker.process, 'read')
            outcome = await record(self.history, op, lambda: self._read(client))
        else:
            self._next += 1
            source, target = self.random.sample(sorted(self.initial), 2)
            transfer = (self._next, source, target, self.random.randint(1, 5))
            op = self.history.invoke(worker.process, 'transfer', transfer)
            outcome = await record(self.history, op, lambda: self._transfer(client, *transfer))
        if outcome == 'unknown':
            worker.retire()

    async def _transfer(self, client, transfer_id, source, target, amount):
        async def move(txn):
            have = await ACCOUNTS[txn, source]
            if have < amount:
                raise Insufficient(f'{source} has {have}, cannot transfer {amount}')
            ACCOUNTS[txn, source] = have - amount
            ACCOUNTS[txn, target] = await ACCOUNTS[txn, target] + amount
            TRANSFERS[txn, str(transfer_id)] = [source, target, amount]
        await self.database(client).run(move, retries=5, timeout=5)
        return None, None

    async def _read(self, client):
        async def read(txn):
            balances = {account: await ACCOUNTS[txn, account] for account in self.initial}
            logged = [int(key) async for key in TRANSFERS.select(txn, return_values=False)]
            return {'balances': balances, 'transfers': logged}
        return await self.database(client).run(read, write=False, retries=5, timeout=10), None

    async def finish(self, client) -> None:
        op = self.history.invoke(-1, 'read')
        await record(self.history, op, lambda: self._read(client))

    def check(self):
        return check_bank(self.history, self.initial)
