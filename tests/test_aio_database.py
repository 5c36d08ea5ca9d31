"""The ORM on the asyncio face (``txaioetcd.aio``): persistent maps, Database transactions, indexes,
schemas and mirrors against real etcd, from plain asyncio Tasks with no Twisted reactor running.

Every test is a plain function whose coroutine runs in a fresh ``asyncio.run`` (tests/_aio.py), and
concurrency is asyncio's own (``asyncio.gather`` of Tasks, often over several clients). What this
proves, each against what etcd itself holds (raw reads with the low-level client):

- no lost update: 20 concurrent incrementers, half through ``db.run`` and half through
  ``async with db.begin(write=True)`` retried by hand on ``TransactionConflict``, count exactly;
- bank transfers keep the total in every read-only snapshot (range, point and mixed reads) and in
  the end; a unique index raced by many inserts of one value has exactly one winner, the others get
  ``UniqueViolation`` naming it, and the index holds one entry;
- the table surface works the same as on Twisted: point reads and writes, ``exists``, ``count``,
  ``async for`` over ``select`` (bounds, prefix, limit, reverse, through an index), snapshot
  isolation with a conflict naming the key, an exception inside ``async with`` writing nothing, and
  ``db.attach(schema)`` recording, checking and refusing a mismatch;
- a ``Mirror`` of a prefix follows puts, deletes and transactions, and after history was compacted
  while it was cut off (an asyncio TCP proxy written here does the cutting) it resyncs and tells
  what changed; a table mirror and an index mirror follow Database writes;
- cancelling a Task (``task.cancel()``, ``asyncio.wait_for``) blocked in a commit or a read leaves
  the database consistent - every transaction's writes landed together or not at all (checked
  revision by revision with a watch) - and the client usable. The proxy holds a commit's bytes back
  so that it can be cancelled while surely in flight.

A coroutine function given to ``db.run`` runs as an asyncio Task when an asyncio Task calls
``db.run``, so it may await asyncio itself (``asyncio.sleep``, ``asyncio.gather`` of its reads).

Every wait is bounded (``asyncio.wait_for``, ``eventually``, loop deadlines); no test sleeps to
let something happen (the only pauses are the backoff of a hand-written retry loop, and one
``asyncio.sleep`` inside a ``db.run`` function). Every key is under the test's ``prefix`` except in the compaction test, which has an etcd of its own
(``etcd_factory``); every address is loopback.
"""

import asyncio
import base64
import random
import statistics
import uuid
from contextlib import AsyncExitStack
from urllib.parse import urlparse

import pytest

from txaioetcd.aio import (Compacted, Database, KeySet, OpDel, OpSet, ReadOnlyTransaction, SchemaMismatch,
                           Transaction, TransactionConflict, UniqueViolation, pmap)
from txaioetcd.recipes.mirror import Mirror

from _aio import aio_client, eventually, run


# -- helpers

def _raw(db, table, key) -> bytes:
    """The etcd key of ``table[key]`` in ``db``."""
    return db.prefix + table.encode_key(key)


async def _raw_value(client, raw):
    result = await client.get(raw)
    return result.kvs[0].value if result.kvs else None


async def _all_keys(client, prefix) -> list:
    result = await client.get(KeySet(prefix, prefix=True), keys_only=True)
    return [kv.key for kv in result.kvs]


async def _table(client, db, table) -> dict:
    """Everything stored in ``table`` (read with the low-level client in one request, decoded)."""
    start, end = table._range()
    result = await client.get(KeySet(db.prefix + start, db.prefix + end))
    assert not result.more
    cut = len(db.prefix)
    out = {}
    for kv in result.kvs:
        key = table.decode_key(kv.key[cut:])
        out[key] = table.decode_value(key, kv.value)
    return out


async def _outcomes(awaitables) -> list:
    """Run ``awaitables`` at once (each in a Task of its own): ``('ok', result)`` or ``('error',
    exception)`` each, in order."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    return [('error', r) if isinstance(r, BaseException) else ('ok', r) for r in results]


async def _fresh(client, keyset) -> dict:
    """The range as a fresh read sees it: {key: KeyValue}."""
    result = await client.get(keyset)
    assert not result.more
    return {kv.key: kv for kv in result.kvs}


def _copy(mirror) -> dict:
    return {key: mirror.kv(key) for key in mirror}


def _users():
    """users (UUID → CBOR dict) with a unique index by email and a non-unique nullable one by tag."""
    users = pmap.MapUuidCbor(1, name='users')
    by_email = pmap.MapStringUuid(2, name='users_by_email')
    by_tag = pmap.MapStringUuidUuid(3, name='users_by_tag')
    users.attach_index('by_email', by_email, lambda user: user.get('email'))
    users.attach_index('by_tag', by_tag, lambda user: user.get('tag'), unique=False, nullable=True)
    return users, by_email, by_tag


class _Proxy:
    """A TCP proxy on 127.0.0.1 in front of etcd, on asyncio streams.

    ``hold()``: what clients send from then on is kept back (in order) instead of forwarded, until
    ``release()`` forwards it; ``holds(data)`` tells whether ``data`` (as is, or base64 as the JSON
    gateway sends it) is among what is held. ``cut()`` drops every connection, and what was held, and
    hangs up on new ones until ``mend()``: what a partition looks like to the client behind it.
    """

    def __init__(self, target_url):
        target = urlparse(target_url)
        self._target = (target.hostname, target.port)
        self.cut_off = False
        self.holding = False
        self._held = []              # [(writer to etcd, bytes)]
        self._links = set()          # {(writer to the client, writer to etcd)}
        self._tasks = set()
        self._server = None
        self.url = None

    async def start(self):
        self._server = await asyncio.start_server(self._accept, '127.0.0.1', 0)
        self.url = 'http://127.0.0.1:%d' % self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, client_reader, client_writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            if self.cut_off:
                client_writer.transport.abort()
                return
            try:
                etcd_reader, etcd_writer = await asyncio.open_connection(*self._target)
            except OSError:
                client_writer.transport.abort()
                return
            link = (client_writer, etcd_writer)
            self._links.add(link)
            try:
                await asyncio.gather(self._pump(client_reader, etcd_writer, True),
                                     self._pump(etcd_reader, client_writer, False))
            finally:
                self._links.discard(link)
                client_writer.transport.abort()
                etcd_writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader, writer, upstream):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if upstream and self.holding:
                    self._held.append((writer, data))
                else:
                    writer.write(data)
        except OSError:
            pass
        # One direction ended: so does the link (the other pump sees its transport aborted).
        for client_writer, etcd_writer in list(self._links):
            if writer in (client_writer, etcd_writer):
                client_writer.transport.abort()
                etcd_writer.transport.abort()

    def hold(self):
        self.holding = True

    def holds(self, data: bytes) -> bool:
        held = b''.join(chunk for _, chunk in self._held)
        return data in held or base64.b64encode(data) in held

    def release(self):
        held, self._held, self.holding = self._held, [], False
        for writer, data in held:
            if not writer.is_closing():
                writer.write(data)

    def cut(self):
        self.cut_off, self.holding, self._held = True, False, []
        for client_writer, etcd_writer in list(self._links):
            client_writer.transport.abort()
            etcd_writer.transport.abort()

    def mend(self):
        self.cut_off = False

    async def close(self):
        self.cut()
        self._server.close()
        await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 10)


async def _history(client, prefix, start_revision) -> dict:
    """etcd's history of the keys under ``prefix`` after ``start_revision``, replayed by a watch up to
    a sentinel key written now: ``{revision: {key: value (None: deleted)}}``."""
    stream = client.watch_events(KeySet(prefix, prefix=True), start_revision=start_revision + 1)
    revisions = {}
    try:
        await asyncio.wait_for(stream.ready(), 10)
        end = await client.set(prefix + b'~history-end', b'')

        async def collect():
            async for event in stream:
                if event.revision >= end.revision:
                    return
                revisions.setdefault(event.revision, {})[event.key] = event.value
        await asyncio.wait_for(collect(), 10)
    finally:
        stream.cancel()
    return revisions


def _put(table, key, value):
    """A transaction function that writes ``table[key] = value``."""
    def put(txn):
        table[txn, key] = value
    return put


# -- lost updates, bank transfers, unique index race

def test_lost_update_twenty_concurrent_incrementers(etcd, prefix):
    counters = pmap.MapStringCbor(1, name='counters')
    workers, increments = 20, 10

    async def main():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        attempts, hand_conflicts = [0], [0]
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(aio_client(etcd.url)) for _ in range(workers)]
            dbs = [Database(client, prefix=prefix) for client in clients]

            async def increment(txn):
                attempts[0] += 1
                value = await counters[txn, 'c']
                counters[txn, 'c'] = (value or 0) + 1

            async def through_run(db):
                for _ in range(increments):
                    assert loop.time() < deadline, 'workers took too long'
                    await db.run(increment, retries=200, backoff=0.002, max_backoff=0.05)

            async def by_hand(db, rng):
                for _ in range(increments):
                    for attempt in range(200):
                        assert loop.time() < deadline, 'workers took too long'
                        try:
                            async with db.begin(write=True) as txn:
                                await increment(txn)
                            break
                        except TransactionConflict as conflict:
                            assert conflict.keys == ["counters['c']"], conflict.keys
                            hand_conflicts[0] += 1
                            await asyncio.sleep(rng.uniform(0, min(0.05, 0.002 * 2 ** attempt)))
                    else:
                        raise AssertionError('200 conflicts in a row')

            rng = random.Random(7)
            await asyncio.gather(*(through_run(db) if i % 2 else by_hand(db, random.Random(rng.random()))
                                   for i, db in enumerate(dbs)))
            total = workers * increments
            assert await _raw_value(clients[0], _raw(dbs[0], counters, 'c')) == \
                counters.encode_value('c', total)
            assert await _table(clients[0], dbs[0], counters) == {'c': total}
            async with dbs[-1].begin() as txn:
                assert await counters[txn, 'c'] == total
            conflicts = attempts[0] - total
            print(f'\nlost update (asyncio): {total} increments, {attempts[0]} attempts, {conflicts} '
                  f'conflicts ({hand_conflicts[0]} retried by hand)')
            assert conflicts > 0 and hand_conflicts[0] > 0, 'the workers did not really race'
    run(main(), 90)


def test_bank_transfers_keep_the_total_in_every_snapshot(etcd, prefix):
    accounts = pmap.MapOidOid(1, name='accounts')
    n, total = 10, 10_000

    async def main():
        loop = asyncio.get_running_loop()
        async with aio_client(etcd.url) as one, aio_client(etcd.url) as two, \
                aio_client(etcd.url) as reading:
            dbs = [Database(one, prefix=prefix), Database(two, prefix=prefix)]
            reader_db = Database(reading, prefix=prefix)

            def open_accounts(txn):
                for i in range(n):
                    accounts[txn, i] = total // n
            await dbs[0].run(open_accounts)
            stats = {'transfers': 0, 'refused': 0, 'attempts': 0, 'snapshots': 0}

            async def transfer(txn, a, b, amount):
                stats['attempts'] += 1
                # One after the other: a db.run function is not an asyncio Task (see
                # test_a_db_run_function_can_await_asyncio below).
                balance_a, balance_b = await accounts[txn, a], await accounts[txn, b]
                if balance_a < amount:
                    return False
                accounts[txn, a] = balance_a - amount
                accounts[txn, b] = balance_b + amount
                return True

            stop_at = loop.time() + 2.0

            async def transferer(db, rng):
                while loop.time() < stop_at:
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
                    elif kind == 'points':        # concurrent first reads share one snapshot
                        balances = await asyncio.gather(*(accounts[txn, i] for i in range(n)))
                    else:                         # both ways in one transaction agree
                        rows = [v async for v in accounts.select(txn, return_keys=False)]
                        balances = [await accounts[txn, i] for i in range(n)]
                        assert balances == rows
                assert sum(balances) == total, f'{kind} snapshot at {txn.revision}: {balances}'
                assert min(balances) >= 0
                stats['snapshots'] += 1

            async def reader():
                i = 0
                while loop.time() < stop_at + 0.3:
                    await check_snapshot(('select', 'points', 'mixed')[i % 3])
                    i += 1

            rng = random.Random(1234)
            await asyncio.gather(*[transferer(dbs[i % 2], random.Random(rng.random())) for i in range(8)],
                                 reader(), reader())
            final = await _table(one, dbs[0], accounts)
            assert sorted(final) == list(range(n))
            assert sum(final.values()) == total and min(final.values()) >= 0
            print(f'\nbank (asyncio): {stats["transfers"]} transfers, {stats["refused"]} refused, '
                  f'{stats["attempts"]} attempts, {stats["snapshots"]} consistent snapshots')
            assert stats['transfers'] > 0 and stats['snapshots'] > 0
            assert stats['attempts'] > stats['transfers'] + stats['refused'], 'transferers never conflicted'
    run(main(), 60)


def test_unique_index_race_has_exactly_one_winner(etcd, prefix):
    users, by_email, by_tag = _users()

    async def main():
        async with aio_client(etcd.url) as one, aio_client(etcd.url) as two:
            dbs = [Database(one, prefix=prefix), Database(two, prefix=prefix)]
            email = 'same@example.com'
            oids = [uuid.uuid4() for _ in range(12)]

            def insert(txn, oid):
                users[txn, oid] = {'name': str(oid), 'email': email, 'tag': 'racer'}
                return oid

            outcomes = await _outcomes([dbs[i % 2].run(insert, oid, retries=30, backoff=0.002)
                                        for i, oid in enumerate(oids)])
            winners = [value for kind, value in outcomes if kind == 'ok']
            errors = [value for kind, value in outcomes if kind == 'error']
            assert len(winners) == 1, outcomes
            winner = winners[0]
            assert len(errors) == len(oids) - 1
            for error in errors:
                assert isinstance(error, UniqueViolation), repr(error)
                assert (error.index, error.value, error.owner) == ('by_email', email, winner)
                assert 'by_email' in str(error) and email in str(error)
            assert await _table(one, dbs[0], by_email) == {email: winner}
            assert await _table(one, dbs[0], by_tag) == {('racer', winner): winner}
            stored = await _table(one, dbs[0], users)
            assert list(stored) == [winner] and stored[winner]['email'] == email
            assert len(await _all_keys(one, prefix)) == 3       # the record and its two entries
    run(main())


# -- the table surface

def test_insert_read_update_delete_exists_and_count(etcd, prefix):
    tab = pmap.MapUuidCbor(1, name='things')
    u1, u2, u3 = (uuid.UUID(int=i) for i in (1, 2, 3))

    async def main():
        async with aio_client(etcd.url) as client:
            db = Database(client, prefix=prefix)
            async with db.begin() as txn:
                assert await tab[txn, u1] is None
                assert await tab.exists(txn, u1) is False
                assert await tab.count(txn) == 0
            async with db.begin(write=True) as txn:
                tab[txn, u1] = {'name': 'one'}
                tab[txn, u2] = {'name': 'two'}
                assert await tab[txn, u2] == {'name': 'two'}        # reads see pending writes
                assert await tab.count(txn) == 2
            assert txn.state == 'committed' and txn.committed_revision > 0
            raw = await client.get(KeySet(prefix, prefix=True))
            assert [(kv.key, kv.value) for kv in raw.kvs] == [
                (_raw(db, tab, u1), b'\xa1dnamecone'), (_raw(db, tab, u2), b'\xa1dnamectwo')]
            assert raw.kvs[0].mod_revision == txn.committed_revision

            async with db.begin() as txn:
                assert await tab[txn, u1] == {'name': 'one'}
                assert await tab.exists(txn, u2) is True and await tab.exists(txn, u3) is False
                assert await tab.count(txn) == 2
                with pytest.raises(ReadOnlyTransaction):
                    tab[txn, u3] = {'name': 'refused'}

            async with db.begin(write=True) as txn:
                tab[txn, u1] = {'name': 'uno'}
                del tab[txn, u2]
                tab[txn, u3] = {'name': 'three'}
                del tab[txn, uuid.UUID(int=99)]                     # deleting an absent key is fine
                assert await tab.exists(txn, u2) is False
            assert await _table(client, db, tab) == {u1: {'name': 'uno'}, u3: {'name': 'three'}}
            async with db.begin() as txn:
                assert await tab[txn, u2] is None and await tab.count(txn) == 2

            async with db.begin(write=True) as txn:
                tab.truncate(txn)
            assert await _all_keys(client, prefix) == []
    run(main())


def test_async_for_over_select_with_bounds_limit_and_order(etcd, prefix):
    tab = pmap.MapOidString(3, name='numbers')
    words = pmap.MapStringOid(4, name='words')

    async def main():
        async with aio_client(etcd.url) as client:
            db = Database(client, prefix=prefix)
            async with db.begin(write=True) as txn:
                for n in range(20):
                    tab[txn, n] = f'v{n}'
                for i, word in enumerate(['a', 'ab', 'abc', 'abd', 'ac', 'b', 'ba']):
                    words[txn, word] = i
            assert len(await _table(client, db, tab)) == 20

            async def collect(aiter):
                return [item async for item in aiter]

            async with db.begin() as txn:
                assert await collect(tab.select(txn)) == [(n, f'v{n}') for n in range(20)]
                assert await collect(tab.select(txn, from_key=5, to_key=9)) == \
                    [(n, f'v{n}') for n in range(5, 9)]                           # half-open
                assert await collect(tab.select(txn, from_key=17, return_values=False)) == [17, 18, 19]
                assert await collect(tab.select(txn, to_key=3, return_keys=False)) == ['v0', 'v1', 'v2']
                assert await collect(tab.select(txn, from_key=9, to_key=5)) == []
                assert await collect(tab.select(txn, limit=3, return_values=False)) == [0, 1, 2]
                assert await collect(tab.select(txn, reverse=True, limit=2)) == [(19, 'v19'), (18, 'v18')]
                assert await collect(tab.select(txn, from_key=5, to_key=9, reverse=True, limit=3,
                                                return_values=False)) == [8, 7, 6]
                assert await collect(words.select(txn, prefix='ab', return_values=False)) == \
                    ['ab', 'abc', 'abd']
                assert await collect(words.select(txn, prefix='ab', reverse=True, limit=2)) == \
                    [('abd', 3), ('abc', 2)]
                assert await words.count(txn, prefix='ab') == 3
                assert await tab.count_range(txn, 5, 9) == 4
                assert await tab.count(txn) == 20
                # Several selects at once in one transaction, each in a Task of its own.
                halves = await asyncio.gather(collect(tab.select(txn, to_key=10, return_values=False)),
                                              collect(tab.select(txn, from_key=10, return_values=False)))
                assert halves == [list(range(10)), list(range(10, 20))]

            # Inside a write transaction, select merges the pending writes.
            async with db.begin(write=True) as txn:
                del tab[txn, 1]
                tab[txn, 25] = 'v25'
                tab[txn, 2] = 'two'
                assert await collect(tab.select(txn, to_key=4)) == [(0, 'v0'), (2, 'two'), (3, 'v3')]
                assert await collect(tab.select(txn, reverse=True, limit=2, return_values=False)) == [25, 19]
                assert await tab.count(txn) == 20
            stored = await _table(client, db, tab)
            assert 1 not in stored and stored[2] == 'two' and stored[25] == 'v25' and len(stored) == 20
    run(main())


def test_select_through_an_index(etcd, prefix):
    users, by_email, by_tag = _users()
    names = ('eve', 'bob', 'dan', 'cat', 'amy', 'carl')
    people = {name: uuid.UUID(int=i + 1) for i, name in enumerate(names)}

    async def main():
        async with aio_client(etcd.url) as client:
            db = Database(client, prefix=prefix)

            def setup(txn):
                for name, oid in people.items():
                    users[txn, oid] = {'name': name, 'email': f'{name}@x',
                                       'tag': 'red' if len(name) == 3 else 'redder'}
            await db.run(setup)
            assert await _table(client, db, by_email) == {f'{n}@x': oid for n, oid in people.items()}

            async with db.begin() as txn:
                everyone = [u['name'] async for u in users.select(txn, index='by_email', return_keys=False)]
                assert everyone == sorted(names)
                ranged = [(k, u['name']) async for k, u in users.select(txn, index='by_email', from_key='b',
                                                                         to_key='d')]
                assert ranged == [(people[n], n) for n in ('bob', 'carl', 'cat')]
                assert [k async for k in users.select(txn, index='by_email', prefix='ca',
                                                      return_values=False)] == [people['carl'], people['cat']]
                assert [u['name'] async for u in users.select(txn, index='by_email', reverse=True, limit=2,
                                                              return_keys=False)] == ['eve', 'dan']
                reds = [u['name'] async for u in users.select(txn, index='by_tag', prefix='red',
                                                              return_keys=False)]
                assert sorted(reds) == ['amy', 'bob', 'cat', 'dan', 'eve']
                assert await by_email[txn, 'carl@x'] == people['carl']
                with pytest.raises(KeyError, match='no index'):
                    [u async for u in users.select(txn, index='nope')]

            # An update moves the entries in the same commit; a delete removes them.
            async def rename(txn):
                record = await users[txn, people['bob']]
                users[txn, people['bob']] = {**record, 'email': 'robert@x', 'tag': None}
                del users[txn, people['eve']]
            await db.run(rename)
            entries = await _table(client, db, by_email)
            assert 'bob@x' not in entries and 'eve@x' not in entries and entries['robert@x'] == people['bob']
            assert set(await _table(client, db, by_tag)) == {
                ('red', people[n]) for n in ('amy', 'cat', 'dan')} | {('redder', people['carl'])}
            async with db.begin() as txn:
                assert [k async for k in users.select(txn, index='by_email', prefix='rob',
                                                      return_values=False)] == [people['bob']]
    run(main())


def test_a_db_run_function_can_await_asyncio(etcd, prefix):
    """On the asyncio face, a transaction function given to ``db.run`` is user code and should be
    free to await asyncio (a pause, ``asyncio.gather`` of its reads, an asyncio library call)."""
    tab = pmap.MapStringOid(1, name='tab')

    async def main():
        async with aio_client(etcd.url) as client:
            db = Database(client, prefix=prefix)

            async def fn(txn):
                value = await tab[txn, 'a'] or 0
                await asyncio.sleep(0.001)
                tab[txn, 'a'] = value + 1
            await asyncio.wait_for(db.run(fn), 10)
            assert await _raw_value(client, _raw(db, tab, 'a')) == tab.encode_value('a', 1)
    run(main())


def test_a_stale_transaction_conflicts_and_writes_nothing(etcd, prefix):
    tab = pmap.MapStringCbor(1, name='tab')

    async def main():
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as other:
            db, other_db = Database(client, prefix=prefix), Database(other, prefix=prefix)
            await db.run(_put(tab, 'a', 1))
            txn = db.begin(write=True)
            assert await tab[txn, 'a'] == 1
            pinned = txn.revision
            await other_db.run(_put(tab, 'a', 2))
            assert await tab[txn, 'a'] == 1 and txn.revision == pinned       # still the snapshot
            tab[txn, 'out'] = 'summary'
            with pytest.raises(TransactionConflict) as caught:
                await txn.commit()
            assert caught.value.keys == ["tab['a']"] and txn.state == 'aborted'
            assert await _raw_value(client, _raw(db, tab, 'out')) is None
            assert await _raw_value(client, _raw(db, tab, 'a')) == tab.encode_value('a', 2)
    run(main())


def test_a_guarded_commit_needs_the_lock_still_held(etcd, prefix):
    """Lock-guarded writes on the asyncio face: committed while held; refused with LockLost, nothing
    written, once the lock's lease is gone (revoked here behind the holder's back)."""
    from txaioetcd.aio import LockLost

    tab = pmap.MapStringCbor(1, name='tab')

    async def main():
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as operator:
            db = Database(client, prefix=prefix)
            lock = await client.lock(prefix + b'lock', ttl=30)
            async with db.begin(write=True, guard=lock) as txn:
                tab[txn, 'a'] = 'under the lock'
            await operator.submit(Transaction(success=[OpDel(lock.key)]))    # the lock is gone
            txn = db.begin(write=True, guard=lock)
            tab[txn, 'b'] = 'too late'
            with pytest.raises(LockLost, match='is not held any more'):
                await txn.commit()
            assert await _raw_value(client, _raw(db, tab, 'a')) == tab.encode_value('a', 'under the lock')
            assert await _raw_value(client, _raw(db, tab, 'b')) is None
            await lock.release()
    run(main())


def test_an_exception_inside_async_with_writes_nothing(etcd, prefix):
    tab = pmap.MapStringCbor(1, name='tab')

    async def main():
        async with aio_client(etcd.url) as client:
            db = Database(client, prefix=prefix)
            txn = db.begin(write=True)
            with pytest.raises(RuntimeError, match='boom'):
                async with txn:
                    tab[txn, 'a'] = 1
                    tab[txn, 'b'] = 2
                    assert await tab[txn, 'a'] == 1
                    raise RuntimeError('boom')
            assert txn.state == 'aborted'

            calls = [0]

            async def failing(txn):
                calls[0] += 1
                tab[txn, 'c'] = await tab[txn, 'c'] or 3
                raise ValueError('nope')
            with pytest.raises(ValueError, match='nope'):
                await db.run(failing)
            assert calls[0] == 1                                   # only conflicts are retried

            # A Task cancelled inside the block aborts it the same way.
            entered = asyncio.Event()

            async def cancelled_inside():
                async with db.begin(write=True) as txn:
                    tab[txn, 'd'] = 4
                    entered.set()
                    await asyncio.Event().wait()                   # until cancelled
            task = asyncio.get_running_loop().create_task(cancelled_inside())
            await asyncio.wait_for(entered.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await _all_keys(client, prefix) == []
    run(main())


def test_schema_attach_records_checks_and_refuses_a_mismatch(etcd, prefix):
    def schema(value_class=pmap.MapUuidCbor, nullable=False):
        users = value_class(1)
        users_by_email = pmap.MapStringUuid(2)
        users.attach_index('by_email', users_by_email, lambda u: u['email'], nullable=nullable)
        return pmap.Schema(users=users, users_by_email=users_by_email)

    async def main():
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as other:
            dbs = [Database(c, prefix=prefix) for c in (client, other, client, other)]
            results = await asyncio.gather(*(db.attach(schema()) for db in dbs))
            assert sorted(results) == [[], [], [], ['users', 'users_by_email']], results
            catalog = await _all_keys(client, prefix)
            assert len(catalog) == 2
            revision = (await client.get(catalog[0])).kvs[0].mod_revision
            assert await dbs[0].attach(schema()) == []
            assert (await client.get(catalog[0])).kvs[0].mod_revision == revision

            with pytest.raises(SchemaMismatch) as caught:
                await dbs[1].attach(schema(value_class=pmap.MapUuidJson))
            text = str(caught.value)
            assert 'slot 1' in text and 'value_type' in text and 'Cbor' in text and 'Json' in text
            with pytest.raises(SchemaMismatch) as caught:
                await dbs[0].attach(schema(nullable=True))
            assert 'slot 1' in str(caught.value) and 'indexes' in str(caught.value)
            assert await _all_keys(client, prefix) == catalog

            # The attached tables work as any other.
            attached = schema()
            await dbs[0].attach(attached)
            oid = uuid.uuid4()
            await dbs[1].run(_put(attached.users, oid, {'email': 'a@x'}))
            async with dbs[2].begin() as txn:
                assert await attached.users_by_email[txn, 'a@x'] == oid
    run(main())


# -- mirrors

def test_mirror_of_a_prefix_follows_puts_deletes_and_transactions(etcd, prefix):
    keyset = KeySet(prefix, prefix=True)

    async def main():
        async with aio_client(etcd.url) as writer, aio_client(etcd.url) as reader:
            for name in (b'b', b'a', b'c/1'):
                await writer.set(prefix + name, b'value of ' + name)
            await writer.set(prefix[:-1], b'not in the range')
            events = []
            mirror = Mirror(reader, keyset, events.append, page_size=2)
            try:
                assert await asyncio.wait_for(mirror.ready(), 10) is mirror
                assert list(mirror) == [prefix + n for n in (b'a', b'b', b'c/1')]
                assert mirror[prefix + b'a'] == b'value of a' and mirror.get(prefix + b'zz') is None
                assert _copy(mirror) == await _fresh(writer, keyset)

                await writer.set(prefix + b'aa', b'new')
                await eventually(lambda: mirror.get(prefix + b'aa') == b'new', 10)
                await writer.delete(prefix + b'b')
                await eventually(lambda: prefix + b'b' not in mirror, 10)
                done = await writer.submit(Transaction(success=[OpSet(prefix + b'c/2', b'two'),
                                                                OpDel(prefix + b'a'),
                                                                OpSet(prefix + b'c/1', b'one')]))
                await eventually(lambda: mirror.revision >= done.header.revision, 10)
                assert mirror.items() == [(prefix + b'aa', b'new'), (prefix + b'c/1', b'one'),
                                          (prefix + b'c/2', b'two')]
                assert _copy(mirror) == await _fresh(writer, keyset)
                assert [(e.type, e.key) for e in events] == [
                    ('PUT', prefix + b'aa'), ('DELETE', prefix + b'b'), ('PUT', prefix + b'c/2'),
                    ('DELETE', prefix + b'a'), ('PUT', prefix + b'c/1')]
                assert events[-1].prev_kv.value == b'value of c/1'         # from the copy

                # wait_for is a Deferred an asyncio Task awaits, like the rest.
                written = await writer.set(prefix + b'z', b'last')
                await mirror.wait_for(written.revision, timeout=10)
                assert mirror[prefix + b'z'] == b'last'
            finally:
                mirror.close()
            assert await asyncio.wait_for(mirror.done, 10) is None
            await writer.set(prefix + b'after', b'not followed')
            assert prefix + b'after' not in mirror and mirror.state == 'closed'
    run(main())


def test_mirror_resyncs_after_history_was_compacted_while_cut_off(etcd_factory):
    server = etcd_factory()                 # compaction is server-wide: an etcd of this test's own
    prefix = b'resync/'
    keyset = KeySet(prefix, prefix=True)
    names = [b'k%02d' % i for i in range(30)]

    async def main():
        proxy = await _Proxy(server.url).start()
        events, resynced = [], []
        try:
            async with aio_client(server.url) as direct, aio_client(proxy.url) as behind_proxy:
                for name in names:
                    await direct.set(prefix + name, b'old ' + name)
                mirror = Mirror(behind_proxy, keyset, events.append, on_resync=resynced.append)
                await asyncio.wait_for(mirror.ready(), 10)
                seen = await direct.set(prefix + b'k29', b'seen')
                await eventually(lambda: mirror.revision >= seen.revision, 10)
                before = _copy(mirror)
                events.clear()

                proxy.cut()
                for name in names[:5]:
                    await direct.set(prefix + name, b'new ' + name)
                for name in names[5:10]:
                    await direct.delete(prefix + name)
                for i in range(3):
                    await direct.set(prefix + b'n%d' % i, b'added')
                await direct.set(prefix + b'k10', b'new k10')
                await direct.set(prefix + b'k10', b'old k10')             # same value, newer revision
                last = await direct.set(b'elsewhere', b'not mirrored')
                await direct.compact(last.revision, physical=True)
                assert mirror.resyncs == 0 and len(mirror) == 30            # stale, still readable
                assert events == []

                proxy.mend()
                await eventually(lambda: mirror.resyncs == 1, 20)
                assert len(resynced) == 1 and isinstance(resynced[0], Compacted)
                assert resynced[0].compact_revision == last.revision
                assert mirror.revision >= last.revision
                assert _copy(mirror) == await _fresh(direct, keyset)

                # One synthetic event per difference, in key order, with the values before.
                changed = sorted([prefix + n for n in names[:11]] + [prefix + b'n%d' % i for i in range(3)])
                assert [e.key for e in events] == changed
                for event in events:
                    assert event.prev_kv == before.get(event.key)
                    if event.type == 'PUT':
                        assert event.kv == mirror.kv(event.key)
                    else:
                        assert event.key not in mirror
                assert {e.key for e in events if e.type == 'DELETE'} == {prefix + n for n in names[5:10]}

                # And it follows again.
                written = await direct.set(prefix + b'after', b'1')
                # The copy has the key as soon as the event is applied; its revision counts as reached
                # on the reactor's next turn (one revision may bring several events): wait for both.
                await eventually(lambda: mirror.get(prefix + b'after') == b'1' and
                                 mirror.revision >= written.revision, 10)
                assert events[-1].key == prefix + b'after' and mirror.resyncs == 1
                assert mirror.revision >= written.revision
                mirror.close()
                assert await asyncio.wait_for(mirror.done, 10) is None
        finally:
            await proxy.close()
    run(main(), 60)


def test_table_and_index_mirrors_follow_database_writes(etcd, prefix):
    users, by_email, by_tag = _users()
    people = [uuid.UUID(int=i + 1) for i in range(4)]

    async def main():
        async with aio_client(etcd.url) as writing, aio_client(etcd.url) as mirroring:
            db, mirror_db = Database(writing, prefix=prefix), Database(mirroring, prefix=prefix)

            def setup(txn):
                for oid, name in zip(people, ['bob', 'alice', 'bob', 'carol']):
                    users[txn, oid] = {'name': name, 'email': f'{name}{oid.int}@x', 'tag': name}
            await db.run(setup)
            changes = []
            table = users.mirror(mirror_db, on_change=lambda *change: changes.append(change))
            emails = users.mirror(mirror_db, index='by_email')
            tags = users.mirror(mirror_db, index='by_tag')
            try:
                await asyncio.wait_for(asyncio.gather(table.ready(), emails.ready(), tags.ready()), 10)
                assert list(table) == people and table[people[1]]['name'] == 'alice'
                assert emails['alice2@x'] == people[1] and len(emails) == 4
                assert tags['bob'] == [people[0], people[2]] and list(tags) == ['alice', 'bob', 'carol']

                async def change(txn):
                    record = await users[txn, people[0]]
                    users[txn, people[0]] = {**record, 'name': 'robert', 'tag': 'robert'}
                    del users[txn, people[3]]
                    users[txn, uuid.UUID(int=9)] = {'name': 'dave', 'email': 'dave@x', 'tag': None}
                await db.run(change)

                await eventually(lambda: people[3] not in table and uuid.UUID(int=9) in table, 10)
                await eventually(lambda: 'dave@x' in emails and 'carol4@x' not in emails, 10)
                await eventually(lambda: 'robert' in tags and 'carol' not in tags, 10)
                assert table[people[0]]['name'] == 'robert' and len(table) == 4
                assert sorted((key, old and old['name'], new and new['name']) for key, old, new in changes) \
                    == sorted([(people[0], 'bob', 'robert'), (people[3], 'carol', None),
                               (uuid.UUID(int=9), None, 'dave')])
                assert tags['bob'] == [people[2]] and tags['robert'] == [people[0]]
                assert dict(emails.items()) == await _table(writing, db, by_email)
                assert {(value, key) for value, keys in tags.items() for key in keys} == \
                    set(await _table(writing, db, by_tag))
            finally:
                for mirror in (table, emails, tags):
                    mirror.close()
            await asyncio.wait_for(asyncio.gather(table.done, emails.done, tags.done), 10)
    run(main())


# -- cancellation inside the ORM

def test_cancelled_commits_land_whole_or_not_at_all(etcd, prefix):
    """A commit held back by the proxy (so surely in flight) is cancelled by ``task.cancel()``; its
    bytes are then forwarded (``release``) or dropped (``cut``). Either way every key it writes
    changes together or none does, and the client goes on working."""
    tab = pmap.MapStringBinary(1, name='tab')
    keys = ['a', 'b', 'c']

    def outcomes_applied(outcomes):
        return sum(outcome == 'applied' for seen in outcomes.values() for outcome in seen)

    async def main():
        loop = asyncio.get_running_loop()
        proxy = await _Proxy(etcd.url).start()
        try:
            async with aio_client(etcd.url) as direct, aio_client(proxy.url) as proxied:
                db, direct_db = Database(proxied, prefix=prefix), Database(direct, prefix=prefix)

                txn = direct_db.begin(write=True)
                for key in keys:
                    tab[txn, key] = b'initial'
                start = await txn.commit()
                raws = [_raw(db, tab, key) for key in keys]
                outcomes = {}
                for mode in ('release', 'cut', 'release', 'cut'):
                    marker = b'cancelled-' + uuid.uuid4().hex.encode()
                    opened = []

                    async def commit_held():
                        async with db.begin(write=True) as txn:
                            opened.append(txn)
                            for key in keys:
                                await tab[txn, key]                 # compared at commit
                            for key in keys:
                                tab[txn, key] = marker
                            proxy.hold()                            # the commit will be held back
                    task = loop.create_task(commit_held())
                    await eventually(lambda: proxy.holds(marker), 10)
                    assert opened[0].state == 'committing'
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await asyncio.wait_for(task, 10)
                    assert opened[0].state == 'unknown'            # sent: it may have applied
                    if mode == 'release':
                        proxy.release()
                    else:
                        proxy.cut()
                        proxy.mend()

                    # Settle it: a transaction that moves every key makes a late arrival of the
                    # cancelled commit impossible (its compares can no longer hold).
                    async def fence(txn):
                        values = [await tab[txn, key] for key in keys]
                        assert len(set(values)) == 1, f'a partial commit is visible: {values}'
                        for key in keys:
                            tab[txn, key] = b'fenced'
                        return values[0]
                    seen = await direct_db.run(fence, retries=50, backoff=0.002)
                    outcomes.setdefault(mode, []).append(
                        'applied' if seen == marker else 'not applied')
                    if mode == 'cut':
                        assert seen != marker, 'bytes the proxy dropped reached etcd'

                    # The proxied client goes on working (over a new connection after a cut).
                    async def bump(txn):
                        tab[txn, 'after'] = (await tab[txn, 'after'] or b'') + b'+'
                    await asyncio.wait_for(db.run(bump, retries=20, backoff=0.002), 20)
                assert await _raw_value(direct, _raw(db, tab, 'after')) == b'++++'
                # Revision by revision (etcd's history, replayed): a, b and c always changed together.
                history = await _history(direct, prefix, start)
                together = [changed for _, changed in sorted(history.items()) if set(changed) & set(raws)]
                for changed in together:
                    assert set(raws) <= set(changed) and len({changed[raw] for raw in raws}) == 1, \
                        f'a revision changed only part of a transaction: {changed}'
                assert len(together) == 4 + outcomes_applied(outcomes)      # 4 fences + what applied
                assert together[-1][raws[0]] == b'fenced'
                print(f'\ncancelled commits (asyncio): {outcomes}')
        finally:
            await proxy.close()
    run(main(), 90)


def test_cancelled_reads_abort_the_transaction_and_leave_the_client_usable(etcd, prefix):
    tab = pmap.MapStringBinary(1, name='tab')

    async def main():
        loop = asyncio.get_running_loop()
        proxy = await _Proxy(etcd.url).start()
        try:
            async with aio_client(etcd.url) as direct, aio_client(proxy.url) as proxied:
                db = Database(proxied, prefix=prefix)

                def setup(txn):
                    for i in range(5):
                        tab[txn, f'r/{i}'] = b'%d' % i
                await Database(direct, prefix=prefix).run(setup)
                before = await _all_keys(direct, prefix)

                # A point read blocked inside a write transaction.
                opened = []

                async def write_then_read():
                    async with db.begin(write=True) as txn:
                        opened.append(txn)
                        tab[txn, 'x'] = b'written before the read'
                        assert await tab[txn, 'r/0'] == b'0'
                        proxy.hold()
                        await tab[txn, 'r/1']                           # held back
                        tab[txn, 'y'] = b'written after it'
                task = loop.create_task(write_then_read())
                await eventually(lambda: proxy.holds(_raw(db, tab, 'r/1')), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10)
                assert opened[0].state == 'aborted'
                proxy.release()

                # A select blocked on its first page, ended by asyncio.wait_for.
                async def scan():
                    async with db.begin() as txn:
                        return [key async for key in tab.select(txn, prefix='r/', return_values=False)]
                proxy.hold()
                scanning = loop.create_task(scan())
                await eventually(lambda: proxy.holds(_raw(db, tab, 'r/')), 10)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(scanning, 0.05)
                proxy.release()

                assert await _all_keys(direct, prefix) == before          # nothing written
                assert await asyncio.wait_for(scan(), 10) == [f'r/{i}' for i in range(5)]
                await asyncio.wait_for(db.run(_put(tab, 'x', b'now')), 10)
                assert await _raw_value(direct, _raw(db, tab, 'x')) == b'now'
        finally:
            await proxy.close()
    run(main())


def test_transfers_cancelled_at_random_points_stay_whole(etcd, prefix):
    """``asyncio.wait_for`` with deadlines around a transfer's own duration cancels it at every stage
    (reads, commit, backoff); every snapshot keeps the total, and the counter of transfers matches
    the money moved: each transfer landed with all of its writes or with none."""
    accounts = pmap.MapOidOid(1, name='accounts')
    moves = pmap.MapStringOid(2, name='moves')
    start_balance = 1000

    async def main():
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as checking:
            db = Database(client, prefix=prefix)

            txn = db.begin(write=True)
            accounts[txn, 0] = accounts[txn, 1] = start_balance
            moves[txn, 'count'] = 0
            start = await txn.commit()

            async def transfer(txn):
                a, b, count = await accounts[txn, 0], await accounts[txn, 1], await moves[txn, 'count']
                accounts[txn, 0] = a - 1
                accounts[txn, 1] = b + 1
                moves[txn, 'count'] = count + 1

            loop = asyncio.get_running_loop()
            durations = []
            for _ in range(5):
                began = loop.time()
                await db.run(transfer)
                durations.append(loop.time() - began)
            typical = statistics.median(durations)
            rng = random.Random(99)
            landed, cancelled = 5, 0
            for _ in range(80):
                try:
                    await asyncio.wait_for(db.run(transfer, retries=50, backoff=0.001),
                                           rng.uniform(0, 2.5 * typical))
                    landed += 1
                except asyncio.TimeoutError:
                    cancelled += 1
                result = await checking.get(KeySet(prefix, prefix=True))     # one revision
                values = {kv.key: kv.value for kv in result.kvs}
                a, b = (accounts.decode_value(i, values[_raw(db, accounts, i)]) for i in (0, 1))
                assert a + b == 2 * start_balance, f'a transfer half-landed at {result.header.revision}'

            # Settle late arrivals, then compare what moved with what was counted.
            await db.run(transfer)
            landed += 1
            final = await _table(checking, db, accounts)
            count = (await _table(checking, db, moves))['count']
            assert final == {0: start_balance - count, 1: start_balance + count}
            assert landed <= count <= landed + cancelled
            # Revision by revision, the three keys always moved together.
            group = [_raw(db, accounts, 0), _raw(db, accounts, 1), _raw(db, moves, 'count')]
            history = await _history(checking, prefix, start)
            for revision, changed in sorted(history.items()):
                assert set(changed) == set(group), f'revision {revision} changed only {sorted(changed)}'
            assert len(history) == count
            print(f'\nrandom cancellations (asyncio): typical transfer {typical * 1000:.1f} ms, '
                  f'{landed} landed, {cancelled} cancelled, {count} counted')
            assert cancelled > 0 and landed > 5
    run(main(), 60)
