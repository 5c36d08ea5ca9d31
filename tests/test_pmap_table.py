"""Table operations in Database transactions against a real etcd: point access, select (ranges,
prefixes, limits, order, paging), counts, truncate, read-your-writes, and transaction life cycle."""

import struct
import uuid

import pytest
import pytest_twisted

from txaioetcd import Database, KeySet, pmap
from txaioetcd.errors import ReadOnlyTransaction, TransactionClosed

U1 = uuid.UUID('11111111-1111-1111-1111-111111111111')
U2 = uuid.UUID('22222222-2222-2222-2222-222222222222')


def slot(n):
    return struct.pack('>H', n)


async def _raw(client, prefix, slot_no):
    result = await client.get(KeySet(prefix + slot(slot_no), prefix=True))
    return {kv.key[len(prefix):]: kv.value for kv in result.kvs}


async def _collect(aiter):
    return [item async for item in aiter]


async def _fill(db, tab, items, batch=100):
    items = list(items)
    for i in range(0, len(items), batch):
        async with db.begin(write=True) as txn:
            for key, value in items[i:i + batch]:
                tab[txn, key] = value


async def _oid_table(client, prefix, slot_no, rows=()):
    """A Database under ``prefix`` and a MapOidString in ``slot_no`` holding ``rows`` (key, value pairs)."""
    db = Database(client, prefix=prefix)
    tab = pmap.MapOidString(slot_no)
    await _fill(db, tab, rows)
    return db, tab


# -- point access

@pytest_twisted.ensureDeferred
async def test_get_set_delete_exists(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapUuidCbor(1)
    async with db.begin() as txn:
        assert await tab[txn, U1] is None
        assert await tab.exists(txn, U1) is False
    async with db.begin(write=True) as txn:
        tab[txn, U1] = {'name': 'one'}
        tab[txn, U2] = {'name': 'two'}
    assert await _raw(client, prefix, 1) == {slot(1) + U1.bytes: b'\xa1dnamecone',
                                             slot(1) + U2.bytes: b'\xa1dnamectwo'}
    async with db.begin() as txn:
        assert await tab[txn, U1] == {'name': 'one'}
        assert await tab.exists(txn, U2) is True
    async with db.begin(write=True) as txn:
        tab[txn, U1] = {'name': 'uno'}
        del tab[txn, U2]
    async with db.begin() as txn:
        assert await tab[txn, U1] == {'name': 'uno'}
        assert await tab[txn, U2] is None
        assert await tab.exists(txn, U2) is False
    assert list(await _raw(client, prefix, 1)) == [slot(1) + U1.bytes]
    # deleting an absent key is fine
    async with db.begin(write=True) as txn:
        del tab[txn, U2]
    assert list(await _raw(client, prefix, 1)) == [slot(1) + U1.bytes]


@pytest_twisted.ensureDeferred
async def test_tables_in_different_slots_and_prefixes_are_apart(client, prefix):
    db = Database(client, prefix=prefix)
    other = Database(client, prefix=prefix + b'other/')
    a, b = pmap.MapOidString(1), pmap.MapOidString(2)
    async with db.begin(write=True) as txn:
        a[txn, 1] = 'a1'
        b[txn, 1] = 'b1'
    async with other.begin(write=True) as txn:
        a[txn, 1] = 'other-a1'
    async with db.begin() as txn:
        assert await a[txn, 1] == 'a1' and await b[txn, 1] == 'b1'
        assert await _collect(a.select(txn)) == [(1, 'a1')]
    async with other.begin() as txn:
        assert await a[txn, 1] == 'other-a1'
        assert await b[txn, 1] is None
        assert await a.count(txn) == 1


# -- select

@pytest_twisted.ensureDeferred
async def test_select_ranges_limits_order_and_return_combos(client, prefix):
    db, tab = await _oid_table(client, prefix, 3, [(n, f'v{n}') for n in range(20)])
    async with db.begin() as txn:
        everything = await _collect(tab.select(txn))
        assert everything == [(n, f'v{n}') for n in range(20)]
        assert await _collect(tab.select(txn, from_key=5, to_key=9)) == [(n, f'v{n}') for n in range(5, 9)]
        assert await _collect(tab.select(txn, from_key=17)) == [(n, f'v{n}') for n in (17, 18, 19)]
        assert await _collect(tab.select(txn, to_key=3)) == [(0, 'v0'), (1, 'v1'), (2, 'v2')]
        assert await _collect(tab.select(txn, from_key=5, to_key=5)) == []
        assert await _collect(tab.select(txn, from_key=9, to_key=5)) == []
        assert await _collect(tab.select(txn, from_key=100)) == []
        assert await _collect(tab.select(txn, limit=3)) == [(0, 'v0'), (1, 'v1'), (2, 'v2')]
        assert await _collect(tab.select(txn, reverse=True, limit=2)) == [(19, 'v19'), (18, 'v18')]
        assert await _collect(tab.select(txn, from_key=5, to_key=9, reverse=True)) == \
            [(n, f'v{n}') for n in (8, 7, 6, 5)]
        assert await _collect(tab.select(txn, from_key=5, to_key=9, reverse=True, limit=3)) == \
            [(8, 'v8'), (7, 'v7'), (6, 'v6')]
        assert await _collect(tab.select(txn, return_values=False)) == list(range(20))
        assert await _collect(tab.select(txn, return_keys=False, from_key=18)) == ['v18', 'v19']
        assert await _collect(tab.select(txn, return_keys=False, reverse=True, limit=1)) == ['v19']
        assert await _collect(tab.select(txn, return_values=False, reverse=True, to_key=2)) == [1, 0]
        # a key of another table in between does not leak in
    other = pmap.MapOidString(4)
    async with db.begin(write=True) as txn:
        other[txn, 7] = 'other'
    async with db.begin() as txn:
        assert len(await _collect(tab.select(txn))) == 20
        assert await _collect(other.select(txn)) == [(7, 'other')]


@pytest_twisted.ensureDeferred
async def test_select_with_string_prefix(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapStringOid(5)
    keys = ['a', 'ab', 'abc', 'abd', 'ac', 'b', 'ba', 'äb', '']
    await _fill(db, tab, [(k, i) for i, k in enumerate(keys)])
    async with db.begin() as txn:
        assert await _collect(tab.select(txn, prefix='ab', return_values=False)) == ['ab', 'abc', 'abd']
        assert await _collect(tab.select(txn, prefix='ab', reverse=True, return_values=False)) == \
            ['abd', 'abc', 'ab']
        assert await _collect(tab.select(txn, prefix='a', limit=2, return_values=False)) == ['a', 'ab']
        assert await _collect(tab.select(txn, prefix='z')) == []
        assert await _collect(tab.select(txn, prefix='ä')) == [('äb', 7)]
        assert await _collect(tab.select(txn, return_values=False)) == sorted(keys)
        assert await tab.count(txn, prefix='ab') == 3
        assert await tab.count(txn, prefix='b') == 2
        assert await tab.count(txn) == len(keys)
        with pytest.raises(ValueError):
            await _collect(tab.select(txn, prefix='a', from_key='a'))


@pytest_twisted.ensureDeferred
async def test_select_with_composite_tuple_prefix(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapStringOidCbor(6)
    keys = [('ab', 1), ('ab', 2), ('ab', 2 ** 64 - 1), ('abc', 0), ('a', 5), ('b', 0)]
    await _fill(db, tab, [(k, list(k)) for k in keys])
    async with db.begin() as txn:
        # ('ab',) selects exactly the String part 'ab', not 'abc'
        assert await _collect(tab.select(txn, prefix=('ab',), return_values=False)) == \
            [('ab', 1), ('ab', 2), ('ab', 2 ** 64 - 1)]
        assert await _collect(tab.select(txn, prefix=('ab',), reverse=True, limit=2, return_keys=False)) == \
            [['ab', 2 ** 64 - 1], ['ab', 2]]
        assert await _collect(tab.select(txn, prefix=('a',), return_values=False)) == [('a', 5)]
        assert await _collect(tab.select(txn, return_values=False)) == sorted(keys)
        selected = tab.select(txn, from_key=('ab', 2), to_key=('abc', 0), return_values=False)
        assert await _collect(selected) == [('ab', 2), ('ab', 2 ** 64 - 1)]
        assert await tab.count(txn, prefix=('ab',)) == 3
        assert await tab.count_range(txn, ('ab', 0), ('b', 0)) == 4

    three = pmap.MapUuidStringOidCbor(7)
    keys3 = [(U1, 'x', 1), (U1, 'x', 2), (U1, 'xy', 0), (U1, 'y', 0), (U2, 'x', 1)]
    await _fill(db, three, [(k, k[2]) for k in keys3])
    async with db.begin() as txn:
        assert await _collect(three.select(txn, prefix=(U1,), return_values=False)) == keys3[:4]
        assert await _collect(three.select(txn, prefix=(U1, 'x'), return_values=False)) == keys3[:2]
        assert await _collect(three.select(txn, prefix=(U2,))) == [((U2, 'x', 1), 1)]
        assert await three.count(txn, prefix=(U1, 'x')) == 2
        assert await three.count(txn, prefix=(U1,)) == 4


@pytest_twisted.ensureDeferred
async def test_paging_through_more_than_a_thousand_records(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapOidOid(8)
    n = 2500
    await _fill(db, tab, [(i, i * 3) for i in range(n)], batch=100)
    assert len(await _raw(client, prefix, 8)) == n
    async with db.begin() as txn:
        forward = await _collect(tab.select(txn))
        assert forward == [(i, i * 3) for i in range(n)]
        backward = await _collect(tab.select(txn, reverse=True))
        assert backward == [(i, i * 3) for i in reversed(range(n))]
        assert await _collect(tab.select(txn, return_values=False)) == list(range(n))
        assert await _collect(tab.select(txn, return_values=False, reverse=True)) == list(reversed(range(n)))
        assert await _collect(tab.select(txn, limit=1500, return_values=False)) == list(range(1500))
        assert await _collect(tab.select(txn, limit=1200, reverse=True, return_values=False)) == \
            list(range(n - 1, n - 1201, -1))
        assert await _collect(tab.select(txn, from_key=300, to_key=2100, return_keys=False)) == \
            [i * 3 for i in range(300, 2100)]
        assert await _collect(tab.select(txn, from_key=300, to_key=2100, reverse=True,
                                         return_values=False)) == list(range(2099, 299, -1))
        assert await tab.count(txn) == n
        assert await tab.count_range(txn, 100, 2200) == 2100
        assert await tab.count(txn, prefix=1234) == 1
    async with db.begin(write=True) as txn:
        # counted by scanning here (a write transaction), same answer
        assert await tab.count(txn) == n
        assert await tab.count_range(txn, 999, 1001) == 2
        # pending writes across page boundaries
        del tab[txn, 999]
        del tab[txn, 1000]
        del tab[txn, 1001]
        tab[txn, 1200] = 7
        tab[txn, 3000] = 9
        expected = [(i, i * 3) for i in range(n) if i not in (999, 1000, 1001)]
        expected = [(k, 7 if k == 1200 else v) for k, v in expected] + [(3000, 9)]
        assert await _collect(tab.select(txn)) == expected
        assert await _collect(tab.select(txn, reverse=True)) == list(reversed(expected))
        assert await _collect(tab.select(txn, from_key=990, to_key=1010, return_values=False)) == \
            [k for k, _ in expected if 990 <= k < 1010]
        assert await _collect(tab.select(txn, reverse=True, limit=2)) == [(3000, 9), (2499, 2499 * 3)]
        assert await tab.count(txn) == n - 3 + 1
        txn.abort()
    async with db.begin() as txn:
        assert await tab.count(txn) == n
        assert await tab[txn, 1000] == 3000


# -- counts

@pytest_twisted.ensureDeferred
async def test_count_count_prefix_count_range(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapStringString(9)
    async with db.begin() as txn:
        assert await tab.count(txn) == 0
    await _fill(db, tab, [(k, k.upper()) for k in ['x1', 'x2', 'x3', 'y1', 'y2', 'z']])
    for write in (False, True):
        async with db.begin(write=write) as txn:
            assert await tab.count(txn) == 6
            assert await tab.count(txn, prefix='x') == 3
            assert await tab.count(txn, prefix='y') == 2
            assert await tab.count(txn, prefix='w') == 0
            assert await tab.count_range(txn, 'x2', 'y2') == 3      # x2 x3 y1, half-open
            assert await tab.count_range(txn, 'a', 'zz') == 6
            assert await tab.count_range(txn, 'y2', 'x2') == 0


# -- truncate

@pytest_twisted.ensureDeferred
async def test_truncate_removes_table_and_index_entries(client, prefix):
    db = Database(client, prefix=prefix)
    users = pmap.MapOidCbor(10)
    by_name = pmap.MapStringOid(11)
    users.attach_index('by_name', by_name, lambda u: u['name'])
    keep = pmap.MapOidCbor(12)
    async with db.begin(write=True) as txn:
        for i in range(30):
            users[txn, i] = {'name': f'user{i:02}'}
        keep[txn, 1] = {'kept': True}
    assert len(await _raw(client, prefix, 10)) == 30
    assert len(await _raw(client, prefix, 11)) == 30
    async with db.begin(write=True) as txn:
        users.truncate(txn)
        # inside the transaction the table already looks empty
        assert await users[txn, 3] is None
        assert await users.exists(txn, 4) is False
        assert await users.count(txn) == 0
        assert await _collect(users.select(txn)) == []
        assert await by_name.count(txn) == 0
        assert await _collect(by_name.select(txn)) == []
    assert await _raw(client, prefix, 10) == {}
    assert await _raw(client, prefix, 11) == {}
    assert len(await _raw(client, prefix, 12)) == 1
    async with db.begin() as txn:
        assert await users.count(txn) == 0
        assert await _collect(users.select(txn, index='by_name')) == []
        assert await keep[txn, 1] == {'kept': True}
    # the table is usable again afterwards, its index too
    async with db.begin(write=True) as txn:
        users[txn, 5] = {'name': 'again'}
    async with db.begin() as txn:
        assert await _collect(users.select(txn, index='by_name')) == [(5, {'name': 'again'})]
    assert await _raw(client, prefix, 11) == {slot(11) + b'again': struct.pack('>Q', 5)}


@pytest_twisted.ensureDeferred
async def test_read_after_truncate_of_a_key_read_before(client, prefix):
    db, tab = await _oid_table(client, prefix, 13, [(1, 'one')])
    async with db.begin(write=True) as txn:
        assert await tab[txn, 1] == 'one'
        tab.truncate(txn)
        assert await tab.count(txn) == 0           # scans agree it is gone
        assert await _collect(tab.select(txn)) == []
        assert await tab.exists(txn, 1) is False   # ... but the point read does not
        assert await tab[txn, 1] is None


@pytest_twisted.ensureDeferred
async def test_point_read_after_select_after_truncate(client, prefix):
    db, tab = await _oid_table(client, prefix, 23, [(1, 'one')])
    async with db.begin(write=True) as txn:
        tab.truncate(txn)
        assert await _collect(tab.select(txn)) == []
        assert await tab[txn, 1] is None


# -- read-your-writes

@pytest_twisted.ensureDeferred
async def test_pending_writes_are_visible_before_commit(client, prefix):
    db = Database(client, prefix=prefix)
    tab = pmap.MapStringOid(14)
    await _fill(db, tab, [('b', 2), ('d', 4), ('f', 6), ('h', 8)])
    async with db.begin(write=True) as txn:
        tab[txn, 'a'] = 1          # new, before everything
        tab[txn, 'd'] = 40         # overwrite
        del tab[txn, 'f']          # delete
        tab[txn, 'e'] = 5          # new, in the middle
        tab[txn, 'z'] = 26         # new, after everything
        del tab[txn, 'nothing']    # delete of an absent key
        tab[txn, 'g'] = 7
        del tab[txn, 'g']          # written then deleted
        assert await tab[txn, 'a'] == 1
        assert await tab[txn, 'd'] == 40
        assert await tab[txn, 'f'] is None
        assert await tab[txn, 'g'] is None
        assert await tab.exists(txn, 'f') is False
        assert await tab.exists(txn, 'e') is True
        assert await tab.exists(txn, 'b') is True
        expected = [('a', 1), ('b', 2), ('d', 40), ('e', 5), ('h', 8), ('z', 26)]
        assert await _collect(tab.select(txn)) == expected
        assert await _collect(tab.select(txn, reverse=True)) == list(reversed(expected))
        assert await _collect(tab.select(txn, limit=3)) == expected[:3]
        assert await _collect(tab.select(txn, reverse=True, limit=3)) == list(reversed(expected))[:3]
        assert await _collect(tab.select(txn, from_key='c', to_key='h')) == [('d', 40), ('e', 5)]
        assert await _collect(tab.select(txn, from_key='c', to_key='h', reverse=True)) == \
            [('e', 5), ('d', 40)]
        assert await _collect(tab.select(txn, return_values=False)) == [k for k, _ in expected]
        assert await _collect(tab.select(txn, return_keys=False)) == [v for _, v in expected]
        assert await tab.count(txn) == 6
        assert await tab.count_range(txn, 'c', 'g') == 2
        assert await tab.count(txn, prefix='z') == 1
        # a later write is seen by a later read
        tab[txn, 'e'] = 50
        assert await tab[txn, 'e'] == 50
        assert await _collect(tab.select(txn, from_key='e', to_key='f')) == [('e', 50)]
        # nothing reached etcd yet
        assert sorted(await _raw(client, prefix, 14)) == [slot(14) + k.encode() for k in 'bdfh']
    async with db.begin() as txn:
        assert await _collect(tab.select(txn)) == [('a', 1), ('b', 2), ('d', 40), ('e', 50), ('h', 8),
                                                   ('z', 26)]


@pytest_twisted.ensureDeferred
async def test_writes_after_reads_of_the_same_key(client, prefix):
    db, tab = await _oid_table(client, prefix, 15, [(1, 'one')])
    async with db.begin(write=True) as txn:
        assert await tab[txn, 1] == 'one'
        assert await tab[txn, 2] is None
        tab[txn, 2] = 'two'
        del tab[txn, 1]
        assert await tab[txn, 1] is None
        assert await tab[txn, 2] == 'two'
        assert await _collect(tab.select(txn)) == [(2, 'two')]
    async with db.begin() as txn:
        assert await _collect(tab.select(txn)) == [(2, 'two')]


# -- transaction life cycle

@pytest_twisted.ensureDeferred
async def test_read_only_transaction_refuses_writes(client, prefix):
    db, tab = await _oid_table(client, prefix, 16)
    async with db.begin() as txn:
        with pytest.raises(ReadOnlyTransaction):
            tab[txn, 1] = 'x'
        with pytest.raises(ReadOnlyTransaction):
            del tab[txn, 1]
        with pytest.raises(ReadOnlyTransaction):
            tab.truncate(txn)
        assert await tab[txn, 1] is None
    assert txn.state == 'committed'
    assert await _raw(client, prefix, 16) == {}


@pytest_twisted.ensureDeferred
async def test_read_only_database(client, prefix):
    db, tab = await _oid_table(client, prefix, 17, [(1, 'one')])
    readonly = Database(client, prefix=prefix, readonly=True)
    with pytest.raises(ReadOnlyTransaction):
        readonly.begin(write=True)
    async with readonly.begin() as txn:
        assert await tab[txn, 1] == 'one'
        with pytest.raises(ReadOnlyTransaction):
            tab[txn, 2] = 'two'
    assert list(await _raw(client, prefix, 17)) == [slot(17) + struct.pack('>Q', 1)]


class Boom(Exception):
    pass


@pytest_twisted.ensureDeferred
async def test_exception_in_block_writes_nothing(client, prefix):
    db, tab = await _oid_table(client, prefix, 18, [(1, 'kept')])
    with pytest.raises(Boom):
        async with db.begin(write=True) as txn:
            tab[txn, 1] = 'changed'
            tab[txn, 2] = 'new'
            assert await tab[txn, 2] == 'new'
            tab.truncate(txn)
            raise Boom()
    assert txn.state == 'aborted'
    assert await _raw(client, prefix, 18) == {slot(18) + struct.pack('>Q', 1): b'kept'}
    with pytest.raises(TransactionClosed):
        await txn.commit()


@pytest_twisted.ensureDeferred
async def test_use_after_commit_or_abort_is_refused(client, prefix):
    db, tab = await _oid_table(client, prefix, 19)
    async with db.begin(write=True) as txn:
        tab[txn, 1] = 'one'
    assert txn.state == 'committed'
    with pytest.raises(TransactionClosed):
        await tab[txn, 1]
    with pytest.raises(TransactionClosed):
        tab[txn, 2] = 'two'
    with pytest.raises(TransactionClosed):
        del tab[txn, 1]
    with pytest.raises(TransactionClosed):
        await tab.exists(txn, 1)
    with pytest.raises(TransactionClosed):
        await _collect(tab.select(txn))
    with pytest.raises(TransactionClosed):
        await tab.count(txn)
    with pytest.raises(TransactionClosed):
        tab.truncate(txn)
    with pytest.raises(TransactionClosed):
        await txn.commit()

    aborted = db.begin(write=True)
    tab[aborted, 3] = 'three'
    aborted.abort()
    with pytest.raises(TransactionClosed):
        await tab[aborted, 1]
    with pytest.raises(TransactionClosed):
        tab[aborted, 3] = 'three'
    with pytest.raises(TransactionClosed):
        await aborted.commit()
    assert list(await _raw(client, prefix, 19)) == [slot(19) + struct.pack('>Q', 1)]

    # a read-only transaction too
    async with db.begin() as ro:
        assert await tab[ro, 1] == 'one'
    with pytest.raises(TransactionClosed):
        await tab[ro, 1]


@pytest_twisted.ensureDeferred
async def test_snapshot_revision_fixed_by_first_read(client, prefix):
    db, tab = await _oid_table(client, prefix, 20, [(1, 'before')])
    current = await db.status()
    txn = db.begin()
    assert txn.revision is None
    assert await tab[txn, 1] == 'before'
    first = txn.revision
    assert isinstance(first, int) and first >= current
    # another writer changes the data after the snapshot
    async with db.begin(write=True) as other:
        tab[other, 1] = 'after'
        tab[other, 2] = 'new'
    assert other.committed_revision > first
    assert await tab[txn, 2] is None                  # pinned: not there at the snapshot
    assert await _collect(tab.select(txn)) == [(1, 'before')]
    assert await tab.count(txn) == 1
    assert await tab[txn, 1] == 'before'
    assert txn.revision == first
    await txn.commit()
    assert txn.committed_revision == first            # nothing written: the snapshot
    async with db.begin() as fresh:
        assert await tab[fresh, 1] == 'after'
        assert fresh.revision >= other.committed_revision


@pytest_twisted.ensureDeferred
async def test_concurrent_first_reads_share_one_revision(client, prefix):
    from twisted.internet.defer import gatherResults
    db, tab = await _oid_table(client, prefix, 21, [(i, str(i)) for i in range(5)])
    txn = db.begin()
    values = await gatherResults([tab[txn, i] for i in range(5)])
    assert values == ['0', '1', '2', '3', '4']
    revision = txn.revision
    assert revision is not None
    assert await tab.exists(txn, 4) and txn.revision == revision


@pytest_twisted.ensureDeferred
async def test_committed_revision(client, prefix):
    db, tab = await _oid_table(client, prefix, 22)
    txn = db.begin(write=True)
    assert txn.committed_revision is None
    tab[txn, 1] = 'one'
    tab[txn, 2] = 'two'
    revision = await txn.commit()
    assert txn.state == 'committed'
    assert revision == txn.committed_revision
    assert isinstance(revision, int) and revision > 0
    for key in (1, 2):
        kv = (await client.get(prefix + slot(22) + struct.pack('>Q', key))).kvs[0]
        assert kv.mod_revision == revision
    assert (await db.status()) >= revision
    async with db.begin(write=True) as txn2:
        del tab[txn2, 1]
    assert txn2.committed_revision > revision


@pytest_twisted.ensureDeferred
async def test_last_slot_under_a_prefix(client, prefix):
    db, tab = await _oid_table(client, prefix, 65535, [(1, 'one'), (2, 'two')])
    async with db.begin() as txn:
        assert await tab[txn, 1] == 'one'
        assert await _collect(tab.select(txn)) == [(1, 'one'), (2, 'two')]
        assert await tab.count(txn) == 2
    async with db.begin(write=True) as txn:
        tab.truncate(txn)
    assert await _raw(client, prefix, 65535) == {}


@pytest_twisted.ensureDeferred
async def test_last_slot_point_access_under_a_prefix(client, prefix):
    db, tab = await _oid_table(client, prefix, 65535, [(1, 'one')])
    async with db.begin() as txn:
        assert await tab[txn, 1] == 'one'
    assert await _raw(client, prefix, 65535) == {b'\xff\xff' + struct.pack('>Q', 1): b'one'}
