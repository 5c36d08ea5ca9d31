"""A FlatBuffers record as plain data (dicts, lists, numbers, strings), read with nothing but its binary
schema: what ``txaioetcd tables dump`` shows of a generated table when no generated classes are at hand.
Field names are the schema's; absent fields read their defaults (tables, strings and vectors: None).
"""

from __future__ import annotations

import struct

from flatbuffers import number_types as N
from flatbuffers.table import Table

from ._reflection import BinarySchema, SchemaObject, SchemaType

__all__ = ('to_plain',)

_FLAGS = {'Bool': N.BoolFlags, 'Byte': N.Int8Flags, 'UByte': N.Uint8Flags, 'UType': N.Uint8Flags,
          'Short': N.Int16Flags, 'UShort': N.Uint16Flags, 'Int': N.Int32Flags, 'UInt': N.Uint32Flags,
          'Long': N.Int64Flags, 'ULong': N.Uint64Flags, 'Float': N.Float32Flags, 'Double': N.Float64Flags}
_SIZES = {'Bool': 1, 'Byte': 1, 'UByte': 1, 'UType': 1, 'Short': 2, 'UShort': 2, 'Int': 4, 'UInt': 4,
          'Long': 8, 'ULong': 8, 'Float': 4, 'Double': 8}
_MAX_DEPTH = 64


def to_plain(schema: BinarySchema, root: str, data: bytes) -> dict:
    """The root table ``root`` of the finished buffer ``data`` as a dict."""
    table = Table(data, struct.unpack_from('<I', data, 0)[0])
    return _table(schema, schema.object(root), table, 0)


def _enum_label(schema, t: SchemaType, value):
    if t.index >= 0 and t.base in _FLAGS and t.base != 'UType':
        label = schema.enums[t.index].values.get(value)
        return label[0] if label else value
    return value


def _table(schema: BinarySchema, obj: SchemaObject, tab: Table, depth: int) -> dict:
    if depth > _MAX_DEPTH:
        raise ValueError(f'{obj.name}: nested deeper than {_MAX_DEPTH} tables')
    out = {}
    union_types = {}
    for field in obj.fields:
        if field.deprecated:
            continue
        t, o = field.type, tab.Offset(4 + 2 * field.id)
        if t.base in _FLAGS:
            value = tab.Get(_FLAGS[t.base], o + tab.Pos) if o else field.default
            if t.base == 'UType':
                union_types[field.name] = value
            out[field.name] = _enum_label(schema, t, value)
        elif not o:
            out[field.name] = None
        elif t.base == 'String':
            out[field.name] = tab.String(o + tab.Pos).decode('utf-8', 'replace')
        elif t.base == 'Obj':
            target = schema.objects[t.index]
            if target.is_struct:
                out[field.name] = _struct(schema, target, tab.Bytes, o + tab.Pos)
            else:
                out[field.name] = _table(schema, target, Table(tab.Bytes, tab.Indirect(o + tab.Pos)), depth + 1)
        elif t.base == 'Union':
            kind = union_types.get(field.name + '_type', 0)
            member = schema.enums[t.index].values.get(kind)
            if member is None or member[1] is None or member[1].base != 'Obj':
                out[field.name] = None
            else:
                inner = Table(bytearray(), 0)
                tab.Union(inner, o)
                out[field.name] = {'type': member[0], 'value': _table(schema, schema.objects[member[1].index],
                                                                       inner, depth + 1)}
        elif t.base == 'Vector':
            out[field.name] = _vector(schema, t, tab, o, depth)
        else:
            out[field.name] = f'<{t.base.lower()} field, not decoded>'
    return out


def _vector(schema, t: SchemaType, tab: Table, o: int, depth: int) -> list:
    start, count = tab.Vector(o), tab.VectorLen(o)
    element = t.element
    if element in _FLAGS:
        size = _SIZES[element]
        if element == 'UByte' and t.index < 0:
            return list(tab.Bytes[start:start + count])
        return [_enum_label(schema, SchemaType(element, index=t.index),
                            tab.Get(_FLAGS[element], start + i * size)) for i in range(count)]
    if element == 'String':
        return [tab.String(start + 4 * i).decode('utf-8', 'replace') for i in range(count)]
    if element == 'Obj':
        target = schema.objects[t.index]
        if target.is_struct:
            return [_struct(schema, target, tab.Bytes, start + i * target.bytesize) for i in range(count)]
        return [_table(schema, target, Table(tab.Bytes, tab.Indirect(start + 4 * i)), depth + 1)
                for i in range(count)]
    return [f'<vector of {element.lower()}, not decoded>']


def _struct(schema, obj: SchemaObject, buf, pos: int) -> dict:
    out = {}
    for field in obj.fields:
        t = field.type
        if t.base in _FLAGS:
            fmt = '<' + _FLAGS[t.base].packer_type.format.lstrip('<')
            out[field.name] = _enum_label(schema, t, struct.unpack_from(fmt, buf, pos + field.offset)[0])
        elif t.base == 'Obj':
            out[field.name] = _struct(schema, schema.objects[t.index], buf, pos + field.offset)
        elif t.base == 'Array' and t.element in _FLAGS:
            size = _SIZES[t.element]
            fmt = '<' + _FLAGS[t.element].packer_type.format.lstrip('<')
            out[field.name] = [struct.unpack_from(fmt, buf, pos + field.offset + i * size)[0]
                               for i in range(t.fixed_length)]
        else:
            out[field.name] = f'<{t.base.lower()} field, not decoded>'
    return out
