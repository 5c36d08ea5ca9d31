"""Database transactions against a real etcd: isolation, conflicts, indexes, limits, schemas and the
outcome of a commit whose answer was lost.

Concurrency here is real: many transactions in flight at once on the reactor (``gatherResults`` of
``db.run`` calls), often over several Client objects. Every loop is bounded in count and in time.
The "lost answer" tests put a small TCP proxy written here between the client and the session's
etcd; it forwards everything, but can be told to drop the connection right after forwarding a
commit (etcd applies it, the client never hears) or to drop the commit without forwarding it.
"""

import random
import time
import uuid
from urllib.parse import urlparse

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from txaioetcd import Client, Database, KeySet, OpSet, Transaction, pmap
from txaioetcd.errors import (CommitOutcomeUnknown, NullIndexValue, ReadOnlyTransaction, SchemaMismatch,
                              TooManyOperations, TransactionConflict, TransactionTooLarge,
                              UniqueViolation)

from _loopback import RequestReader, ResponseReader, connected


# -- helpers

def _raw(db, table, key) -> bytes:
    """The etcd key of ``table[key]`` in ``db``."""
    return db.prefix + table.encode_key(key)


async def _raw_value(client, raw):
    result = await client.get(raw)
    return result.kvs[0].value if result.kvs else None


async def _raw_kv(client, raw):
    result = await client.get(raw)
    return result.kvs[0] if result.kvs else None


async def _all_keys(client, prefix) -> list:
    result = await client.get(KeySet(prefix, prefix=True), keys_only=True)
    return [kv.key for kv in result.kvs]


async def _table(client, db, table) -> dict:
    """Everything stored in ``table`` (read with the low-level client, decoded) → {key: value}."""
    start, end = table._range()
    result = await client.get(KeySet(db.prefix + start, db.prefix + end))
    cut = len(db.prefix)
    out = {}
    for kv in result.kvs:
        key = table.decode_key(kv.key[cut:])
        out[key] = table.decode_value(key, kv.value)
    return out


def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


def _users(nullable_email=False):
    """users (UUID → CBOR dict) with a unique index by email and a non-unique nullable one by tag."""
    users = pmap.MapUuidCbor(1, name='users')
    by_email = pmap.MapStringUuid(2, name='users_by_email')
    by_tag = pmap.MapStringUuidUuid(3, name='users_by_tag')
    users.attach_index('by_email', by_email, lambda user: user.get('email'), unique=True,
                       nullable=nullable_email)
    users.attach_index('by_tag', by_tag, lambda user: user.get('tag'), unique=False, nullable=True)
    return users, by_email, by_tag


async def _outcomes(deferreds):
    """Results of several Deferreds run at once: ('ok', value) or ('error', exception) each."""
    results = await defer.DeferredList(deferreds, consumeErrors=True)
    return [('ok', value) if ok else ('error', value.value) for ok, value in results]


async def _tab(client, prefix, *keys, value=1):
    """A Database under ``prefix`` and a MapStringCbor 'tab' in slot 1, holding ``value`` under each of
    ``keys`` (written by one transaction)."""
    db = Database(client, prefix=prefix)
    tab = pmap.MapStringCbor(1, name='tab')
    if keys:
        def setup(txn):
            for key in keys:
                tab[txn, key] = value
        await db.run(setup)
    return db, tab


async def _conflicting_write(tab, txn, key, value):
    """Writes ``tab[key] = value`` in ``txn`` and commits it, which must fail: the TransactionConflict."""
    tab[txn, key] = value
    with pytest.raises(TransactionConflict) as caught:
        await txn.commit()
    return caught.value


# -- lost updates and bank transfers

@pytest_twisted.ensureDeferred
async def test_lost_update_twenty_concurrent_incrementers(client, etcd, reactor, prefix):
    counters = pmap.MapStringCbor(1, name='counters')
    extra = [Client(reactor, url=etcd.url, timeout=10) for _ in range(3)]
    try:
        dbs = [Database(c, prefix=prefix) for c in [client] + extra]
        attempts = [0]
        deadline = time.monotonic() + 40

        async def increment(txn):
            attempts[0] += 1
            value = await counters[txn, 'c']
            counters[txn, 'c'] = (value or 0) + 1

        async def worker(i):
            db = dbs[i % len(dbs)]
            for _ in range(10):
                assert time.monotonic() < deadline, 'workers took too long'
                await db.run(increment, retries=200, backoff=0.002, max_backoff=0.05)

        await defer.gatherResults([defer.ensureDeferred(worker(i)) for i in range(20)])
        async with dbs[0].begin() as txn:
            assert await counters[txn, 'c'] == 200
        assert await _table(client, dbs[0], counters) == {'c': 200}
        conflicts = attempts[0] - 200
        print(f'\nlost update: 200 increments, {attempts[0]} attempts, {conflicts} conflicts')
        assert conflicts > 0, 'no conflict at all: the workers did not really race'
    finally:
        for c in extra:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_bank_transfers_keep_the_total_in_every_snapshot(client, etcd, reactor, prefix):
    accounts = pmap.MapOidOid(1, name='accounts')
    n, total = 20, 20_000
    async with connected(reactor, etcd.url, timeout=10) as reader_client:
        db = Database(client, prefix=prefix)
        reader_db = Database(reader_client, prefix=prefix)

        def open_accounts(txn):
            for i in range(n):
                accounts[txn, i] = total // n
        await db.run(open_accounts)

        stats = {'transfers': 0, 'refused': 0, 'attempts': 0, 'snapshots': 0}

        async def transfer(txn, a, b, amount):
            stats['attempts'] += 1
            balance_a, balance_b = await defer.gatherResults([accounts[txn, a], accounts[txn, b]])
            if balance_a < amount:
                return False
            accounts[txn, a] = balance_a - amount
            accounts[txn, b] = balance_b + amount
            return True

        stop_at = time.monotonic() + 3.0
        rng = random.Random(1234)

        async def transferer():
            for _ in range(5000):
                if time.monotonic() >= stop_at:
                    return
                a, b = rng.sample(range(n), 2)
                done = await db.run(transfer, a, b, rng.randint(1, 1500), retries=100, backoff=0.002,
                                    max_backoff=0.05)
                stats['transfers' if done else 'refused'] += 1

        async def check_snapshot(kind):
            async with reader_db.begin() as txn:
                if kind == 'select':
                    rows = [(k, v) async for k, v in accounts.select(txn)]
                    assert [k for k, _ in rows] == list(range(n))
                    balances = [v for _, v in rows]
                elif kind == 'points':   # concurrent first reads share one snapshot
                    balances = await defer.gatherResults([accounts[txn, i] for i in range(n)])
                else:                    # both ways in one transaction agree
                    rows = [(k, v) async for k, v in accounts.select(txn)]
                    balances = [await accounts[txn, i] for i in range(n)]
                    assert balances == [v for _, v in rows]
            assert sum(balances) == total, f'{kind} snapshot at {txn.revision}: {balances}'
            assert min(balances) >= 0
            stats['snapshots'] += 1

        async def reader():
            for i in range(100_000):
                if time.monotonic() >= stop_at + 0.5:
                    return
                await check_snapshot(('select', 'points', 'mixed')[i % 3])

        await defer.gatherResults([defer.ensureDeferred(transferer()) for _ in range(10)] +
                                  [defer.ensureDeferred(reader())])
        final = await _table(client, db, accounts)
        assert len(final) == n and sum(final.values()) == total and min(final.values()) >= 0
        print(f'\nbank: {stats["transfers"]} transfers, {stats["refused"]} refused, '
              f'{stats["attempts"]} attempts, {stats["snapshots"]} consistent snapshots')
        assert stats['transfers'] > 0 and stats['snapshots'] > 0
        assert stats['attempts'] > stats['transfers'] + stats['refused'], 'transferers never conflicted'


# -- unique indexes under concurrency

@pytest_twisted.ensureDeferred
async def test_unique_index_race_has_exactly_one_winner(client, etcd, reactor, prefix):
    users, by_email, _ = _users()
    async with connected(reactor, etcd.url, timeout=10) as other:
        dbs = [Database(client, prefix=prefix), Database(other, prefix=prefix)]
        email = 'same@example.com'
        oids = [uuid.uuid4() for _ in range(10)]

        def insert(txn, oid):
            users[txn, oid] = {'name': str(oid), 'email': email}
            return oid

        outcomes = await _outcomes([dbs[i % 2].run(insert, oid, retries=30, backoff=0.002)
                                    for i, oid in enumerate(oids)])
        winners = [value for kind, value in outcomes if kind == 'ok']
        errors = [value for kind, value in outcomes if kind == 'error']
        assert len(winners) == 1, outcomes
        assert len(errors) == 9
        winner = winners[0]
        for error in errors:
            assert isinstance(error, UniqueViolation), repr(error)
            assert error.index == 'by_email' and error.value == email
            assert error.owner == winner
            assert 'by_email' in str(error) and email in str(error)
        assert await _table(client, dbs[0], by_email) == {email: winner}
        stored = await _table(client, dbs[0], users)
        assert list(stored) == [winner] and stored[winner]['email'] == email


# -- index maintenance

@pytest_twisted.ensureDeferred
async def test_index_follows_insert_update_and_delete(client, prefix):
    db = Database(client, prefix=prefix)
    users, by_email, _ = _users()
    oid = uuid.uuid4()

    def put(txn, record):
        users[txn, oid] = record

    await db.run(put, {'name': 'ann', 'email': 'a@x'})
    assert await _table(client, db, by_email) == {'a@x': oid}

    await db.run(put, {'name': 'ann', 'email': 'b@x'})
    assert await _table(client, db, by_email) == {'b@x': oid}

    entry = await _raw_kv(client, _raw(db, by_email, 'b@x'))
    await db.run(put, {'name': 'ann smith', 'email': 'b@x'})   # indexed value kept: entry untouched
    assert await _table(client, db, by_email) == {'b@x': oid}
    assert (await _raw_kv(client, _raw(db, by_email, 'b@x'))).mod_revision == entry.mod_revision
    assert (await _table(client, db, users))[oid]['name'] == 'ann smith'

    def remove(txn):
        del users[txn, oid]
    await db.run(remove)
    assert await _table(client, db, by_email) == {}
    assert await _table(client, db, users) == {}
    assert await _all_keys(client, prefix) == []


@pytest_twisted.ensureDeferred
async def test_non_unique_index_with_composite_map(client, prefix):
    db = Database(client, prefix=prefix)
    users, _, by_tag = _users()
    u1, u2 = uuid.uuid4(), uuid.uuid4()

    def put(txn, oid, record):
        users[txn, oid] = record

    await db.run(put, u1, {'email': 'one@x', 'tag': 'red'})
    await db.run(put, u2, {'email': 'two@x', 'tag': 'red'})
    assert await _table(client, db, by_tag) == {('red', u1): u1, ('red', u2): u2}

    await db.run(put, u1, {'email': 'one@x', 'tag': 'blue'})
    assert await _table(client, db, by_tag) == {('blue', u1): u1, ('red', u2): u2}

    def remove(txn, oid):
        del users[txn, oid]
    await db.run(remove, u2)
    assert await _table(client, db, by_tag) == {('blue', u1): u1}


@pytest_twisted.ensureDeferred
async def test_nullable_and_non_nullable_indexes(client, prefix):
    db = Database(client, prefix=prefix)
    users, by_email, by_tag = _users()
    oid = uuid.uuid4()

    def put(txn, record):
        users[txn, oid] = record

    await db.run(put, {'email': 'a@x', 'tag': None})          # nullable index: no entry
    assert await _table(client, db, by_tag) == {}
    assert await _table(client, db, by_email) == {'a@x': oid}

    await db.run(put, {'email': 'a@x', 'tag': 'green'})
    assert await _table(client, db, by_tag) == {('green', oid): oid}
    await db.run(put, {'email': 'a@x', 'tag': None})          # back to None: entry removed
    assert await _table(client, db, by_tag) == {}

    before = sorted(await _all_keys(client, prefix))
    other = uuid.uuid4()
    with pytest.raises(NullIndexValue) as caught:
        async with db.begin(write=True) as txn:
            users[txn, other] = {'email': None, 'tag': 'x'}
    assert 'by_email' in str(caught.value) and 'users' in str(caught.value)
    assert sorted(await _all_keys(client, prefix)) == before   # nothing written

    # A nullable unique index accepts None (and keeps no entry for it).
    db2 = Database(client, prefix=prefix + b'nullable/')
    users2, by_email2, _ = _users(nullable_email=True)

    def put2(txn):
        users2[txn, other] = {'email': None}
    await db2.run(put2)
    assert await _table(client, db2, by_email2) == {}
    assert list(await _table(client, db2, users2)) == [other]


@pytest_twisted.ensureDeferred
async def test_unique_values_swap_in_one_transaction_and_duplicates_are_refused(client, prefix):
    db = Database(client, prefix=prefix)
    users, by_email, _ = _users()
    u1, u2, u3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def setup(txn):
        users[txn, u1] = {'email': 'a@x'}
        users[txn, u2] = {'email': 'b@x'}
    await db.run(setup)

    async def swap(txn):
        r1, r2 = await users[txn, u1], await users[txn, u2]
        users[txn, u1] = {**r1, 'email': r2['email']}
        users[txn, u2] = {**r2, 'email': r1['email']}
    await db.run(swap)
    assert await _table(client, db, by_email) == {'a@x': u2, 'b@x': u1}

    # A duplicate of a stored value: refused, naming the owner.
    with pytest.raises(UniqueViolation) as caught:
        async with db.begin(write=True) as txn:
            users[txn, u3] = {'email': 'a@x'}
    assert caught.value.index == 'by_email' and caught.value.value == 'a@x' and caught.value.owner == u2

    # Two records of one transaction claiming one value: refused.
    with pytest.raises(UniqueViolation) as caught:
        async with db.begin(write=True) as txn:
            users[txn, u3] = {'email': 'c@x'}
            users[txn, uuid.uuid4()] = {'email': 'c@x'}
    assert caught.value.value == 'c@x'

    # Freeing a value and taking it in the same transaction works.
    def move(txn):
        del users[txn, u2]
        users[txn, u3] = {'email': 'a@x'}
    await db.run(move)
    assert await _table(client, db, by_email) == {'a@x': u3, 'b@x': u1}
    assert set(await _table(client, db, users)) == {u1, u3}


@pytest_twisted.ensureDeferred
async def test_rebuild_index_restores_entries_deleted_by_hand(client, prefix):
    db = Database(client, prefix=prefix)
    users, by_email, by_tag = _users()
    oids = [uuid.uuid4() for _ in range(5)]

    def setup(txn):
        for i, oid in enumerate(oids):
            users[txn, oid] = {'email': f'u{i}@x', 'tag': 'even' if i % 2 == 0 else None}
    await db.run(setup)
    expected = {f'u{i}@x': oid for i, oid in enumerate(oids)}
    assert await _table(client, db, by_email) == expected

    start, end = by_email._range()
    deleted = await client.delete(KeySet(prefix + start, prefix + end))
    assert deleted.deleted == 5
    stray = uuid.uuid4()
    await client.set(_raw(db, by_email, 'ghost@x'), stray.bytes)   # an entry no record backs
    assert await _table(client, db, by_email) == {'ghost@x': stray}

    written = await db.run(lambda txn: users.rebuild_index(txn, 'by_email'))
    assert written == 5
    assert await _table(client, db, by_email) == expected

    start, end = by_tag._range()
    await client.delete(KeySet(prefix + start, prefix + end))
    assert await db.run(lambda txn: users.rebuild_index(txn, 'by_tag')) == 3
    assert await _table(client, db, by_tag) == {('even', oids[i]): oids[i] for i in (0, 2, 4)}


@pytest_twisted.ensureDeferred
async def test_select_through_an_index(client, prefix):
    db = Database(client, prefix=prefix)
    users, _, _ = _users()
    people = {name: uuid.uuid4() for name in ('eve', 'bob', 'dan', 'cat', 'amy', 'carl')}

    def setup(txn):
        for name, oid in people.items():
            tag = 'red' if len(name) == 3 else 'redder'
            users[txn, oid] = {'name': name, 'email': f'{name}@x', 'tag': tag}
    await db.run(setup)

    async with db.begin() as txn:
        everyone = [u['name'] async for u in users.select(txn, index='by_email', return_keys=False)]
        assert everyone == sorted(people)
        ranged = [(k, u['name']) async for k, u in users.select(txn, index='by_email', from_key='b',
                                                                 to_key='d')]
        assert ranged == [(people[n], n) for n in ('bob', 'carl', 'cat')]
        assert [k async for k in users.select(txn, index='by_email', prefix='ca', return_values=False)] \
            == [people['carl'], people['cat']]
        assert [u['name'] async for u in users.select(txn, index='by_email', reverse=True, limit=2,
                                                      return_keys=False)] == ['eve', 'dan']
        # Non-unique index: prefix is the whole indexed value ('red' does not match 'redder').
        reds = [u['name'] async for u in users.select(txn, index='by_tag', prefix='red', return_keys=False)]
        assert sorted(reds) == ['amy', 'bob', 'cat', 'dan', 'eve']
        assert [u['name'] async for u in users.select(txn, index='by_tag', prefix='redder',
                                                      return_keys=False)] == ['carl']
        with pytest.raises(KeyError, match='no index'):
            [u async for u in users.select(txn, index='nope')]


# -- racing index updates

@pytest_twisted.ensureDeferred
async def test_racing_index_updates_conflict_and_leave_no_stale_entry(client, etcd, reactor, prefix):
    users, by_email, _ = _users()
    async with connected(reactor, etcd.url, timeout=10) as other:
        db1, db2 = Database(client, prefix=prefix), Database(other, prefix=prefix)
        oid = uuid.uuid4()

        def setup(txn):
            users[txn, oid] = {'email': 'a@x'}
        await db1.run(setup)

        t1, t2 = db1.begin(write=True), db2.begin(write=True)
        r1, r2 = await defer.gatherResults([users[t1, oid], users[t2, oid]])
        users[t1, oid] = {**r1, 'email': 'b@x'}
        users[t2, oid] = {**r2, 'email': 'c@x'}
        outcomes = await _outcomes([t1.commit(), t2.commit()])
        kinds = sorted(kind for kind, _ in outcomes)
        assert kinds == ['error', 'ok'], outcomes
        winner_email = 'b@x' if outcomes[0][0] == 'ok' else 'c@x'
        error = [value for kind, value in outcomes if kind == 'error'][0]
        assert isinstance(error, TransactionConflict)
        assert f'users[{oid!r}]' in error.keys
        assert await _table(client, db1, by_email) == {winner_email: oid}
        assert (await _table(client, db1, users))[oid]['email'] == winner_email

        # The same race through db.run (read-modify-write, retried): every worker lands in turn; the
        # index ends with exactly one entry, the record's.
        attempts = [0]

        async def change(txn, email):
            attempts[0] += 1
            record = await users[txn, oid]
            users[txn, oid] = {**record, 'email': email}
        emails = [f'v{i}@x' for i in range(10)]
        await defer.gatherResults([(db1, db2)[i % 2].run(change, e, retries=100, backoff=0.002)
                                   for i, e in enumerate(emails)])
        final = (await _table(client, db1, users))[oid]['email']
        assert final in emails
        assert await _table(client, db1, by_email) == {final: oid}
        assert attempts[0] > 10

        # Blind writes (no read before) race the same way: the old record is read at the commit, so
        # the outcome is still exactly one entry matching the record.
        def blind(txn, email):
            users[txn, oid] = {'email': email}
        outcomes = await _outcomes([(db1, db2)[i % 2].run(blind, f'w{i}@x', retries=100, backoff=0.002)
                                    for i in range(10)])
        assert all(kind == 'ok' for kind, _ in outcomes), outcomes
        final = (await _table(client, db1, users))[oid]['email']
        assert await _table(client, db1, by_email) == {final: oid}


# -- isolation: snapshots, phantoms, write-write

@pytest_twisted.ensureDeferred
async def test_snapshot_reads_are_pinned_and_a_stale_writer_conflicts(client, prefix):
    db, tab = await _tab(client, prefix, 'a', 'b', 'r/1', 'r/3')

    txn = db.begin(write=True)
    assert await tab[txn, 'a'] == 1
    pinned = txn.revision
    assert pinned is not None
    await client.set(_raw(db, tab, 'a'), tab.encode_value('a', 2))
    await client.set(_raw(db, tab, 'b'), tab.encode_value('b', 2))
    await client.set(_raw(db, tab, 'r/2'), tab.encode_value('r/2', 2))
    assert await tab[txn, 'a'] == 1                  # read again: still the snapshot's
    assert await tab[txn, 'b'] == 1                  # first read after the change: still the snapshot's
    assert [k async for k in tab.select(txn, prefix='r/', return_values=False)] == ['r/1', 'r/3']
    assert await tab.count(txn, prefix='r/') == 2
    assert txn.revision == pinned
    conflict = await _conflicting_write(tab, txn, 'out', 'summary')
    keys = conflict.keys
    assert "tab['a']" in keys and "tab['b']" in keys, keys
    assert any('r/2' in key for key in keys), keys   # the phantom
    assert "tab['r/1']" not in keys and "tab['out']" not in keys
    assert "tab['a']" in str(conflict)
    assert txn.state == 'aborted'
    assert await _raw_value(client, _raw(db, tab, 'out')) is None

    # A read-only transaction that saw old values completes fine.
    reader = db.begin()
    assert await tab[reader, 'a'] == 2
    await client.set(_raw(db, tab, 'a'), tab.encode_value('a', 3))
    assert await tab[reader, 'a'] == 2 and await tab[reader, 'b'] == 2
    with pytest.raises(ReadOnlyTransaction):
        tab[reader, 'x'] = 1
    async with reader:
        pass
    assert reader.state == 'committed' and reader.committed_revision == reader.revision


@pytest_twisted.ensureDeferred
async def test_phantom_insert_into_a_counted_range_conflicts(client, prefix):
    db, tab = await _tab(client, prefix, 'x/1', 'x/2', 'y/1')

    # A write outside the range read does not disturb the transaction.
    txn = db.begin(write=True)
    assert await tab.count(txn, prefix='x/') == 2
    await client.set(_raw(db, tab, 'y/2'), tab.encode_value('y/2', 1))
    tab[txn, 'summary'] = 2
    await txn.commit()
    assert await _raw_value(client, _raw(db, tab, 'summary')) == tab.encode_value('summary', 2)

    # An insert inside it does.
    txn = db.begin(write=True)
    assert await tab.count(txn, prefix='x/') == 2
    await client.set(_raw(db, tab, 'x/3'), tab.encode_value('x/3', 1))
    conflict = await _conflicting_write(tab, txn, 'summary', 3)
    assert any('x/3' in key for key in conflict.keys), conflict.keys
    assert await _raw_value(client, _raw(db, tab, 'summary')) == tab.encode_value('summary', 2)

    # Also with a key range (select from_key/to_key) instead of a prefix.
    txn = db.begin(write=True)
    assert [k async for k in tab.select(txn, from_key='x/', to_key='x/9', return_values=False)] == \
        ['x/1', 'x/2', 'x/3']
    await client.set(_raw(db, tab, 'x/4'), tab.encode_value('x/4', 1))
    conflict = await _conflicting_write(tab, txn, 'summary', 4)
    assert any('x/4' in key for key in conflict.keys), conflict.keys


@pytest_twisted.ensureDeferred
async def test_phantom_key_is_named_by_table_and_key(client, prefix):
    db, tab = await _tab(client, prefix, 'x/1')
    txn = db.begin(write=True)
    assert await tab.count(txn, prefix='x/') == 1
    await client.set(_raw(db, tab, 'x/2'), tab.encode_value('x/2', 1))
    conflict = await _conflicting_write(tab, txn, 'summary', 1)
    assert conflict.keys == ["tab['x/2']"]


@pytest_twisted.ensureDeferred
async def test_deleting_a_key_of_a_selected_range_conflicts(client, prefix):
    db, tab = await _tab(client, prefix, 'x/1', 'x/2', 'x/3')

    txn = db.begin(write=True)
    total = sum([v async for v in tab.select(txn, prefix='x/', return_keys=False)])
    assert total == 3
    await client.delete(_raw(db, tab, 'x/2'))
    conflict = await _conflicting_write(tab, txn, 'summary', total)
    assert any('x/2' in key for key in conflict.keys), conflict.keys
    assert await _raw_value(client, _raw(db, tab, 'summary')) is None

    # The same with a keys-only count.
    txn = db.begin(write=True)
    assert await tab.count(txn, prefix='x/') == 2
    await client.delete(_raw(db, tab, 'x/3'))
    conflict = await _conflicting_write(tab, txn, 'summary', 2)
    assert any('x/3' in key for key in conflict.keys), conflict.keys


@pytest_twisted.ensureDeferred
async def test_deleted_key_seen_through_a_range_is_named_by_table_and_key(client, prefix):
    db, tab = await _tab(client, prefix, 'x/1')
    txn = db.begin(write=True)
    assert [k async for k in tab.select(txn, prefix='x/', return_values=False)] == ['x/1']
    await client.delete(_raw(db, tab, 'x/1'))
    conflict = await _conflicting_write(tab, txn, 'summary', 1)
    assert conflict.keys == ["tab['x/1']"]


@pytest_twisted.ensureDeferred
async def test_reads_see_the_transactions_own_writes(client, prefix):
    db, tab = await _tab(client, prefix, 'x/1', 'x/2', 'x/3')

    async with db.begin(write=True) as txn:
        tab[txn, 'x/0'] = 0
        tab[txn, 'x/2'] = 2
        tab[txn, 'x/25'] = 25
        del tab[txn, 'x/3']
        tab[txn, 'x/9'] = 9
        assert await tab[txn, 'x/2'] == 2 and await tab[txn, 'x/3'] is None
        assert not await tab.exists(txn, 'x/3') and await tab.exists(txn, 'x/0')
        rows = [(k, v) async for k, v in tab.select(txn, prefix='x/')]
        assert rows == [('x/0', 0), ('x/1', 1), ('x/2', 2), ('x/25', 25), ('x/9', 9)]
        assert [k async for k in tab.select(txn, prefix='x/', reverse=True, limit=3,
                                            return_values=False)] == ['x/9', 'x/25', 'x/2']
        assert [k async for k in tab.select(txn, from_key='x/1', to_key='x/3', return_values=False)] \
            == ['x/1', 'x/2', 'x/25']
        assert await tab.count(txn, prefix='x/') == 5
    assert await _table(client, db, tab) == {'x/0': 0, 'x/1': 1, 'x/2': 2, 'x/25': 25, 'x/9': 9}


@pytest_twisted.ensureDeferred
async def test_blind_write_conflicts_with_a_change_after_the_snapshot(client, prefix):
    db, tab = await _tab(client, prefix, 'other', 'k', value=0)

    txn = db.begin(write=True)
    assert await tab[txn, 'other'] == 0          # fixes the snapshot
    await client.set(_raw(db, tab, 'k'), tab.encode_value('k', 99))
    conflict = await _conflicting_write(tab, txn, 'k', 1)   # written without reading it
    assert conflict.keys == ["tab['k']"]
    assert await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 99)

    # A key absent at the snapshot and created meanwhile conflicts as well.
    txn = db.begin(write=True)
    assert await tab[txn, 'other'] == 0
    await client.set(_raw(db, tab, 'new'), tab.encode_value('new', 'theirs'))
    conflict = await _conflicting_write(tab, txn, 'new', 'mine')
    assert conflict.keys == ["tab['new']"]
    assert await _raw_value(client, _raw(db, tab, 'new')) == tab.encode_value('new', 'theirs')

    # Without a concurrent change, the same blind write commits.
    txn = db.begin(write=True)
    assert await tab[txn, 'other'] == 0
    tab[txn, 'k'] = 1
    revision = await txn.commit()
    assert revision > txn.revision
    assert await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 1)


# -- limits

@pytest.fixture(scope='module')
def small_etcd(etcd_factory):
    """An etcd that accepts at most 16 operations per txn."""
    return etcd_factory(max_txn_ops=16)


@pytest_twisted.ensureDeferred
async def test_max_txn_ops_is_refused_before_sending(small_etcd, reactor, prefix):
    async with connected(reactor, small_etcd.url, timeout=10) as small:
        db = Database(small, prefix=prefix, max_txn_ops=16)
        tab = pmap.MapOidCbor(1, name='tab')

        def write(txn, keys):
            for i in keys:
                tab[txn, i] = i

        with pytest.raises(TransactionTooLarge) as caught:
            await db.run(write, range(17))
        error = caught.value
        assert (error.limit, error.allowed, error.needed) == ('max_txn_ops', 16, 17)
        assert '1 too many' in str(error) and '--max-txn-ops' in str(error)
        assert await _all_keys(small, prefix) == []

        await db.run(write, range(16))                   # exactly the limit passes
        assert len(await _all_keys(small, prefix)) == 16

        # Compares count too: reading 16 keys and writing one more needs 17 compares.
        async def read_and_write(txn):
            for i in range(16):
                await tab[txn, i]
            tab[txn, 100] = 100
        with pytest.raises(TransactionTooLarge) as caught:
            await db.run(read_and_write)
        assert (caught.value.limit, caught.value.needed) == ('max_txn_ops', 17)
        assert 'compares' in str(caught.value)
        assert len(await _all_keys(small, prefix)) == 16

        # Index entries and the reads index maintenance makes count as well: 8 users = 16 puts and
        # 16 compares (record + unique entry each) fit; 9 do not.
        users, _, _ = _users()
        users.indexes.pop('by_tag')

        def add_users(txn, count):
            for i in range(count):
                users[txn, uuid.UUID(int=i + 1)] = {'email': f'{i}@x'}
        db_users = Database(small, prefix=prefix + b'users/', max_txn_ops=16)
        with pytest.raises(TransactionTooLarge) as caught:
            await db_users.run(add_users, 9)
        assert (caught.value.limit, caught.value.allowed, caught.value.needed) == ('max_txn_ops', 16, 18)
        assert await _all_keys(small, prefix + b'users/') == []
        await db_users.run(add_users, 8)
        assert len(await _all_keys(small, prefix + b'users/')) == 16

        # The server really refuses 17 operations (the check is not stricter than etcd).
        with pytest.raises(TooManyOperations):
            await small.submit(Transaction(success=[OpSet(prefix + b'raw/%d' % i, b'v') for i in range(17)]))
        assert len(await _all_keys(small, prefix + b'raw/')) == 0


@pytest_twisted.ensureDeferred
async def test_max_request_bytes_is_refused_before_sending(client, prefix):
    db = Database(client, prefix=prefix)
    blobs = pmap.MapStringBinary(1, name='blobs')
    big = b'\xab' * (500 * 1024)

    def write(txn, count):
        for i in range(count):
            blobs[txn, f'b{i}'] = big

    with pytest.raises(TransactionTooLarge) as caught:
        await db.run(write, 4)
    error = caught.value
    assert error.limit == 'max_request_bytes' and error.allowed == 1536 * 1024
    assert error.needed > 4 * len(big) > error.allowed
    assert f'{error.needed - error.allowed:,} bytes too many' in str(error)
    assert await _all_keys(client, prefix) == []

    await db.run(write, 2)                                # about 1 MB: fine
    assert len(await _all_keys(client, prefix)) == 2

    # The largest transaction the check lets through is one etcd accepts (the estimate is not low).
    def one(txn, size):
        blobs[txn, 'edge'] = b'e' * size
    with pytest.raises(TransactionTooLarge) as caught:
        await db.run(one, 1600 * 1024)
    largest = 1600 * 1024 - (caught.value.needed - caught.value.allowed)
    await db.run(one, largest)
    assert len(await _raw_value(client, _raw(db, blobs, 'edge'))) == largest
    with pytest.raises(TransactionTooLarge):
        await db.run(one, largest + 1)


@pytest_twisted.ensureDeferred
async def test_128_writes_pass_on_the_default_server_and_129_are_refused(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapOidOid(1, name='tab')

    def write(txn, count):
        for i in range(count):
            tab[txn, i] = i

    with pytest.raises(TransactionTooLarge) as caught:
        await db.run(write, 129)
    assert (caught.value.limit, caught.value.allowed, caught.value.needed) == ('max_txn_ops', 128, 129)
    assert await _all_keys(client, prefix) == []
    await db.run(write, 128)
    assert len(await _table(client, db, tab)) == 128

    # 128 keys read and written again (128 compares + 128 puts) also pass.
    async def bump(txn):
        values = await defer.gatherResults([tab[txn, i] for i in range(128)])
        for i, value in enumerate(values):
            tab[txn, i] = value + 1
    await db.run(bump)
    assert await _table(client, db, tab) == {i: i + 1 for i in range(128)}


# -- aborts and db.run

@pytest_twisted.ensureDeferred
async def test_exception_in_the_block_writes_nothing(client, prefix):
    db, tab = await _tab(client, prefix)
    txn = db.begin(write=True)
    with pytest.raises(RuntimeError, match='boom'):
        async with txn:
            tab[txn, 'a'] = 1
            assert await tab[txn, 'a'] == 1      # read-your-writes
            raise RuntimeError('boom')
    assert txn.state == 'aborted'
    assert await _all_keys(client, prefix) == []

    calls = [0]

    def failing(txn):
        calls[0] += 1
        tab[txn, 'b'] = 1
        raise ValueError('nope')
    with pytest.raises(ValueError, match='nope'):
        await db.run(failing)
    assert calls[0] == 1                          # not retried: only conflicts are
    assert await _all_keys(client, prefix) == []


@pytest_twisted.ensureDeferred
async def test_run_gives_up_after_its_retries(client, prefix):
    db, tab = await _tab(client, prefix, 'k', value=0)
    attempts = [0]

    async def fn(txn):
        attempts[0] += 1
        value = await tab[txn, 'k']
        await client.set(_raw(db, tab, 'k'), tab.encode_value('k', value + 1))   # someone else moves k
        tab[txn, 'out'] = value

    with pytest.raises(TransactionConflict) as caught:
        await db.run(fn, retries=3, backoff=0.001)
    assert attempts[0] == 4
    assert caught.value.keys == ["tab['k']"]
    assert await _raw_value(client, _raw(db, tab, 'out')) is None
    assert await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 4)


@pytest_twisted.ensureDeferred
async def test_run_returns_the_result_of_sync_and_async_functions(client, prefix):
    db, tab = await _tab(client, prefix)

    def sync_fn(txn, value, *, key):
        tab[txn, key] = value
        return ('sync', value)
    assert await db.run(sync_fn, 1, key='a') == ('sync', 1)

    async def async_fn(txn, key):
        value = await tab[txn, key]
        tab[txn, key] = value + 1
        return ('async', value + 1)
    assert await db.run(async_fn, 'a') == ('async', 2)

    def deferred_fn(txn):
        return tab[txn, 'a']                      # a Deferred is awaited too
    assert await db.run(deferred_fn, write=False) == 2

    assert await _table(client, db, tab) == {'a': 2}


# -- schemas

def _schema(value_class=pmap.MapUuidCbor, nullable=False, with_index=True):
    users = value_class(1)
    users_by_email = pmap.MapStringUuid(2)
    if with_index:
        users.attach_index('by_email', users_by_email, lambda u: u['email'], nullable=nullable)
    return pmap.Schema(users=users, users_by_email=users_by_email)


@pytest_twisted.ensureDeferred
async def test_schema_attach_records_then_is_a_no_op(client, prefix):
    db = Database(client, prefix=prefix)
    assert await db.attach(_schema()) == ['users', 'users_by_email']
    catalog = await _all_keys(client, prefix)
    assert len(catalog) == 2
    revision = (await _raw_kv(client, catalog[0])).mod_revision
    assert await db.attach(_schema()) == []
    assert (await _raw_kv(client, catalog[0])).mod_revision == revision


@pytest_twisted.ensureDeferred
async def test_schema_mismatch_names_slot_and_difference(client, prefix):
    db = Database(client, prefix=prefix)
    await db.attach(_schema())
    before = sorted(await _all_keys(client, prefix))

    with pytest.raises(SchemaMismatch) as caught:
        await db.attach(_schema(value_class=pmap.MapUuidJson))
    text = str(caught.value)
    assert 'slot 1' in text and 'value_type' in text and 'Cbor' in text and 'Json' in text

    with pytest.raises(SchemaMismatch) as caught:
        await db.attach(_schema(nullable=True))
    assert 'slot 1' in str(caught.value) and 'indexes' in str(caught.value)

    with pytest.raises(SchemaMismatch) as caught:
        await db.attach(_schema(with_index=False))
    assert 'slot 1' in str(caught.value) and 'indexes' in str(caught.value)
    assert sorted(await _all_keys(client, prefix)) == before


@pytest_twisted.ensureDeferred
async def test_a_table_moved_to_another_slot_is_a_mismatch(client, prefix):
    db = Database(client, prefix=prefix)
    await db.attach(_schema())
    before = sorted(await _all_keys(client, prefix))
    moved = pmap.Schema(users=pmap.MapUuidCbor(7))
    with pytest.raises(SchemaMismatch) as caught:
        await db.attach(moved)
    assert str(caught.value).startswith('slot 7 (users): the catalog records table users in slot 1, this service '
                                        'has it in slot 7; a table keeps its slot')
    assert sorted(await _all_keys(client, prefix)) == before
    # another name in the new slot is a new table
    assert await db.attach(pmap.Schema(people=pmap.MapUuidCbor(7))) == ['people']


@pytest_twisted.ensureDeferred
async def test_services_attaching_one_schema_concurrently_all_succeed(client, etcd, reactor, prefix):
    async with connected(reactor, etcd.url, timeout=10) as other:
        dbs = [Database(c, prefix=prefix) for c in (client, other, client, other)]
        results = await defer.gatherResults([db.attach(_schema()) for db in dbs])
        assert sorted(results) == [[], [], [], ['users', 'users_by_email']], results
        assert len(await _all_keys(client, prefix)) == 2
        with pytest.raises(SchemaMismatch):
            await dbs[1].attach(_schema(value_class=pmap.MapUuidJson))


# -- the outcome of a commit whose answer is lost

class _Front(protocol.Protocol):
    """The client's side of one proxied connection."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.reader = RequestReader()
        self.back = None
        self.queue = []
        self.closed = False
        self.swallowing = False     # the answer to stream ``swallow`` is kept from the client
        self.swallow = 0

    def connectionMade(self):
        self.proxy.fronts.add(self)
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.host, self.proxy.port)
        connectProtocol(endpoint, _Back(self)).addCallbacks(self._connected, self._failed)

    def _connected(self, back):
        self.proxy.backs.add(back)
        if self.closed and not self.swallowing:
            back.transport.loseConnection()
            return
        self.back = back
        for chunk in self.queue:
            back.transport.write(chunk)
        self.queue = []

    def _failed(self, failure):
        self.closed = True
        self.transport.abortConnection()

    def _send(self, data):
        if self.back is not None:
            self.back.transport.write(data)
        else:
            self.queue.append(data)

    def dataReceived(self, data):
        for raw, request in self.reader.feed(data):
            if self.closed:
                return
            if request is None:
                self._send(raw)
            else:
                self._request(request, raw)

    def _request(self, request, raw):
        proxy = self.proxy
        proxy.paths.append(request.rpc)
        mode = proxy.mode
        body = request.body
        is_commit = request.rpc == 'KV/Txn' and (b'request_put' in body or b'request_delete_range' in body)
        if mode is None or not is_commit:
            self._send(raw)
            return
        proxy.mode = None                           # one shot: the fence goes through
        proxy.triggered.append(request.rpc)
        if mode == 'drop':                          # etcd never sees it
            self.closed = True
            self.transport.abortConnection()
            proxy.answered.callback(False)
            return
        self._send(raw)
        self.swallow = request.stream_id      # the answer to keep back: this stream's (HTTP/2)
        self.swallowing = True
        if mode == 'forward_drop_now':              # hang up at once; etcd's answer is swallowed later
            self.closed = True
            self.transport.abortConnection()
        # 'forward_then_drop': hang up when etcd's answer arrives (so it surely was processed)

    def connectionLost(self, reason):
        self.closed = True
        self.proxy.fronts.discard(self)
        if self.back is not None and not self.swallowing:
            self.back.transport.loseConnection()


class _Back(protocol.Protocol):
    """The proxy's connection to etcd for one client connection."""

    def __init__(self, front):
        self.front = front
        self.answers = None

    def dataReceived(self, data):
        front = self.front
        if self.answers is None:
            self.answers = ResponseReader(front.reader.http2)
        ended = self.answers.feed(data)
        if front.swallowing and front.swallow in ended:
            front.swallowing = False
            if not front.closed:
                front.closed = True
                front.transport.abortConnection()
            self.transport.loseConnection()
            if not front.proxy.answered.called:
                front.proxy.answered.callback(True)
            return
        if not front.closed:
            front.transport.write(data)

    def connectionLost(self, reason):
        self.front.proxy.backs.discard(self)
        if not self.front.closed:
            self.front.transport.loseConnection()


class _Factory(protocol.Factory):
    def __init__(self, proxy):
        self.proxy = proxy

    def buildProtocol(self, addr):
        return _Front(self.proxy)


class _CommitProxy:
    """TCP proxy on 127.0.0.1:0 in front of etcd that can lose (or drop) the next commit's answer.

    ``arm('forward_then_drop')``: forward the next write txn, wait for etcd's answer, then hang up on
    the client instead of passing it on. ``arm('forward_drop_now')``: forward it and hang up at once.
    ``arm('drop')``: hang up without forwarding it. ``answered`` fires (True: etcd answered the
    commit, False: it never got it) once that happened.
    """

    def __init__(self, reactor, target_url):
        target = urlparse(target_url)
        self.reactor = reactor
        self.host, self.port = target.hostname, target.port
        self.mode = None
        self.answered = defer.Deferred()
        self.triggered = []
        self.paths = []
        self.fronts = set()
        self.backs = set()
        self.listening = reactor.listenTCP(0, _Factory(self), interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.listening.getHost().port}'

    def arm(self, mode):
        assert mode in ('forward_then_drop', 'forward_drop_now', 'drop')
        self.mode = mode
        self.answered = defer.Deferred()

    def wait_answered(self, timeout=10):
        return self.answered.addTimeout(timeout, self.reactor)

    async def close(self):
        for front in list(self.fronts):
            front.closed = True
            front.transport.abortConnection()
        for back in list(self.backs):
            back.transport.abortConnection()
        await self.listening.stopListening()


async def _with_proxy(etcd, reactor, body):
    proxy = _CommitProxy(reactor, etcd.url)
    proxied = Client(reactor, url=proxy.url, timeout=5)
    try:
        return await body(proxy, proxied)
    finally:
        await proxied.close()
        await proxy.close()


async def _counter_setup(client, prefix, proxied):
    db = Database(proxied, prefix=prefix)
    tab = pmap.MapStringOid(1, name='tab')

    def setup(txn):
        tab[txn, 'k'] = 1
        tab[txn, 'other'] = 1
    await db.run(setup)
    return db, tab


@pytest_twisted.ensureDeferred
async def test_lost_answer_of_an_applied_commit_is_outcome_unknown(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db, tab = await _counter_setup(client, prefix, proxied)
        txn = db.begin(write=True)
        value = await tab[txn, 'k']
        tab[txn, 'k'] = value + 1
        proxy.arm('forward_then_drop')
        with pytest.raises((CommitOutcomeUnknown, TransactionConflict)) as caught:
            await txn.commit()
        assert await proxy.wait_answered() is True
        assert len(proxy.triggered) == 1
        applied = await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 2)
        assert applied                               # etcd answered it: it applied
        assert isinstance(caught.value, CommitOutcomeUnknown), repr(caught.value)
        assert 'may or may not' in str(caught.value)
        assert txn.state == 'unknown'                # not 'aborted': it did apply
    await _with_proxy(etcd, reactor, body)


@pytest_twisted.ensureDeferred
async def test_lost_answer_of_an_applied_commit_that_wrote_another_key(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db, tab = await _counter_setup(client, prefix, proxied)
        txn = db.begin(write=True)
        value = await tab[txn, 'k']                  # read k (the fence's key) ...
        tab[txn, 'out'] = value + 100                # ... but write another key
        proxy.arm('forward_then_drop')
        with pytest.raises((CommitOutcomeUnknown, TransactionConflict)) as caught:
            await txn.commit()
        assert await proxy.wait_answered() is True
        applied = await _raw_value(client, _raw(db, tab, 'out')) == tab.encode_value('out', 101)
        assert applied
        assert isinstance(caught.value, CommitOutcomeUnknown), \
            f'the commit applied, yet the library said: {caught.value!r}'
    await _with_proxy(etcd, reactor, body)


@pytest_twisted.ensureDeferred
async def test_run_never_applies_a_commit_twice_after_its_answer_was_lost(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db, tab = await _counter_setup(client, prefix, proxied)
        attempts = [0]

        async def add_k_to_total(txn):
            attempts[0] += 1
            k = await tab[txn, 'k']                  # read first: becomes the fence key
            total = await tab[txn, 'total'] or 0
            tab[txn, 'total'] = total + k
        proxy.arm('forward_then_drop')
        outcome = await _outcomes([db.run(add_k_to_total, backoff=0.001)])
        assert await proxy.wait_answered() is True
        total = tab.decode_value('total', await _raw_value(client, _raw(db, tab, 'total')))
        assert (attempts[0], total) == (1, 1), f'{attempts[0]} attempts, total {total}, {outcome}'
        assert isinstance(outcome[0][1], CommitOutcomeUnknown), outcome
    await _with_proxy(etcd, reactor, body)


@pytest_twisted.ensureDeferred
async def test_commit_lost_before_etcd_is_fenced_off(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db, tab = await _counter_setup(client, prefix, proxied)
        txn = db.begin(write=True)
        value = await tab[txn, 'k']
        tab[txn, 'k'] = value + 1
        tab[txn, 'new'] = 7
        proxy.arm('drop')
        with pytest.raises(TransactionConflict) as caught:
            await txn.commit()
        assert await proxy.wait_answered() is False
        assert 'fenced off' in str(caught.value) and 'nothing was written' in str(caught.value)
        assert not isinstance(caught.value, CommitOutcomeUnknown)
        assert await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 1)
        assert await _raw_value(client, _raw(db, tab, 'new')) is None
        # db.run retries a fenced-off commit, and the retry lands exactly once.
        attempts = [0]

        async def increment(txn):
            attempts[0] += 1
            tab[txn, 'k'] = await tab[txn, 'k'] + 1
        proxy.arm('drop')
        await db.run(increment, backoff=0.001)
        assert attempts[0] == 2
        assert await _raw_value(client, _raw(db, tab, 'k')) == tab.encode_value('k', 2)
    await _with_proxy(etcd, reactor, body)


@pytest_twisted.ensureDeferred
async def test_commit_dropped_right_after_forwarding_matches_the_truth(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db, tab = await _counter_setup(client, prefix, proxied)
        seen = {'unknown': 0, 'fenced': 0}
        for round_ in range(5):
            txn = db.begin(write=True)
            value = await tab[txn, 'k']
            tab[txn, 'k'] = value + 1
            proxy.arm('forward_drop_now')
            with pytest.raises((CommitOutcomeUnknown, TransactionConflict)) as caught:
                await txn.commit()
            await proxy.wait_answered()
            now = await _raw_value(client, _raw(db, tab, 'k'))
            applied = now == tab.encode_value('k', value + 1)
            assert applied or now == tab.encode_value('k', value)
            if applied:
                assert isinstance(caught.value, CommitOutcomeUnknown), \
                    f'round {round_}: applied, yet reported as {caught.value!r}'
            if isinstance(caught.value, CommitOutcomeUnknown):
                seen['unknown'] += 1
            else:
                assert 'fenced off' in str(caught.value)
                assert not applied
                seen['fenced'] += 1
        print(f'\nforward-then-hang-up: {seen}')
    await _with_proxy(etcd, reactor, body)


@pytest_twisted.ensureDeferred
async def test_lost_blind_commit_without_a_fence_key_is_outcome_unknown(client, etcd, reactor, prefix):
    async def body(proxy, proxied):
        db = Database(proxied, prefix=prefix)
        tab = pmap.MapStringOid(1, name='tab')
        for mode, expected in (('drop', None), ('forward_then_drop', tab.encode_value('a', 1))):
            txn = db.begin(write=True)
            tab[txn, 'a'] = 1                          # nothing read: no key to fence with
            proxy.arm(mode)
            with pytest.raises(CommitOutcomeUnknown):
                await txn.commit()
            await proxy.wait_answered()
            assert await _raw_value(client, _raw(db, tab, 'a')) == expected
    await _with_proxy(etcd, reactor, body)
