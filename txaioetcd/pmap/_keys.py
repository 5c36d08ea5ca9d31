"""Key types of persistent maps: Python keys ↔ bytes that sort like the keys.

One encoder per key type, used by tables, indexes and mirrors alike. The layouts are those of zlmdb
and the earlier txaioetcd (OID ``>Q``, UUID its 16 bytes, String UTF-8, Timestamp big-endian int64
nanoseconds), so existing data reads back. Composite keys concatenate their parts; a variable-length
part that is not the last one ends with a NUL byte, so that composite keys sort exactly like their
tuples (zlmdb's String-String keys did the same; see docs/design.md).
"""

from __future__ import annotations

import datetime
import struct
import uuid

__all__ = ('KeyType', 'OID', 'UUID', 'STRING', 'BINARY', 'TIMESTAMP', 'Composite', 'KEY_TYPES')

_Q = struct.Struct('>Q')
_MAX_OID = 2 ** 64 - 1
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class KeyType:
    """Encodes and decodes one kind of key. ``width`` is the byte length, or None when variable."""

    name = ''
    width: int | None = None
    python_type = ''

    def encode(self, key) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes):
        raise NotImplementedError

    def __repr__(self):
        return self.name


class _Oid(KeyType):
    name, width, python_type = 'Oid', 8, 'int in 0 … 2**64-1'

    def encode(self, key) -> bytes:
        if type(key) is not int or not 0 <= key <= _MAX_OID:
            raise TypeError(f'an OID key is an int in 0 … 2**64-1, not {key!r}')
        return _Q.pack(key)

    def decode(self, data: bytes) -> int:
        return _Q.unpack(data)[0]


class _Uuid(KeyType):
    name, width, python_type = 'Uuid', 16, 'uuid.UUID'

    def encode(self, key) -> bytes:
        if not isinstance(key, uuid.UUID):
            raise TypeError(f'a UUID key is a uuid.UUID, not {type(key).__name__} {key!r}')
        return key.bytes

    def decode(self, data: bytes) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(data))


class _String(KeyType):
    name, python_type = 'String', 'str'

    def encode(self, key) -> bytes:
        if not isinstance(key, str):
            raise TypeError(f'a String key is a str, not {type(key).__name__} {key!r}')
        return key.encode('utf-8')

    def decode(self, data: bytes) -> str:
        return bytes(data).decode('utf-8')


class _Binary(KeyType):
    name, python_type = 'Binary', 'bytes'

    def encode(self, key) -> bytes:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f'a Binary key is bytes, not {type(key).__name__} {key!r}')
        return bytes(key)

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class _Timestamp(KeyType):
    """Nanoseconds since the Unix epoch (an int >= 0), or an aware datetime; decodes to the int."""

    name, width, python_type = 'Timestamp', 8, 'int nanoseconds since 1970 (or an aware datetime)'

    def encode(self, key) -> bytes:
        if isinstance(key, datetime.datetime):
            if key.tzinfo is None:
                raise TypeError(f'a Timestamp key needs an aware datetime (with tzinfo), not {key!r}')
            delta = key - _EPOCH
            key = (delta.days * 86400 + delta.seconds) * 10 ** 9 + delta.microseconds * 1000
        if type(key) is not int or not 0 <= key < 2 ** 63:
            raise TypeError(f'a Timestamp key is an int of nanoseconds since 1970 (>= 0), not {key!r}')
        return _Q.pack(key)

    def decode(self, data: bytes) -> int:
        return _Q.unpack(data)[0]


OID = _Oid()
UUID = _Uuid()
STRING = _String()
BINARY = _Binary()
TIMESTAMP = _Timestamp()

KEY_TYPES = {t.name: t for t in (OID, UUID, STRING, BINARY, TIMESTAMP)}


class Composite(KeyType):
    """A tuple key of two or three parts, encoded part after part.

    Fixed-width parts are written as they are. A variable part that is not last is NUL-terminated,
    so it may not contain NUL itself (String and Binary parts are refused if they do); the last part
    takes the rest of the bytes. Byte order therefore equals tuple order.
    """

    def __init__(self, *parts: KeyType):
        if not 2 <= len(parts) <= 3:
            raise ValueError('a composite key has two or three parts')
        self.parts = parts
        self.name = ''.join(p.name for p in parts)
        widths = [p.width for p in parts]
        self.width = sum(widths) if None not in widths else None
        self.python_type = 'tuple (' + ', '.join(p.python_type for p in parts) + ')'

    def encode(self, key) -> bytes:
        if not isinstance(key, tuple) or len(key) != len(self.parts):
            raise TypeError(f'a {self.name} key is a {self.python_type}, not {key!r}')
        out = []
        last = len(self.parts) - 1
        for i, (part, value) in enumerate(zip(self.parts, key)):
            data = part.encode(value)
            if part.width is None and i < last:
                if b'\0' in data:
                    raise ValueError(f'part {i} of a {self.name} key may not contain a NUL byte: {value!r}')
                data += b'\0'
            out.append(data)
        return b''.join(out)

    def decode(self, data: bytes) -> tuple:
        values = []
        pos = 0
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            if i == last:
                piece = data[pos:]
            elif part.width is not None:
                piece = data[pos:pos + part.width]
                pos += part.width
            else:
                end = data.index(b'\0', pos)
                piece = data[pos:end]
                pos = end + 1
            if part.width is not None and len(piece) != part.width:
                raise ValueError(f'{self.name} key bytes too short for part {i} ({part.name})')
            values.append(part.decode(piece))
        return tuple(values)

    def prefix(self, values: tuple) -> bytes:
        """Bytes of the first ``len(values)`` parts, for selecting every key that starts with them."""
        if not isinstance(values, tuple) or not 0 < len(values) < len(self.parts):
            raise TypeError(f'a {self.name} key prefix is a tuple of 1 … {len(self.parts) - 1} parts, '
                            f'not {values!r}')
        out = []
        for i, value in enumerate(values):
            part = self.parts[i]
            data = part.encode(value)
            if part.width is None:
                if b'\0' in data:
                    raise ValueError(f'part {i} of a {self.name} key may not contain a NUL byte: {value!r}')
                data += b'\0'
            out.append(data)
        return b''.join(out)
