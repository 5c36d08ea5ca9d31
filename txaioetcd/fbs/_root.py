"""The root type of a generated FlatBuffers table: how its records are written and read, and the binary
schema the catalog checks them against.

Writes take the object-API instance (``OrderT``) and pack it; reads wrap the stored bytes in the
generated accessor (``Order``) without copying or decoding anything until a field is asked for.
"""

from __future__ import annotations

import hashlib
import struct

from ._reflection import BinarySchema, read_binary_schema

__all__ = ('FlatBuffersRoot', 'ubyte_vector')

_ROOT = struct.Struct('<I')


class FlatBuffersRoot:
    """``name`` (e.g. 'shop.Order') in the binary schema ``bfbs``; ``accessor`` and ``native`` are the
    generated reader class and object-API class of that table."""

    def __init__(self, name: str, bfbs: bytes, accessor: type, native: type):
        self.name = name
        self.bfbs = bytes(bfbs)
        self.sha256 = hashlib.sha256(self.bfbs).hexdigest()
        self.accessor = accessor
        self.native = native
        self._schema: BinarySchema | None = None

    def __repr__(self):
        return f'<FlatBuffersRoot {self.name} sha256={self.sha256[:12]}>'

    @property
    def schema(self) -> BinarySchema:
        """The parsed binary schema (parsed on first use: only db.attach needs it)."""
        if self._schema is None:
            self._schema = read_binary_schema(self.bfbs)
        return self._schema

    def build(self, obj, builder) -> int:
        if not isinstance(obj, self.native):
            hint = ' (call .unpack() on a record read back for a copy to change and write)' \
                if isinstance(obj, self.accessor) else ''
            raise TypeError(f'a {self.name} record is written as {with_article(self.native.__name__)}, not '
                            f'{with_article(type(obj).__name__)}{hint}')
        return obj.Pack(builder)

    def cast(self, data: bytes):
        reader = self.accessor()
        reader.Init(data, _ROOT.unpack_from(data, 0)[0])
        return reader

    def describe(self) -> dict:
        """What the catalog records of the value type."""
        return {'root_type': self.name, 'bfbs': self.bfbs, 'bfbs_sha256': self.sha256}


def with_article(word: str) -> str:
    """'an Order', 'a Customer': for messages and generated docstrings."""
    return ('an ' if word[:1].lower() in 'aeiou' else 'a ') + word


def ubyte_vector(reader, vtable_offset: int) -> bytes | None:
    """The bytes of a ``[ubyte]`` field of a generated accessor, sliced from its buffer (None if absent)."""
    tab = reader._tab
    o = tab.Offset(vtable_offset)
    if not o:
        return None
    start = tab.Vector(o)
    return bytes(tab.Bytes[start:start + tab.VectorLen(o)])
