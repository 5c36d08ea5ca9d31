"""``python -m txaioetcd demo``: the object-relational layer at work on a real etcd, narrated.

A schema of typed tables is attached (and checked against the catalog in etcd); records are written
as ``tab[txn, key] = obj`` and read back; a read-modify-write transaction commits as one etcd
compare-and-set; two transactions that read the same record race, one conflicts and ``db.run`` runs
it again; an index finds a record by email; a live mirror of the table reacts to another writer.
Then, briefly, the raw client underneath, and versioned records (commits): a commit, a conflict, the
history after a compaction (on a private etcd only) and a revert. Every step prints the revisions etcd
reported.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

from twisted.internet.defer import DeferredList

from . import Client, CompModified, Database, KeySet, OpSet, Transaction, TransactionConflict, pmap
from ._defer import Deferred

_PREFIX = b'txaioetcd-demo/'


@dataclass
class Account:
    """A record: any class works, the table only needs marshal (object → data) and parse (back)."""

    oid: uuid.UUID
    owner: str
    email: str
    balance: int

    def marshal(self) -> dict:
        return dict(asdict(self), oid=self.oid.bytes)

    @staticmethod
    def parse(data: dict) -> 'Account':
        return Account(**dict(data, oid=uuid.UUID(bytes=data['oid'])))


class Bank(pmap.Schema):
    """The schema: one definition, imported by every service that uses these tables."""

    accounts = pmap.MapUuidCbor(1, marshal=Account.marshal, unmarshal=Account.parse)
    accounts_by_email = pmap.MapStringUuid(2)
    accounts.attach_index('by_email', accounts_by_email, lambda account: account.email)


async def run_demo(reactor, url: str, say=print, compact: bool = False) -> None:
    client = Client(reactor, url=url, timeout=10)
    try:
        status = await client.status()
        say(f'connected to etcd {status.version} at {url} (revision {status.header.revision})')
        await client.delete(KeySet(_PREFIX, prefix=True))       # start afresh on every run
        db = Database(client, prefix=_PREFIX)
        bank = Bank()
        await _tables(db, bank, say)
        alice, bob = await _write_and_read(db, bank, say)
        await _read_modify_write(db, bank, alice, bob, say)
        await _conflict_and_retry(reactor, db, bank, alice, say)
        await _mirror(db, bank, bob, say)
        await _raw_client(client, bank, alice, say)
        await _commits(client, say, compact)
        await client.delete(KeySet(_PREFIX, prefix=True))
        say('demo finished: every step above was real work against etcd')
    finally:
        await client.close()


async def _tables(db, bank, say) -> None:
    say('\n== a schema of typed tables, recorded in (and checked against) the catalog in etcd')
    recorded = await db.attach(bank)
    say(f'attached: accounts (slot 1, UUID -> CBOR), accounts_by_email (slot 2, unique index); '
        f'newly recorded: {", ".join(recorded)}; attaching again checks: {await db.attach(bank) or "all match"}')


async def _write_and_read(db, bank, say):
    say('\n== tab[txn, key] = obj: buffered, then committed as ONE etcd transaction')
    alice = Account(uuid.uuid4(), 'alice', 'alice@example.com', 100)
    bob = Account(uuid.uuid4(), 'bob', 'bob@example.com', 50)
    async with db.begin(write=True) as txn:
        bank.accounts[txn, alice.oid] = alice
        bank.accounts[txn, bob.oid] = bob
    say(f'wrote alice (100) and bob (50), index entries included -> committed at revision '
        f'{txn.committed_revision}')
    async with db.begin() as txn:
        read = await bank.accounts[txn, alice.oid]
        count = await bank.accounts.count(txn)
        oid = await bank.accounts_by_email[txn, 'bob@example.com']
        found = await bank.accounts[txn, oid]
        bobs = [account.owner async for account in
                bank.accounts.select(txn, index='by_email', prefix='bob@', return_keys=False)]
    say(f'read at snapshot revision {txn.revision}: {read.owner} has {read.balance}; {count} accounts')
    say(f'index lookup: accounts_by_email["bob@example.com"] -> {oid} -> {found.owner}; '
        f'select(index="by_email", prefix="bob@") -> {bobs}')
    return alice, bob


async def _read_modify_write(db, bank, alice, bob, say) -> None:
    say('\n== read-modify-write: a transfer reads both accounts and writes both, or nothing')
    async with db.begin(write=True) as txn:
        source, target = await bank.accounts[txn, alice.oid], await bank.accounts[txn, bob.oid]
        source.balance -= 10
        target.balance += 10
        bank.accounts[txn, source.oid] = source
        bank.accounts[txn, target.oid] = target
    say(f'alice -10, bob +10: read at revision {txn.revision}, committed at {txn.committed_revision} - '
        f'etcd compared both keys\' revisions and wrote both in one txn')


async def _conflict_and_retry(reactor, db, bank, alice, say) -> None:
    say('\n== two transactions read the same account; the second to commit conflicts')
    first, second = db.begin(write=True), db.begin(write=True)
    mine, theirs = await bank.accounts[first, alice.oid], await bank.accounts[second, alice.oid]
    mine.balance += 1
    theirs.balance += 2
    bank.accounts[first, alice.oid] = mine
    bank.accounts[second, alice.oid] = theirs
    committed = await first.commit()
    try:
        await second.commit()
    except TransactionConflict as conflict:
        say(f'both read at revision {second.revision}; the first committed at {committed}; the second: '
            f'TransactionConflict, nothing written ({conflict.keys[0]} had moved)')

    say('db.run(fn) runs fn in a transaction and runs it again on a conflict:')
    attempts = {'+5': 0, '+7': 0}
    both_read = [Deferred(), Deferred()]

    async def deposit(txn, name, amount, mine, other):
        attempts[name] += 1
        account = await bank.accounts[txn, alice.oid]
        if attempts[name] == 1:         # the first attempts read before either commits: a race
            mine.callback(None)
            await other
        account.balance += amount
        bank.accounts[txn, alice.oid] = account
        return txn

    runs = [db.run(deposit, '+5', 5, both_read[0], both_read[1]),
            db.run(deposit, '+7', 7, both_read[1], both_read[0])]
    done = await DeferredList(runs, fireOnOneErrback=True, consumeErrors=True)
    revisions = ', '.join(f'{name} after {attempts[name]} attempt(s) at revision {txn.committed_revision}'
                          for name, (_, txn) in zip(attempts, done))
    async with db.begin() as txn:
        balance = (await bank.accounts[txn, alice.oid]).balance
    say(f'two deposits raced: {revisions}; alice now has {balance} = 90 + 1 + 5 + 7, nothing lost')


async def _mirror(db, bank, bob, say) -> None:
    say('\n== a live mirror: a local copy of the table, kept current by a watch')
    changes = []
    mirror = bank.accounts.mirror(db, on_change=lambda key, old, new: changes.append((old, new)))
    await mirror.ready()
    say(f'mirror loaded {len(mirror)} accounts at revision {mirror.revision}; reads need no round trip: '
        f'bob has {mirror[bob.oid].balance}')

    async def rename(txn):
        account = await bank.accounts[txn, bob.oid]
        account.owner = 'Bob Builder'
        bank.accounts[txn, bob.oid] = account
        return txn
    txn = await db.run(rename)
    await mirror.wait_for(txn.committed_revision, timeout=10)
    old, new = changes[-1]
    say(f'another writer renamed bob at revision {txn.committed_revision}; the mirror saw '
        f'{old.owner!r} -> {new.owner!r} and now reads {mirror[bob.oid].owner!r}')
    mirror.close()


async def _raw_client(client, bank, alice, say) -> None:
    say('\n== underneath: the raw etcd client')
    key = _PREFIX + bank.accounts.encode_key(alice.oid)
    kv = (await client.get(key)).kvs[0]
    slot, oid = key[len(_PREFIX):len(_PREFIX) + 2], key[len(_PREFIX) + 2:]
    say(f'alice\'s record is the key {_PREFIX!r} + slot {slot.hex()} + UUID {oid.hex()}, holding '
        f'{len(kv.value)} bytes of CBOR (version {kv.version}, modified at revision {kv.mod_revision})')
    everything = await client.get(KeySet(_PREFIX, prefix=True), keys_only=True)
    say(f'get prefix {_PREFIX.decode()} -> {everything.count} keys: catalog, accounts and index entries')
    put = await client.set(_PREFIX + b'greeting', b'hello')
    cas = Transaction(compare=[CompModified(_PREFIX + b'greeting', '==', put.revision)],
                      success=[OpSet(_PREFIX + b'greeting', b'hello, etcd')])
    done = await client.submit(cas)
    say(f'set greeting -> revision {put.revision}; compare-and-set "unchanged since {put.revision}?" -> '
        f'yes, revision {done.revision}')


async def _commits(client, say, compact: bool) -> None:
    from .commits import CommitStore, VersionConflict
    say('\n== versioned records: every change a commit with a version, an author and a comment')
    store = CommitStore(client, 'demo', prefix=_PREFIX)
    first = await store.commit('limits.conf', b'max_users = 10\n', 1, 'alice', 'first limits')
    second = await store.commit('limits.conf', b'max_users = 20\n', 2, 'bob', 'more users')
    say(f'limits.conf: version 1 by alice (revision {first.revision}), version 2 by bob (revision {second.revision})')
    try:
        await store.commit('limits.conf', b'max_users = 15\n', 2, 'carol', 'based on version 1')
    except VersionConflict as conflict:
        say(f'carol also committed "version 2": refused, the next version is {conflict.expected_version}; '
            f'nothing was written')
    if compact:
        status = await client.status()
        await client.compact(status.header.revision)
        say(f'etcd compacted its history at revision {status.header.revision} (its own old revisions are gone)')
    history = [f'v{c.meta.version} {c.meta.author}: {c.meta.comment}' async for c in store.history('limits.conf')]
    say(f'history still complete (log keys are never rewritten): {"; ".join(history)}')
    reverted = await store.revert('limits.conf', 1, 'alice')
    say(f'alice reverted to version 1: version {reverted.version} "{reverted.comment}" now reads '
        f'{(await store.get("limits.conf")).payload.decode().strip()!r}')
