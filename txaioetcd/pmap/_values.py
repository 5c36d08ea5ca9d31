"""Value types of persistent maps: Python objects ↔ stored bytes.

Byte formats follow zlmdb and the earlier txaioetcd: String UTF-8, OID ``>Q``, UUID 16 bytes, JSON
compact UTF-8, CBOR (cbor2), Pickle (protocol 2), FlatBuffers (``build``/``cast``, no identifier).
A value type is configured per table (``marshal``/``unmarshal``, ``build``/``cast``, pickle's
allowed classes) by ``bind``, which returns the encoder and decoder the table uses.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
import uuid

import cbor2
import flatbuffers
import ujson

from ..errors import PickleRefused

__all__ = ('ValueType', 'VALUE_TYPES', 'RestrictedUnpickler', 'PickleRefused')

_Q = struct.Struct('>Q')


def _identity(value):
    return value


class ValueType:
    """One kind of stored value. ``bind(**options)`` → (encode, decode) for one table."""

    name = ''
    options: tuple = ()

    def bind(self, **options):
        raise NotImplementedError

    def describe(self, **options) -> dict:
        """What the catalog records about the value type beyond its name (for the same options)."""
        return {}

    def __repr__(self):
        return self.name


class _String(ValueType):
    name = 'String'

    def bind(self):
        def encode(value):
            if not isinstance(value, str):
                raise TypeError(f'a String value is a str, not {type(value).__name__}')
            return value.encode('utf-8')
        return encode, lambda data: data.decode('utf-8')


class _Binary(ValueType):
    name = 'Binary'

    def bind(self):
        def encode(value):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f'a Binary value is bytes, not {type(value).__name__}')
            return bytes(value)
        return encode, _identity


class _Oid(ValueType):
    name = 'Oid'

    def bind(self):
        def encode(value):
            if type(value) is not int or not 0 <= value < 2 ** 64:
                raise TypeError(f'an OID value is an int in 0 … 2**64-1, not {value!r}')
            return _Q.pack(value)
        return encode, lambda data: _Q.unpack(data)[0]


class _Uuid(ValueType):
    name = 'Uuid'

    def bind(self):
        def encode(value):
            if not isinstance(value, uuid.UUID):
                raise TypeError(f'a UUID value is a uuid.UUID, not {type(value).__name__}')
            return value.bytes
        # Earlier releases stored a None UUID as b'': read it back as None.
        return encode, lambda data: uuid.UUID(bytes=data) if data else None


class _Json(ValueType):
    """JSON via ujson; ``marshal`` turns an object into plain data, ``unmarshal`` back."""

    name = 'Json'
    options = ('marshal', 'unmarshal')

    def bind(self, marshal=None, unmarshal=None):
        marshal = marshal or _identity
        unmarshal = unmarshal or _identity

        def encode(value):
            return ujson.dumps(marshal(value), ensure_ascii=False, escape_forward_slashes=False,
                               reject_bytes=True).encode('utf-8')
        return encode, lambda data: unmarshal(ujson.loads(data))


class _Cbor(ValueType):
    """CBOR via cbor2; ``marshal`` turns an object into plain data, ``unmarshal`` back."""

    name = 'Cbor'
    options = ('marshal', 'unmarshal')

    def bind(self, marshal=None, unmarshal=None):
        marshal = marshal or _identity
        unmarshal = unmarshal or _identity
        dumps, loads = cbor2.dumps, cbor2.loads
        return (lambda value: dumps(marshal(value))), (lambda data: unmarshal(loads(data)))


# Classes a pickled value may always name: plain data types of the standard library.
_SAFE_GLOBALS = frozenset({
    ('builtins', 'set'), ('builtins', 'frozenset'), ('builtins', 'complex'), ('builtins', 'bytearray'),
    ('builtins', 'object'), ('builtins', 'slice'), ('builtins', 'range'),
    ('uuid', 'UUID'), ('decimal', 'Decimal'), ('fractions', 'Fraction'),
    ('datetime', 'datetime'), ('datetime', 'date'), ('datetime', 'time'), ('datetime', 'timedelta'),
    ('datetime', 'timezone'), ('collections', 'OrderedDict'), ('collections', 'deque'),
    ('builtins', 'bytes'), ('copyreg', '_reconstructor'),
    # protocol 2 writes bytes (and the state of dates and times) as a call of _codecs.encode:
    ('_codecs', 'encode'),
})


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that loads only the classes it was told to, never arbitrary globals.

    ``pickle.loads`` would import and call anything a stored value names (os.system included);
    here any global outside ``allowed`` (plus a few plain standard types) is refused.
    """

    def __init__(self, file, allowed: frozenset):
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module, name):
        # Protocol 2 names Python 2 modules (__builtin__.set): check the names Python 3 loads.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in self._allowed or (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise PickleRefused(f'the stored value names {module}.{name}, which this table does not allow '
                            f'(add the class to the table\'s allowed=... classes if it is trusted)')


class _Pickle(ValueType):
    """Pickle (protocol 2, as earlier releases wrote); loads only ``allowed`` classes."""

    name = 'Pickle'
    options = ('allowed',)

    def bind(self, allowed=()):
        names = frozenset((cls.__module__, cls.__qualname__) for cls in allowed)

        def decode(data):
            return RestrictedUnpickler(io.BytesIO(data), names).load()

        return (lambda value: pickle.dumps(value, protocol=2)), decode


class _FlatBuffers(ValueType):
    """FlatBuffers: ``build(obj, builder)`` returns the root offset; ``cast(bytes)`` reads it back. A
    generated table passes ``root`` (a ``txaioetcd.fbs.FlatBuffersRoot``) instead: it builds, casts,
    and gives the catalog its root type and binary schema."""

    name = 'FlatBuffers'
    options = ('build', 'cast', 'root')

    def bind(self, build=None, cast=None, root=None):
        if root is not None:
            if build is not None or cast is not None:
                raise TypeError('a FlatBuffers table takes root=... or build= and cast=, not both')
            build, cast = root.build, root.cast
        if build is None or cast is None:
            raise TypeError('a FlatBuffers table needs build=(obj, builder) -> offset and cast=(bytes) -> obj')
        builder_class = flatbuffers.Builder

        def encode(value):
            builder = builder_class(0)
            builder.Finish(build(value, builder))
            return bytes(builder.Output())
        return encode, cast

    def describe(self, root=None, **_) -> dict:
        return root.describe() if root is not None else {}


VALUE_TYPES = {t.name: t for t in (_String(), _Binary(), _Oid(), _Uuid(), _Json(), _Cbor(), _Pickle(),
                                   _FlatBuffers())}
