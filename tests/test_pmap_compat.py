"""Byte compatibility with zlmdb and the earlier txaioetcd (see /work/pmap_formats_research.md).

Records are written raw, exactly as those libraries laid them out (``>H`` slot + serialized key,
values in their serializations), with the low-level client, and read through the pmap classes; and
the other way round: written through pmap, checked byte for byte with ``client.get``.
"""

import json
import pickle
import struct
import uuid

import cbor2
import pytest
import pytest_twisted

from txaioetcd import Database, KeySet, pmap
from txaioetcd.errors import SchemaMismatch

U1 = uuid.UUID('12345678-9abc-def0-1234-56789abcdef0')
U2 = uuid.UUID('fedcba98-7654-3210-fedc-ba9876543210')
U3 = uuid.UUID(int=1)


def slot(n):
    return struct.pack('>H', n)


def q(n):
    return struct.pack('>Q', n)


def old_json(obj):
    """zlmdb's JSON value serializer (standard library json)."""
    return json.dumps(obj, separators=(',', ':'), ensure_ascii=False, sort_keys=False).encode('utf8')


class User:
    def __init__(self, oid, name, tags):
        self.oid = oid
        self.name = name
        self.tags = tags

    def marshal(self):
        return {'oid': str(self.oid), 'name': self.name, 'tags': self.tags}

    @staticmethod
    def parse(obj):
        return User(uuid.UUID(obj['oid']), obj['name'], obj['tags'])

    def __eq__(self, other):
        return isinstance(other, User) and vars(self) == vars(other)


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


async def _put_raw(client, prefix, records):
    for key, value in records:
        await client.set(prefix + key, value)


async def _raw_table(client, prefix, slot_no):
    result = await client.get(KeySet(prefix + slot(slot_no), prefix=True))
    return {kv.key[len(prefix):]: kv.value for kv in result.kvs}


# -- old bytes read through pmap

@pytest_twisted.ensureDeferred
async def test_read_uuid_cbor(client, prefix):
    users = [User(U1, 'Ann', ['a', 'b']), User(U2, 'Bört', [])]
    await _put_raw(client, prefix, [(slot(1) + u.oid.bytes, cbor2.dumps(u.marshal())) for u in users])
    tab = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        assert await tab[txn, U1] == users[0]
        assert await tab[txn, U2] == users[1]
        assert await tab[txn, U3] is None
        assert [k async for k in tab.select(txn, return_values=False)] == [U1, U2]


@pytest_twisted.ensureDeferred
async def test_read_oid_pickle_of_allowed_class(client, prefix):
    await _put_raw(client, prefix, [
        (slot(2) + q(1), pickle.dumps(Point(1, 2), protocol=2)),
        (slot(2) + q(2 ** 53), pickle.dumps(Point('x', [1, {'y': None}]), protocol=2)),
        (slot(2) + q(3), pickle.dumps({'plain': [1, 2.5, 'dict']}, protocol=2)),
        (slot(2) + q(4), pickle.dumps(None, protocol=2)),
    ])
    tab = pmap.MapOidPickle(2, allowed=(Point,))
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        assert await tab[txn, 1] == Point(1, 2)
        assert await tab[txn, 2 ** 53] == Point('x', [1, {'y': None}])
        assert await tab[txn, 3] == {'plain': [1, 2.5, 'dict']}
        assert await tab[txn, 4] is None          # b'\x80\x02N.' holds None
        assert await tab.exists(txn, 4) is True
        assert await tab.count(txn) == 4


@pytest_twisted.ensureDeferred
async def test_read_string_json_written_by_stdlib_json(client, prefix):
    values = {
        'ascii': {'a': 1, 'b': [True, False, None]},
        'Grüße/日本': {'text': 'äöü € 😀 </script> \u2028', 'float': 1.5e-07, 'neg': -0.25},
        'big': {'int': 123456789012345678901234567890, 'max': 2 ** 64 - 1},
        '': ['empty key'],
    }
    await _put_raw(client, prefix, [(slot(3) + k.encode('utf8'), old_json(v)) for k, v in values.items()])
    tab = pmap.MapStringJson(3)
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        for key, value in values.items():
            assert await tab[txn, key] == value
        assert [k async for k in tab.select(txn, return_values=False)] == sorted(values)


@pytest_twisted.ensureDeferred
async def test_read_simple_key_value_layouts(client, prefix):
    await _put_raw(client, prefix, [
        (slot(4) + U1.bytes, 'zwölf'.encode('utf8')),           # MapUuidString
        (slot(5) + q(7), q(2 ** 64 - 1)),                        # MapOidOid
        (slot(5) + q(0), q(0)),
        (slot(6) + 'alice'.encode('utf8'), U2.bytes),            # MapStringUuid
        (slot(7) + q(9), U1.bytes),                              # MapOidUuid
        (slot(8) + U1.bytes, q(42)),                             # MapUuidOid
        (slot(9) + 'k'.encode(), 'v€'.encode('utf8')),           # MapStringString
        (slot(10) + U1.bytes, U2.bytes),                         # MapUuidUuid
    ])
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        assert await pmap.MapUuidString(4)[txn, U1] == 'zwölf'
        assert await pmap.MapOidOid(5)[txn, 7] == 2 ** 64 - 1
        assert await pmap.MapOidOid(5)[txn, 0] == 0
        assert await pmap.MapStringUuid(6)[txn, 'alice'] == U2
        assert await pmap.MapOidUuid(7)[txn, 9] == U1
        assert await pmap.MapUuidOid(8)[txn, U1] == 42
        assert await pmap.MapStringString(9)[txn, 'k'] == 'v€'
        assert await pmap.MapUuidUuid(10)[txn, U1] == U2


@pytest_twisted.ensureDeferred
async def test_read_composite_layouts(client, prefix):
    ns = 1_600_000_000_123_456_789
    await _put_raw(client, prefix, [
        # MapUuidStringCbor: uuid.bytes + trailing unterminated string
        (slot(11) + U1.bytes + 'title'.encode(), cbor2.dumps({'v': 1})),
        (slot(11) + U1.bytes + 'ä'.encode(), cbor2.dumps({'v': 2})),
        (slot(11) + U2.bytes, cbor2.dumps({'v': 3})),                         # empty string part
        # MapUuidStringUuid (zlmdb index layout)
        (slot(12) + U1.bytes + b'realm1', U2.bytes),
        # MapOidOidOid: >QQ → >Q
        (slot(13) + struct.pack('>QQ', 1, 2), q(3)),
        (slot(13) + struct.pack('>QQ', 1, 10), q(4)),
        (slot(13) + struct.pack('>QQ', 2, 0), q(5)),
        # MapUuidUuidUuid: (UUID, UUID) → UUID
        (slot(14) + U1.bytes + U2.bytes, U3.bytes),
        # MapStringStringUuid: zlmdb's StringString used a NUL separator
        (slot(15) + b'ab\x00cd', U1.bytes),
        # MapTimestampUuidCbor / MapUuidTimestampCbor: '>q' nanoseconds
        (slot(16) + struct.pack('>q', ns) + U1.bytes, cbor2.dumps('t-u')),
        (slot(17) + U1.bytes + struct.pack('>q', ns), cbor2.dumps('u-t')),
        # MapOidStringOid: OID + trailing string
        (slot(18) + q(5) + 'name'.encode(), q(6)),
    ])
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        tab = pmap.MapUuidStringCbor(11)
        assert await tab[txn, (U1, 'title')] == {'v': 1}
        assert await tab[txn, (U1, 'ä')] == {'v': 2}
        assert await tab[txn, (U2, '')] == {'v': 3}
        assert [k async for k in tab.select(txn, prefix=(U1,), return_values=False)] == \
            [(U1, 'title'), (U1, 'ä')]
        assert await pmap.MapUuidStringUuid(12)[txn, (U1, 'realm1')] == U2
        tab = pmap.MapOidOidOid(13)
        assert await tab[txn, (1, 2)] == 3
        # zlmdb's non-unique index lookup: from (j, 0) to (j + 1, 0)
        assert [v async for v in tab.select(txn, from_key=(1, 0), to_key=(2, 0), return_keys=False)] == [3, 4]
        assert await pmap.MapUuidUuidUuid(14)[txn, (U1, U2)] == U3
        assert await pmap.MapStringStringUuid(15)[txn, ('ab', 'cd')] == U1
        assert [k async for k in pmap.MapStringStringUuid(15).select(txn, return_values=False)] == \
            [('ab', 'cd')]
        assert await pmap.MapTimestampUuidCbor(16)[txn, (ns, U1)] == 't-u'
        assert await pmap.MapUuidTimestampCbor(17)[txn, (U1, ns)] == 'u-t'
        assert [k async for k in pmap.MapUuidTimestampCbor(17).select(txn, return_values=False)] == [(U1, ns)]
        assert await pmap.MapOidStringOid(18)[txn, (5, 'name')] == 6


@pytest_twisted.ensureDeferred
async def test_read_old_empty_uuid_value_as_none(client, prefix):
    await client.set(prefix + slot(19) + b'gone', b'')
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        assert await pmap.MapStringUuid(19)[txn, 'gone'] is None


@pytest_twisted.ensureDeferred
async def test_old_data_without_namespace_prefix(client, prefix):
    """Old txaioetcd never applied a namespace prefix: a Database with prefix=b'' reads it."""
    # the records are put at the very top of the keyspace, so keep them unique and remove them
    oid = uuid.uuid4()
    key = slot(65000) + oid.bytes
    await client.set(key, cbor2.dumps({'top': 'level'}))
    try:
        db = Database(client)
        async with db.begin() as txn:
            assert await pmap.MapUuidCbor(65000)[txn, oid] == {'top': 'level'}
    finally:
        await client.delete(key)


# -- pmap writes, checked byte for byte

@pytest_twisted.ensureDeferred
async def test_writes_are_byte_identical(client, prefix):
    ns = 1_234_567_890_000_000_001
    user = User(U1, 'Jürgen', ['x'])
    point = Point(3, 4)
    db = Database(client, prefix=prefix)
    async with db.begin(write=True) as txn:
        pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)[txn, U1] = user
        pmap.MapOidPickle(2, allowed=(Point,))[txn, 7] = point
        pmap.MapStringJson(3)[txn, 'schlüssel'] = {'name': 'Jürgen', 'list': [1, 2.5, None, True], 'o': {}}
        pmap.MapUuidString(4)[txn, U1] = 'zwölf'
        pmap.MapOidOid(5)[txn, 2 ** 64 - 1] = 1
        pmap.MapStringUuid(6)[txn, 'alice'] = U2
        pmap.MapUuidStringCbor(11)[txn, (U1, 'title')] = [1, 'two']
        pmap.MapOidOidOid(13)[txn, (1, 2)] = 3
        pmap.MapStringStringUuid(15)[txn, ('ab', 'cd')] = U1
        pmap.MapTimestampUuidCbor(16)[txn, (ns, U2)] = 'ts'
        pmap.MapUuidUuidUuid(14)[txn, (U1, U2)] = U3
    expected = {
        1: {slot(1) + U1.bytes: cbor2.dumps(user.marshal())},
        2: {slot(2) + q(7): pickle.dumps(point, protocol=2)},
        3: {slot(3) + 'schlüssel'.encode('utf8'):
            old_json({'name': 'Jürgen', 'list': [1, 2.5, None, True], 'o': {}})},
        4: {slot(4) + U1.bytes: 'zwölf'.encode('utf8')},
        5: {slot(5) + q(2 ** 64 - 1): q(1)},
        6: {slot(6) + b'alice': U2.bytes},
        11: {slot(11) + U1.bytes + b'title': cbor2.dumps([1, 'two'])},
        13: {slot(13) + struct.pack('>QQ', 1, 2): q(3)},
        14: {slot(14) + U1.bytes + U2.bytes: U3.bytes},
        15: {slot(15) + b'ab\x00cd': U1.bytes},
        16: {slot(16) + struct.pack('>q', ns) + U2.bytes: cbor2.dumps('ts')},
    }
    for slot_no, records in expected.items():
        assert await _raw_table(client, prefix, slot_no) == records, slot_no
    # and the point read of one raw key
    got = await client.get(prefix + slot(1) + U1.bytes)
    assert got.kvs[0].value == cbor2.dumps({'oid': str(U1), 'name': 'Jürgen', 'tags': ['x']})
    # an unpickling with the standard library gives the same object
    raw = (await client.get(prefix + slot(2) + q(7))).kvs[0].value
    assert pickle.loads(raw) == point


@pytest_twisted.ensureDeferred
async def test_index_entries_have_zlmdb_layout(client, prefix):
    users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)
    by_name = pmap.MapStringUuid(2)
    users.attach_index('by_name', by_name, lambda u: u.name)
    db = Database(client, prefix=prefix)
    async with db.begin(write=True) as txn:
        users[txn, U1] = User(U1, 'ann', [])
        users[txn, U2] = User(U2, 'bob', [])
    assert await _raw_table(client, prefix, 2) == {slot(2) + b'ann': U1.bytes, slot(2) + b'bob': U2.bytes}


# -- the catalog in slot 0

@pytest_twisted.ensureDeferred
async def test_schema_attach_writes_cbor_catalog_records(client, prefix):
    class Accounts(pmap.Schema):
        users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)
        users_by_name = pmap.MapStringUuid(2)
        points = pmap.MapOidPickle(300, allowed=(Point,))
    schema = Accounts()
    schema.users.attach_index('by_name', schema.users_by_name, lambda u: u.name)
    db = Database(client, prefix=prefix)
    recorded = await db.attach(schema)
    assert sorted(recorded) == ['points', 'users', 'users_by_name']

    result = await client.get(KeySet(prefix + b'\0\0', prefix=True))
    stored = {kv.key[len(prefix):]: cbor2.loads(kv.value) for kv in result.kvs}
    assert set(stored) == {b'\0\0' + struct.pack('>H', n) for n in (1, 2, 300)}
    users = stored[b'\0\0\x00\x01']
    assert users['name'] == 'users' and users['slot'] == 1
    assert users['key_type'] == 'Uuid' and users['value_type'] == 'Cbor'
    assert users['indexes'] == {'by_name': {'slot': 2, 'unique': True, 'nullable': False}}
    assert stored[b'\0\0\x00\x02'] == {'name': 'users_by_name', 'slot': 2, 'key_type': 'String',
                                      'value_type': 'Uuid', 'indexes': {}}
    assert stored[b'\0\0\x01\x2c']['value_type'] == 'Pickle'
    assert stored[b'\0\0\x01\x2c']['slot'] == 300

    # attaching again records nothing and changes nothing
    revision = (await client.get(prefix + b'\0\0\x00\x01')).kvs[0].mod_revision
    assert await db.attach(schema) == []
    assert (await client.get(prefix + b'\0\0\x00\x01')).kvs[0].mod_revision == revision

    # a service that reads slot 1 another way gets a clear error
    class Other(pmap.Schema):
        users = pmap.MapUuidJson(1)
    with pytest.raises(SchemaMismatch) as caught:
        await db.attach(Other())
    assert 'slot 1' in str(caught.value) and 'Cbor' in str(caught.value) and 'Json' in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_attach_over_an_old_catalog_record(client, prefix):
    old = {'oid': str(uuid.uuid4()), 'name': 'users', 'creator': 'unknown', 'slot': 1}
    await client.set(prefix + b'\0\0' + struct.pack('>H', 1), cbor2.dumps(old))

    class Old(pmap.Schema):
        users = pmap.MapUuidCbor(1)
    db = Database(client, prefix=prefix)
    await db.attach(Old())
