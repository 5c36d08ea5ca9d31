"""Key types of persistent maps (no server): exact bytes, round trips, composite key order, and the
named map classes made by ``map_class``."""

import calendar
import datetime
import random
import struct
import uuid

import pytest

from txaioetcd import pmap
from txaioetcd.errors import KeyTypeError
from txaioetcd.pmap import BINARY, OID, STRING, TIMESTAMP, UUID, Composite, PersistentMap, map_class

U1 = uuid.UUID('12345678-9abc-def0-1234-56789abcdef0')
U2 = uuid.UUID('00000000-0000-0000-0000-000000000001')


# -- single key types

@pytest.mark.parametrize('key, data', [
    (0, b'\0' * 8),
    (1, b'\0' * 7 + b'\x01'),
    (0x0102030405060708, b'\x01\x02\x03\x04\x05\x06\x07\x08'),
    (2 ** 53 + 1, struct.pack('>Q', 2 ** 53 + 1)),
    (2 ** 64 - 1, b'\xff' * 8),
])
def test_oid_exact_bytes_and_round_trip(key, data):
    assert OID.encode(key) == data
    assert OID.decode(data) == key
    assert type(OID.decode(data)) is int
    assert OID.width == 8


@pytest.mark.parametrize('bad', [-1, 2 ** 64, True, False, 1.0, 1.5, '1', b'\0' * 8, None, uuid.uuid4()])
def test_oid_refuses_out_of_range_and_other_types(bad):
    with pytest.raises(TypeError):
        OID.encode(bad)


def test_uuid_is_its_16_bytes():
    assert UUID.encode(U1) == bytes.fromhex('123456789abcdef0123456789abcdef0')
    assert UUID.encode(U1) == U1.bytes
    assert UUID.decode(U1.bytes) == U1
    assert isinstance(UUID.decode(U1.bytes), uuid.UUID)
    assert UUID.width == 16
    nil = uuid.UUID(int=0)
    assert UUID.encode(nil) == b'\0' * 16 and UUID.decode(b'\0' * 16) == nil


@pytest.mark.parametrize('bad', [str(U1), U1.bytes, U1.int, None])
def test_uuid_refuses_other_types(bad):
    with pytest.raises(TypeError):
        UUID.encode(bad)


@pytest.mark.parametrize('key', ['', 'abc', 'äöü€', '日本語', '😀 emoji', 'with\0nul', 'x' * 1000])
def test_string_is_utf8(key):
    assert STRING.encode(key) == key.encode('utf-8')
    assert STRING.decode(key.encode('utf-8')) == key
    assert STRING.width is None


def test_string_exact_bytes_of_non_ascii():
    assert STRING.encode('ä€') == b'\xc3\xa4\xe2\x82\xac'


@pytest.mark.parametrize('bad', [b'abc', 1, None, U1])
def test_string_refuses_other_types(bad):
    with pytest.raises(TypeError):
        STRING.encode(bad)


@pytest.mark.parametrize('key', [b'', b'\0', b'\x00\xff\x10abc', bytes(range(256))])
def test_binary_as_is(key):
    assert BINARY.encode(key) == key
    assert BINARY.encode(bytearray(key)) == key
    assert BINARY.encode(memoryview(key)) == key
    assert BINARY.decode(key) == key
    assert type(BINARY.decode(key)) is bytes


@pytest.mark.parametrize('bad', ['abc', 1, None])
def test_binary_refuses_other_types(bad):
    with pytest.raises(TypeError):
        BINARY.encode(bad)


@pytest.mark.parametrize('ns', [0, 1, 1_600_000_000_123_456_789, 2 ** 63 - 1])
def test_timestamp_is_big_endian_nanoseconds(ns):
    assert TIMESTAMP.encode(ns) == struct.pack('>Q', ns)
    assert TIMESTAMP.encode(ns) == struct.pack('>q', ns)    # zlmdb: signed int64, same for ns >= 0
    assert TIMESTAMP.decode(struct.pack('>Q', ns)) == ns
    assert TIMESTAMP.width == 8


def test_timestamp_of_aware_datetime_is_nanoseconds():
    utc = datetime.timezone.utc
    moment = datetime.datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=utc)
    expected = calendar.timegm((2021, 3, 4, 5, 6, 7)) * 10 ** 9 + 891011 * 1000
    assert TIMESTAMP.encode(moment) == struct.pack('>Q', expected)
    assert TIMESTAMP.decode(TIMESTAMP.encode(moment)) == expected
    # the same instant in another zone gives the same bytes
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert TIMESTAMP.encode(moment.astimezone(plus2)) == struct.pack('>Q', expected)
    assert TIMESTAMP.encode(datetime.datetime(1970, 1, 1, tzinfo=utc)) == b'\0' * 8


@pytest.mark.parametrize('bad', [
    datetime.datetime(2021, 3, 4, 5, 6, 7),                                 # naive
    datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc),  # before 1970
    -1, 2 ** 63, 1.5, True, '2021-01-01', None,
])
def test_timestamp_refuses(bad):
    with pytest.raises(TypeError):
        TIMESTAMP.encode(bad)


def test_naive_datetime_message_says_why():
    with pytest.raises(TypeError, match='aware'):
        TIMESTAMP.encode(datetime.datetime(2021, 1, 1))


# -- composite keys

def test_composite_fixed_parts_concatenate():
    key = Composite(OID, OID)
    assert key.width == 16
    assert key.encode((1, 2)) == struct.pack('>QQ', 1, 2)
    assert key.decode(struct.pack('>QQ', 1, 2)) == (1, 2)
    three = Composite(UUID, OID, UUID)
    data = U1.bytes + struct.pack('>Q', 7) + U2.bytes
    assert three.width == 40
    assert three.encode((U1, 7, U2)) == data
    assert three.decode(data) == (U1, 7, U2)


def test_composite_last_variable_part_is_unterminated():
    key = Composite(UUID, STRING)
    assert key.width is None
    assert key.encode((U1, 'abc')) == U1.bytes + b'abc'          # zlmdb's UuidString layout
    assert key.decode(U1.bytes + b'abc') == (U1, 'abc')
    assert key.encode((U1, '')) == U1.bytes
    assert key.decode(U1.bytes) == (U1, '')
    assert Composite(OID, STRING).encode((5, 'x€')) == struct.pack('>Q', 5) + 'x€'.encode()
    assert Composite(OID, BINARY).encode((5, b'\0\xff')) == struct.pack('>Q', 5) + b'\0\xff'
    # a trailing variable part may contain NUL
    assert Composite(UUID, STRING).decode(U1.bytes + b'a\0b') == (U1, 'a\0b')
    assert Composite(UUID, STRING).encode((U1, 'a\0b')) == U1.bytes + b'a\0b'


def test_composite_non_final_variable_part_is_nul_terminated():
    key = Composite(STRING, OID)
    assert key.encode(('abc', 1)) == b'abc\0' + struct.pack('>Q', 1)
    assert key.decode(b'abc\0' + struct.pack('>Q', 1)) == ('abc', 1)
    assert key.encode(('', 0)) == b'\0' + b'\0' * 8
    assert key.decode(b'\0' * 9) == ('', 0)
    # zlmdb's StringString layout: NUL between the parts
    assert Composite(STRING, STRING).encode(('ab', 'cd')) == b'ab\0cd'
    assert Composite(STRING, STRING).decode(b'ab\0cd') == ('ab', 'cd')
    three = Composite(STRING, STRING, UUID)
    assert three.encode(('a', 'bc', U1)) == b'a\0bc\0' + U1.bytes
    assert three.decode(b'a\0bc\0' + U1.bytes) == ('a', 'bc', U1)
    s3 = Composite(STRING, STRING, STRING)
    assert s3.encode(('x', '', 'z\0')) == b'x\0\0z\0'
    assert s3.decode(b'x\0\0z\0') == ('x', '', 'z\0')
    mixed = Composite(BINARY, OID, STRING)
    data = b'\x01\x02\0' + struct.pack('>Q', 9) + b'tail'
    assert mixed.encode((b'\x01\x02', 9, 'tail')) == data
    assert mixed.decode(data) == (b'\x01\x02', 9, 'tail')


def test_composite_fixed_part_may_contain_nul_before_variable_part():
    key = Composite(OID, STRING, OID)
    data = struct.pack('>Q', 0) + b'name\0' + struct.pack('>Q', 256)
    assert key.encode((0, 'name', 256)) == data
    assert key.decode(data) == (0, 'name', 256)


@pytest.mark.parametrize('parts, key', [
    ((STRING, OID), ('a\0b', 1)),
    ((STRING, STRING), ('\0', 'x')),
    ((BINARY, UUID), (b'\x00', U1)),
    ((STRING, STRING, UUID), ('ok', 'bad\0', U1)),
])
def test_nul_inside_non_final_variable_part_refused(parts, key):
    with pytest.raises(ValueError, match='NUL'):
        Composite(*parts).encode(key)


def test_composite_refuses_wrong_shapes_and_part_types():
    key = Composite(UUID, STRING)
    for bad in [(U1,), (U1, 'a', 'b'), [U1, 'a'], U1, ('a', U1), (U1, b'a'), None]:
        with pytest.raises(TypeError):
            key.encode(bad)
    with pytest.raises(ValueError):
        Composite(UUID)
    with pytest.raises(ValueError):
        Composite(UUID, UUID, UUID, UUID)


def test_composite_decode_of_short_bytes_fails():
    with pytest.raises(ValueError):
        Composite(OID, OID).decode(b'\0' * 12)
    with pytest.raises(ValueError):
        Composite(STRING, OID).decode(b'abc')   # no terminator


def test_composite_prefix_bytes():
    key = Composite(STRING, STRING, UUID)
    assert key.prefix(('a',)) == b'a\0'
    assert key.prefix(('a', 'b')) == b'a\0b\0'
    assert Composite(OID, STRING).prefix((3,)) == struct.pack('>Q', 3)
    with pytest.raises(TypeError):
        key.prefix(('a', 'b', U1))     # a full key is not a prefix
    with pytest.raises(TypeError):
        key.prefix(())


# -- byte order equals tuple order

_CHARS = ['a', 'b', 'z', 'A', '\x01', '\x7f', ' ', 'é', 'ÿ', 'Ā', '€', '\uffff', '😀', '\U0010ffff']
_OIDS = [0, 1, 2, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64 - 2, 2 ** 64 - 1]
_UUIDS = [uuid.UUID(int=0), uuid.UUID(int=1), uuid.UUID(int=2 ** 127), uuid.UUID(int=2 ** 128 - 1), U1, U2]


def _gen(kind, rnd):
    if kind is STRING:
        return ''.join(rnd.choice(_CHARS) for _ in range(rnd.randint(0, 4)))
    if kind is OID:
        return rnd.choice(_OIDS) if rnd.random() < 0.5 else rnd.randrange(2 ** 64)
    if kind is UUID:
        return rnd.choice(_UUIDS) if rnd.random() < 0.5 else uuid.UUID(int=rnd.getrandbits(128))
    raise AssertionError(kind)


@pytest.mark.parametrize('parts', [(STRING, OID), (UUID, STRING), (OID, OID), (STRING, STRING, UUID),
                                   (OID, STRING, OID), (STRING, STRING, STRING)],
                         ids=lambda parts: ''.join(p.name for p in parts))
def test_byte_order_equals_tuple_order(parts):
    key = Composite(*parts)
    rnd = random.Random(0x5EED + len(parts))
    keys = []
    for _ in range(3000):
        a = tuple(_gen(p, rnd) for p in parts)
        # often share leading parts, so later parts decide
        b = tuple(a[i] if rnd.random() < 0.4 else _gen(p, rnd) for i, p in enumerate(parts))
        ea, eb = key.encode(a), key.encode(b)
        assert (a < b) == (ea < eb), (a, b, ea, eb)
        assert (a == b) == (ea == eb), (a, b)
        assert key.decode(ea) == a
        keys.append(a)
    by_tuple = sorted(set(keys))
    by_bytes = sorted(set(keys), key=key.encode)
    assert by_tuple == by_bytes


# -- named classes

def test_map_class_names_and_types():
    cls = map_class('MapUuidCbor')
    assert issubclass(cls, PersistentMap) and cls.__name__ == 'MapUuidCbor'
    assert cls.KEY is UUID and cls.VALUE.name == 'Cbor'

    cls = map_class('MapStringUuidUuid')           # key (String, Uuid) → Uuid value
    assert isinstance(cls.KEY, Composite)
    assert [p.name for p in cls.KEY.parts] == ['String', 'Uuid']
    assert cls.VALUE.name == 'Uuid'

    cls = map_class('MapOidOidOid')                 # key (Oid, Oid) → Oid value
    assert [p.name for p in cls.KEY.parts] == ['Oid', 'Oid'] and cls.VALUE.name == 'Oid'

    cls = map_class('MapUuidUuidUuidUuid')          # zlmdb: 3-UUID key, UUID value
    assert [p.name for p in cls.KEY.parts] == ['Uuid'] * 3 and cls.VALUE.name == 'Uuid'

    cls = map_class('MapUuidFlatBuffers')
    assert cls.KEY is UUID and cls.VALUE.name == 'FlatBuffers'
    cls = map_class('MapUuidStringFlatBuffers')
    assert [p.name for p in cls.KEY.parts] == ['Uuid', 'String'] and cls.VALUE.name == 'FlatBuffers'
    cls = map_class('MapTimestampUuidFlatBuffers')
    assert [p.name for p in cls.KEY.parts] == ['Timestamp', 'Uuid']
    cls = map_class('MapOidBinary')
    assert cls.KEY is OID and cls.VALUE.name == 'Binary'


def test_map_class_instance_encodes_with_slot():
    tab = map_class('MapStringUuidUuid')(7)
    assert tab.slot == 7
    assert tab.encode_key(('ab', U1)) == b'\x00\x07ab\0' + U1.bytes
    assert tab.decode_key(b'\x00\x07ab\0' + U1.bytes) == ('ab', U1)
    tab = map_class('MapUuidCbor')(65535)
    assert tab.encode_key(U1) == b'\xff\xff' + U1.bytes
    tab = map_class('MapOidOidOid')(258)
    assert tab.encode_key((1, 2)) == b'\x01\x02' + struct.pack('>QQ', 1, 2)


@pytest.mark.parametrize('name', [
    'MapFoo', 'Map', 'MapUuid', 'MapCbor', 'MapCborUuid', 'MapUuidCborCbor', 'Mapuuidcbor',
    'MapUuidcbor', 'UuidCbor', 'MapUuidUuidUuidUuidCbor', 'MapUuidCborX', 'MapBytes32Uuid',
    'MapJsonString', 'MapUuid Cbor', '',
])
def test_invalid_names_raise_value_error(name):
    with pytest.raises(ValueError):
        map_class(name)


def test_module_attribute_access():
    from txaioetcd.pmap import MapUuidCbor
    assert MapUuidCbor is map_class('MapUuidCbor')
    assert pmap.MapStringUuidUuid is pmap.MapStringUuidUuid
    assert pmap.MapStringUuidUuid is map_class('MapStringUuidUuid')
    assert map_class('MapOidPickle') is map_class('MapOidPickle')
    assert 'MapUuidCbor' in dir(pmap)
    with pytest.raises(AttributeError):
        pmap.MapFooBar
    with pytest.raises(AttributeError):
        pmap.NotAMap
    with pytest.raises(ImportError):
        from txaioetcd.pmap import MapNothing  # noqa: F401


@pytest.mark.parametrize('slot', [0, 65536, -1, '1', 1.0, True, None])
def test_bad_slot_refused(slot):
    with pytest.raises(ValueError):
        pmap.MapUuidCbor(slot)


def test_good_slots():
    assert pmap.MapUuidCbor(1).slot == 1
    assert pmap.MapUuidCbor(65535).slot == 65535


def test_unknown_options_refused():
    with pytest.raises(TypeError, match='marshal'):
        pmap.MapUuidString(1, marshal=lambda x: x)
    with pytest.raises(TypeError):
        pmap.MapUuidCbor(1, build=lambda o, b: 0)
    with pytest.raises(TypeError):
        pmap.MapOidPickle(1, marshal=lambda x: x)
    with pytest.raises(TypeError):
        pmap.MapUuidFlatBuffers(1)      # needs build and cast
    # accepted options are accepted
    pmap.MapUuidCbor(1, marshal=lambda x: x, unmarshal=lambda x: x)
    pmap.MapOidPickle(1, allowed=(dict,))


def test_encode_key_wraps_errors_naming_table_and_key():
    tab = pmap.MapUuidCbor(3, name='users')
    with pytest.raises(KeyTypeError) as caught:
        tab.encode_key('not-a-uuid')
    assert isinstance(caught.value, TypeError)
    assert 'users' in str(caught.value) and "'not-a-uuid'" in str(caught.value)
    tab = pmap.MapStringOidCbor(3, name='pairs')
    with pytest.raises(KeyTypeError, match='pairs'):
        tab.encode_key(('a\0', 1))
