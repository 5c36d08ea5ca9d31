"""Value types of persistent maps: exact bytes and round trips (no server), restricted pickle, and the
errors a table raises for bad keys, bad values and undecodable stored bytes (through a real etcd)."""

import collections
import datetime
import decimal
import fractions
import io
import os
import pickle
import struct
import uuid

import cbor2
import flatbuffers
import pytest
import pytest_twisted
from flatbuffers import encode as fb_encode
from flatbuffers import number_types, packer
from flatbuffers import table as fb_table

from txaioetcd import Database, errors, pmap
from txaioetcd.pmap import PickleRefused, RestrictedUnpickler

U1 = uuid.UUID('12345678-9abc-def0-1234-56789abcdef0')


class User:
    def __init__(self, name, age):
        self.name = name
        self.age = age

    def marshal(self):
        return {'name': self.name, 'age': self.age}

    @staticmethod
    def parse(obj):
        return User(obj['name'], obj['age'])

    def __eq__(self, other):
        return isinstance(other, User) and (self.name, self.age) == (other.name, other.age)


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Stranger:
    def __init__(self):
        self.secret = 42


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'echo pwned > {self.path}',)


def _codec(class_name, **options):
    return pmap.map_class(class_name)(1, **options)


def _round(tab, obj, key=1):
    return tab.decode_value(key, tab.encode_value(key, obj))


# -- plain value types

@pytest.mark.parametrize('value', ['', 'abc', 'äöü € 日本 😀', 'nul\0inside'])
def test_string_value_is_utf8(value):
    tab = _codec('MapOidString')
    assert tab.encode_value(1, value) == value.encode('utf-8')
    assert _round(tab, value) == value


def test_binary_value_as_is():
    tab = _codec('MapOidBinary')
    for value in [b'', b'\0\xff', bytes(range(256))]:
        assert tab.encode_value(1, value) == value
        assert _round(tab, value) == value
    assert tab.encode_value(1, bytearray(b'ab')) == b'ab'


@pytest.mark.parametrize('value', [0, 1, 2 ** 32, 2 ** 64 - 1])
def test_oid_value_is_big_endian_q(value):
    tab = _codec('MapStringOid')
    assert tab.encode_value('k', value) == struct.pack('>Q', value)
    assert _round(tab, value, 'k') == value


@pytest.mark.parametrize('bad', [-1, 2 ** 64, True, 1.0, '1'])
def test_oid_value_refuses(bad):
    tab = _codec('MapStringOid')
    with pytest.raises(errors.ValueEncodeError):
        tab.encode_value('k', bad)


def test_uuid_value_is_16_bytes():
    tab = _codec('MapOidUuid')
    assert tab.encode_value(1, U1) == U1.bytes
    assert _round(tab, U1) == U1
    with pytest.raises(errors.ValueEncodeError):
        tab.encode_value(1, str(U1))


def test_json_value_compact_utf8_with_marshal():
    tab = _codec('MapUuidJson', marshal=User.marshal, unmarshal=User.parse)
    user = User('Jürgen', 42)
    data = tab.encode_value(U1, user)
    assert data == '{"name":"Jürgen","age":42}'.encode('utf-8')
    assert tab.decode_value(U1, data) == user
    plain = _codec('MapStringJson')
    assert plain.encode_value('k', {'a': [1, 2.5, None, True], 'b': 'x/y'}) == \
        b'{"a":[1,2.5,null,true],"b":"x/y"}'
    assert _round(plain, {'nested': {'list': []}}, 'k') == {'nested': {'list': []}}


def test_cbor_value_with_marshal():
    tab = _codec('MapUuidCbor', marshal=User.marshal, unmarshal=User.parse)
    user = User('Ann', 7)
    data = tab.encode_value(U1, user)
    assert data == cbor2.dumps({'name': 'Ann', 'age': 7})
    assert data == b'\xa2dnamecAnncage\x07'
    assert tab.decode_value(U1, data) == user
    plain = _codec('MapOidCbor')
    assert plain.encode_value(1, {'a': 1}) == b'\xa1aa\x01'
    value = {'bytes': b'\0\1', 'list': [1, 2.5, None], 'big': 2 ** 70}
    assert _round(plain, value) == value


@pytest.mark.parametrize('value', [
    {'a': [1, 2]}, [1, 'two', 3.0, None, True], 'text', 12345, (1, 2),
    decimal.Decimal('1.25'), U1, collections.OrderedDict(a=1), collections.deque([1, 2]),
    fractions.Fraction(1, 3), datetime.timedelta(days=1, seconds=2),
])
def test_pickle_round_trip_of_plain_data(value):
    tab = _codec('MapOidPickle')
    data = tab.encode_value(1, value)
    assert data == pickle.dumps(value, protocol=2)
    assert data.startswith(b'\x80\x02')
    assert _round(tab, value) == value


@pytest.mark.parametrize('value', [
    pytest.param({1, 2}, id='set'),
    pytest.param(frozenset({1}), id='frozenset'),
    pytest.param(b'raw bytes', id='bytes'),
    pytest.param(b'', id='empty-bytes'),
    pytest.param(complex(1, 2), id='complex'),
    pytest.param(datetime.datetime(2020, 1, 2, 3, 4, 5), id='datetime'),
    pytest.param(datetime.date(2020, 1, 2), id='date'),
])
def test_pickle_round_trip_of_py2_named_values(value):
    tab = _codec('MapOidPickle')
    assert _round(tab, value) == value


def test_pickle_allowed_class_with_set_and_bytes_attributes():
    tab = _codec('MapOidPickle', allowed=(Point,))
    point = Point({1, 2}, b'\x01')
    assert _round(tab, point) == point


def test_pickle_allowed_class_loads():
    tab = _codec('MapOidPickle', allowed=(Point,))
    point = Point(1, [2, 'three'])
    data = tab.encode_value(1, point)
    assert data == pickle.dumps(point, protocol=2)
    back = tab.decode_value(1, data)
    assert isinstance(back, Point) and back == point


def test_pickle_class_not_allowed_is_refused():
    tab = _codec('MapOidPickle', allowed=(Point,), name='things')
    data = pickle.dumps(Stranger(), protocol=2)
    with pytest.raises(errors.ValueDecodeError) as caught:
        tab.decode_value(5, data)
    assert isinstance(caught.value.__cause__, PickleRefused)
    assert 'things[5]' in str(caught.value) and 'Stranger' in str(caught.value)
    # the unpickler itself
    with pytest.raises(PickleRefused, match='Stranger'):
        RestrictedUnpickler(io.BytesIO(data), frozenset()).load()
    assert issubclass(PickleRefused, pickle.UnpicklingError)


def test_pickle_default_allows_no_user_class():
    tab = _codec('MapOidPickle')
    with pytest.raises(errors.ValueDecodeError) as caught:
        tab.decode_value(1, pickle.dumps(Point(1, 2), protocol=2))
    assert isinstance(caught.value.__cause__, PickleRefused)


def _malicious_pickles(path):
    command = f'echo pwned > {path}'.encode()
    by_class = [pickle.dumps(Evil(path), protocol=p) for p in (0, 2, 4)]
    by_hand = [
        b'cos\nsystem\n(S' + repr(command.decode()).encode() + b'\ntR.',           # protocol 0
        b'\x80\x02cposix\nsystem\nq\x00X' + struct.pack('<I', len(command)) + command
        + b'q\x01\x85q\x02Rq\x03.',                                              # protocol 2
        b'\x80\x02c__builtin__\neval\nX' + struct.pack('<I', 23)
        + b"__import__('os').getpid\x85R.",                                      # builtins eval
        b'\x80\x02cbuiltins\ngetattr\nX\x02\x00\x00\x00osX\x06\x00\x00\x00system\x86R.',
    ]
    return by_class + by_hand


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    path = tmp_path / 'pwned'
    tab = _codec('MapOidPickle', allowed=(Point,))
    for data in _malicious_pickles(path):
        with pytest.raises(errors.ValueDecodeError) as caught:
            tab.decode_value(1, data)
        assert isinstance(caught.value.__cause__, PickleRefused), data
        with pytest.raises(PickleRefused):
            RestrictedUnpickler(io.BytesIO(data), frozenset({('test_pmap_values', 'Point')})).load()
    assert not path.exists()
    # the test itself is sound: plain pickle would have run the command
    pickle.loads(pickle.dumps(Evil(path), protocol=2))
    assert path.read_text().strip() == 'pwned'


# -- FlatBuffers: one table with one string field, written by hand

def _fb_build(name, builder):
    offset = builder.CreateString(name)
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, offset, 0)
    return builder.EndObject()


def _fb_cast(data):
    buf = bytearray(data)
    root = fb_encode.Get(packer.uoffset, buf, 0)
    tab = fb_table.Table(buf, root)
    field = number_types.UOffsetTFlags.py_type(tab.Offset(4))
    return tab.String(field + tab.Pos).decode('utf-8') if field else None


def test_flatbuffers_value_bytes_and_round_trip():
    tab = _codec('MapUuidFlatBuffers', build=_fb_build, cast=_fb_cast)
    data = tab.encode_value(U1, 'hi')
    # plain Finish: no file identifier, no size prefix (as zlmdb wrote)
    assert data == (b'\x0c\x00\x00\x00\x00\x00\x06\x00\x08\x00\x04\x00\x06\x00\x00\x00'
                    b'\x04\x00\x00\x00\x02\x00\x00\x00hi\x00\x00')
    builder = flatbuffers.Builder(0)
    builder.Finish(_fb_build('hi', builder))
    assert data == bytes(builder.Output())
    assert tab.decode_value(U1, data) == 'hi'
    for name in ['', 'Jürgen', 'x' * 1000]:
        assert _round(tab, name, U1) == name


# -- errors through a real table in etcd

def _raw(prefix, tab, key):
    return prefix + tab.encode_key(key)


@pytest.mark.parametrize('name, key, stored', [
    ('MapUuidCbor', U1, b'\xff'),                  # break code, not a data item
    ('MapUuidCbor', U1, b'\x1c'),                  # reserved additional info
    ('MapStringJson', 'the-key', b'{not json'),
    ('MapStringJson', 'the-key', b'\xff\xfe'),
    ('MapOidString', 77, b'\xff\xfeabc'),          # not UTF-8
    ('MapOidUuid', 77, b'0123456789'),              # 10 bytes, not 16
    ('MapStringOid', 'k', b'\x01\x02\x03'),         # 3 bytes, not 8
    ('MapOidPickle', 77, b'not a pickle'),
])
@pytest_twisted.ensureDeferred
async def test_undecodable_stored_bytes_raise_value_decode_error(client, prefix, name, key, stored):
    tab = pmap.map_class(name)(3, name='stuff')
    await client.set(_raw(prefix, tab, key), stored)
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        with pytest.raises(errors.ValueDecodeError) as caught:
            await tab[txn, key]
        message = str(caught.value)
        assert 'stuff' in message and repr(key) in message
        # exists does not decode
        assert await tab.exists(txn, key) is True
    # select names the key too
    async with db.begin() as txn:
        with pytest.raises(errors.ValueDecodeError, match='stuff'):
            async for _ in tab.select(txn):
                pass
    # keys alone still list
    async with db.begin() as txn:
        assert [k async for k in tab.select(txn, return_values=False)] == [key]


@pytest_twisted.ensureDeferred
async def test_unmarshal_raising_is_a_decode_error(client, prefix):
    def unmarshal(obj):
        raise KeyError('missing field')
    tab = pmap.MapUuidCbor(4, unmarshal=unmarshal)
    await client.set(_raw(prefix, tab, U1), cbor2.dumps({'a': 1}))
    db = Database(client, prefix=prefix)
    async with db.begin() as txn:
        with pytest.raises(errors.ValueDecodeError) as caught:
            await tab[txn, U1]
    assert 'MapUuidCbor(4)' in str(caught.value) and repr(U1) in str(caught.value)
    assert 'missing field' in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_marshal_raising_is_an_encode_error_and_nothing_is_written(client, prefix):
    def marshal(obj):
        raise RuntimeError('cannot marshal this')
    tab = pmap.MapUuidCbor(4, marshal=marshal, name='people')
    db = Database(client, prefix=prefix)
    with pytest.raises(errors.ValueEncodeError) as caught:
        async with db.begin(write=True) as txn:
            tab[txn, U1] = User('a', 1)
    message = str(caught.value)
    assert 'people' in message and repr(U1) in message and 'cannot marshal this' in message
    assert (await client.get(_raw(prefix, tab, U1))).kvs == []


@pytest.mark.parametrize('name, key, value', [
    ('MapStringJson', 'k', object()),
    ('MapStringJson', 'k', {'raw': b'bytes'}),
    ('MapStringCbor', 'k', object()),
    ('MapStringString', 'k', b'bytes'),
    ('MapStringBinary', 'k', 'text'),
    ('MapStringUuid', 'k', str(U1)),
    ('MapStringOid', 'k', -5),
])
def test_unencodable_values_raise_value_encode_error(name, key, value):
    tab = pmap.map_class(name)(9, name='things')
    with pytest.raises(errors.ValueEncodeError) as caught:
        tab.encode_value(key, value)
    assert 'things' in str(caught.value) and repr(key) in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_wrong_key_type_raises_key_type_error(client, prefix):
    tab = pmap.MapUuidCbor(5, name='users')
    db = Database(client, prefix=prefix)
    async with db.begin(write=True) as txn:
        for bad in ['12345678-9abc-def0-1234-56789abcdef0', 12, None, U1.bytes]:
            with pytest.raises(errors.KeyTypeError) as caught:
                await tab[txn, bad]
            assert isinstance(caught.value, TypeError)
            assert 'users' in str(caught.value) and repr(bad) in str(caught.value)
            with pytest.raises(errors.KeyTypeError):
                tab[txn, bad] = {'a': 1}
            with pytest.raises(TypeError):
                del tab[txn, bad]
            with pytest.raises(errors.KeyTypeError):
                await tab.exists(txn, bad)
        composite = pmap.MapStringOidCbor(6, name='pairs')
        with pytest.raises(errors.KeyTypeError, match='pairs'):
            composite[txn, ('a', 'b')] = 1
        with pytest.raises(errors.KeyTypeError, match='pairs'):
            composite[txn, 'a'] = 1
        tab[txn, U1] = {'ok': True}
    async with db.begin() as txn:
        assert await tab[txn, U1] == {'ok': True}


@pytest_twisted.ensureDeferred
async def test_setting_none_is_refused(client, prefix):
    db = Database(client, prefix=prefix)
    for tab, key in [(pmap.MapUuidCbor(1), U1), (pmap.MapOidPickle(2), 1), (pmap.MapStringString(3), 'k'),
                     (pmap.MapStringJson(4), 'k')]:
        with pytest.raises(errors.ValueEncodeError, match='None'):
            async with db.begin(write=True) as txn:
                tab[txn, key] = None
        assert (await client.get(_raw(prefix, tab, key))).kvs == []


@pytest_twisted.ensureDeferred
async def test_each_value_type_round_trips_through_etcd(client, prefix):
    db = Database(client, prefix=prefix)
    cases = [
        (pmap.MapOidString(1), 1, 'Grüße 😀'),
        (pmap.MapOidBinary(2), 2, b'\0\xff\x00'),
        (pmap.MapOidOid(3), 3, 2 ** 64 - 1),
        (pmap.MapOidUuid(4), 4, U1),
        (pmap.MapOidJson(5, marshal=User.marshal, unmarshal=User.parse), 5, User('J', 1)),
        (pmap.MapOidCbor(6, marshal=User.marshal, unmarshal=User.parse), 6, User('C', 2)),
        (pmap.MapOidPickle(7, allowed=(Point,)), 7, Point(1, 2)),
        (pmap.MapOidFlatBuffers(8, build=_fb_build, cast=_fb_cast), 8, 'flat'),
    ]
    async with db.begin(write=True) as txn:
        for tab, key, value in cases:
            tab[txn, key] = value
    for tab, key, value in cases:
        stored = (await client.get(_raw(prefix, tab, key))).kvs[0].value
        assert stored == tab.encode_value(key, value)
    async with db.begin() as txn:
        for tab, key, value in cases:
            assert await tab[txn, key] == value
