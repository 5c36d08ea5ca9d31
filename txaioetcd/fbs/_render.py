"""The tables module ``schema gen`` writes for a service schema: per table a reader class (flatc's, with
getters that find the vtable once), an object-API class (flatc's, with Pack and _UnPack written out),
key functions for its indexes, the table and index maps, and a ``pmap.Schema`` of them all.
"""

from __future__ import annotations

import base64

from ._plan import IndexPlan, TablePlan, attribute_name, method_name, name_words
from ._reflection import BinarySchema, SchemaField
from ._root import with_article

__all__ = ('render_module',)


def _doc(lines) -> str:
    return ' '.join(' '.join(line.split()) for line in lines).strip()


def _key_function(plan: TablePlan, index: IndexPlan) -> str:
    field = index.field
    fn = f'_{plan.name}_{index.name}'
    native, accessor = f'{plan.short}T', plan.short
    attr, method = attribute_name(field.name), method_name(field.name)
    kind = index.field.type.base
    if kind == 'String':
        hint = 'str | None'
        read = (f'    value = record.{method}()\n'
                f'    return value.decode(\'utf-8\') if value is not None else None\n')
        write = f'        return record.{attr}\n'
    elif kind == 'Vector':
        hint = 'uuid.UUID | None' if index.key_type == 'Uuid' else 'bytes | None'
        convert = (lambda v: f'uuid.UUID(bytes={v})') if index.key_type == 'Uuid' else (lambda v: v)
        read = (f'    value = ubyte_vector(record, {4 + 2 * field.id})\n'
                f'    return {convert("value")} if value is not None else None\n')
        write = (f'        value = record.{attr}\n'
                 f'        return {convert("bytes(value)")} if value is not None else None\n')
    else:
        hint = 'int'
        read = f'    return record.{method}()\n'
        write = f'        return record.{attr}\n'
    return (f'def {fn}(record: {native} | {accessor}) -> {hint}:\n'
            f'    """The {index.name} value of {with_article(plan.short)} record: its {field.name} (of the object written '
            f'or of the record read)."""\n'
            f'    if isinstance(record, {native}):\n{write}{read}')


def _accessor_class(plan: TablePlan, schema: BinarySchema) -> str:
    doc = _doc(plan.obj.documentation) or f'{with_article(plan.obj.name)} record.'
    doc = doc[0].upper() + doc[1:]
    lines = [f'class {plan.short}(_fb.{plan.short}):',
             f'    """{doc}',
             '',
             f'    The zero-copy reader of a stored {plan.obj.name} (what ``{plan.name}[txn, key]`` gives): '
             f'fields are',
             f'    read from the stored bytes when asked for. ``unpack()`` gives {with_article(plan.short + "T")} to change '
             f'and write.',
             '',
             '    Fields:']
    for field in plan.obj.fields:
        if field.deprecated or field.type.base == 'UType':
            continue
        text = _doc(field.documentation)
        lines.append(f'        {method_name(field.name)}(): {schema.type_name(field.type)}'
                     + (f' -- {text}' if text else ''))
    lines += ['    """', '',
              "    __slots__ = ('_buf', '_pos', '_vt', '_vtlen')", '',
              '    def Init(self, buf, pos: int):',
              '        # What flatc\'s Init does, plus the vtable found once: the getters below read a field',
              '        # with two unpack_from calls instead of flatc\'s chain of Table methods.',
              '        self._tab = _Table(buf, pos)',
              '        self._buf, self._pos = buf, pos',
              '        self._vt = vt = pos - _I32(buf, pos)[0]',
              '        self._vtlen = _U16(buf, vt)[0]', '']
    for field in plan.obj.fields:
        getter = _fast_getter(field)
        if getter:
            lines += getter + ['']
    lines += [f'    def unpack(self) -> {plan.short}T:',
              '        """A mutable copy (object API) of this record."""',
              f'        native = {plan.short}T()',
              '        native._UnPack(self)',
              '        return native']
    return '\n'.join(lines) + '\n'


# -- the object-API class of a table: flatc's, with Pack and _UnPack written out for this table

# Builder method suffixes and byte sizes of scalars (flatc's Python Pack calls the same methods).
_BUILDER = {'Bool': ('Bool', 1), 'Byte': ('Int8', 1), 'UByte': ('Uint8', 1), 'UType': ('Uint8', 1),
            'Short': ('Int16', 2), 'UShort': ('Uint16', 2), 'Int': ('Int32', 4), 'UInt': ('Uint32', 4),
            'Long': ('Int64', 8), 'ULong': ('Uint64', 8), 'Float': ('Float32', 4), 'Double': ('Float64', 8)}


def _field_kind(field: SchemaField, schema: BinarySchema) -> str | None:
    """How a field is packed and unpacked here; None: a kind left to flatc's own code."""
    t = field.type
    if t.base in _BUILDER:
        return 'scalar'
    if t.base == 'String':
        return 'string'
    if t.base == 'Obj':
        return 'struct' if schema.objects[t.index].is_struct else 'table'
    if t.base == 'Union':
        return 'union'
    if t.base == 'Vector':
        if t.element == 'UByte' and t.index < 0:      # not a vector of a ubyte enum
            return 'bytes'
        if t.element in _BUILDER:
            return 'scalars'
        if t.element == 'String':
            return 'strings'
        if t.element == 'Obj':
            return 'structs' if schema.objects[t.index].is_struct else 'tables'
    return None


def _native_class(plan: TablePlan, schema: BinarySchema) -> str | None:
    """``<Table>T``: flatc's object-API class with a Pack that writes [ubyte] fields in one copy and an
    _UnPack that reads them as bytes and uses the fast getters; the same bytes as flatc's Pack."""
    fields = [f for f in plan.obj.fields if not f.deprecated]
    kinds = {f.name: _field_kind(f, schema) for f in fields}
    if None in kinds.values():
        return None          # a kind we do not write out (e.g. 64-bit vectors): flatc's class as it is
    short = plan.short
    pack, add, unpack = [], [], []
    for f in fields:
        kind, attr, method, slot = kinds[f.name], attribute_name(f.name), method_name(f.name), f.id
        value = f'self.{attr}'
        local = f'_{attr}'
        if kind == 'scalar':
            suffix = _BUILDER[f.type.base][0]
            if f.optional:
                add += [f'        if {value} is not None:',
                        f'            builder.Prepend{suffix}Slot({slot}, {value}, None)']
            else:
                add.append(f'        builder.Prepend{suffix}Slot({slot}, {value}, {repr(f.default)})')
            unpack.append(f'        self.{attr} = reader.{method}()')
            continue
        if kind == 'struct':
            add += [f'        if {value} is not None:',
                    f'            builder.PrependStructSlot({slot}, {value}.Pack(builder), 0)']
        else:
            add += [f'        if {value} is not None:',
                    f'            builder.PrependUOffsetTRelativeSlot({slot}, {local}, 0)']
        if kind == 'string':
            pack += [f'        if {value} is not None:',
                     f'            {local} = builder.CreateString({value})']
            unpack += [f'        value = reader.{method}()',
                       f"        self.{attr} = value.decode('utf-8') if value is not None else None"]
        elif kind == 'bytes':
            pack += [f'        if {value} is not None:',
                     f'            {local} = builder.CreateByteVector(bytes({value}))']
            unpack.append(f'        self.{attr} = ubyte_vector(reader, {4 + 2 * slot})')
        elif kind in ('table', 'union'):
            pack += [f'        if {value} is not None:',
                     f'            {local} = {value}.Pack(builder)']
            if kind == 'table':
                native = schema.objects[f.type.index].name.rsplit('.', 1)[-1] + 'T'
                unpack += [f'        value = reader.{method}()',
                           f'        self.{attr} = _fb.{native}.InitFromObj(value) if value is not None else None']
            else:
                creator = schema.enums[f.type.index].name.rsplit('.', 1)[-1] + 'Creator'
                unpack.append(f'        self.{attr} = _fb.{creator}(self.{attr}Type, reader.{method}())')
        elif kind == 'struct':
            native = schema.objects[f.type.index].name.rsplit('.', 1)[-1] + 'T'
            unpack += [f'        value = reader.{method}()',
                       f'        self.{attr} = _fb.{native}.InitFromObj(value) if value is not None else None']
        else:       # vectors of scalars, strings, tables, structs
            if kind == 'scalars':
                suffix, size = _BUILDER[f.type.element]
                items = [f'            builder.StartVector({size}, len({value}), {size})',
                         f'            for item in reversed({value}):',
                         f'                builder.Prepend{suffix}(item)']
                element = f'reader.{method}(i)'
            elif kind == 'structs':
                struct = schema.objects[f.type.index]
                items = [f'            builder.StartVector({struct.bytesize}, len({value}), {struct.minalign})',
                         f'            for item in reversed({value}):',
                         '                item.Pack(builder)']
                element = f'_fb.{struct.name.rsplit(".", 1)[-1]}T.InitFromObj(reader.{method}(i))'
            else:
                make = 'builder.CreateString(item)' if kind == 'strings' else 'item.Pack(builder)'
                items = [f'            offsets = [{make} for item in {value}]',
                         '            builder.StartVector(4, len(offsets), 4)',
                         '            for offset in reversed(offsets):',
                         '                builder.PrependUOffsetTRelative(offset)']
                element = f"reader.{method}(i).decode('utf-8')" if kind == 'strings' else \
                    f'_fb.{schema.objects[f.type.index].name.rsplit(".", 1)[-1]}T.InitFromObj(reader.{method}(i))'
            pack += [f'        if {value} is not None:', *items, f'            {local} = builder.EndVector()']
            unpack += [f'        if not reader.{method}IsNone():',
                       f'            self.{attr} = [{element} for i in range(reader.{method}Length())]']
    lines = [f'class {short}T(_fb.{short}T):',
             f'    """The object API of {plan.obj.name}: build one to write, or get one from ``unpack()``.',
             '',
             f"    flatc's {short}T, with its Pack and _UnPack written out for this table (the same bytes, in",
             '    less time); a [ubyte] field may be given as bytes, and unpacks as bytes; strings in vectors',
             '    unpack as str, like string fields."""',
             '',
             '    @classmethod',
             f'    def InitFromObj(cls, reader) -> {short}T:',
             '        native = cls()',
             '        native._UnPack(reader)',
             '        return native',
             '',
             '    def _UnPack(self, reader):',
             '        if reader is None:',
             '            return',
             *unpack,
             '',
             '    def Pack(self, builder) -> int:',
             *pack,
             f'        builder.StartObject({len(plan.obj.fields)})',
             *add,
             '        return builder.EndObject()']
    return '\n'.join(lines) + '\n'


# struct formats of the scalars a fast getter reads (flatc's Python getters return the same values)
_FORMATS = {'Bool': '?', 'Byte': 'b', 'UByte': 'B', 'Short': 'h', 'UShort': 'H', 'Int': 'i', 'UInt': 'I',
            'Long': 'q', 'ULong': 'Q', 'Float': 'f', 'Double': 'd'}


_UNPACKERS = {'?': '_BOOL', 'b': '_I8', 'B': '_U8', 'h': '_I16', 'H': '_U16', 'i': '_I32', 'I': '_U32',
              'q': '_I64', 'Q': '_U64', 'f': '_F32', 'd': '_F64'}


def _unpacker(fmt: str) -> str:
    return _UNPACKERS[fmt]


def _fast_getter(field: SchemaField) -> list:
    """A getter for a scalar or string field of the root table, returning what flatc's returns."""
    if field.deprecated:
        return []
    base, slot, name = field.type.base, 4 + 2 * field.id, method_name(field.name)
    head = [f'    def {name}(self):',
            f'        if {slot} < self._vtlen:',
            f'            o = _U16(self._buf, self._vt + {slot})[0]',
            '            if o:']
    if base in _FORMATS:
        return head + [f'                return {_unpacker(_FORMATS[base])}(self._buf, self._pos + o)[0]',
                       f'        return {field.default!r}']
    if base == 'String':
        return head + ['                p = self._pos + o',
                       '                p += _U32(self._buf, p)[0]',
                       '                return self._buf[p + 4:p + 4 + _U32(self._buf, p)[0]]',
                       '        return None']
    return []


def render_module(fbs_label: str, module_stem: str, schema: BinarySchema, bfbs: bytes, plans: list,
                  exports: list, flatc_release: str) -> str:
    """The Python source of the tables module (deterministic for the same inputs)."""
    class_name = ''.join(w[0].upper() + w[1:] for w in name_words(module_stem)) or 'Tables'
    encoded = base64.b64encode(bfbs).decode('ascii')
    chunks = [encoded[i:i + 96] for i in range(0, len(encoded), 96)]
    needs_uuid = any(i.key_type == 'Uuid' for p in plans for i in p.indexes)
    needs_vector = any(f.type.base == 'Vector' and f.type.element == 'UByte' and f.type.index < 0
                       and not f.deprecated for p in plans for f in p.obj.fields)
    table_list = ', '.join(f'{p.name} (slot {p.slot})' for p in plans)
    members = [name for p in plans for name in [p.name] + [f'{p.name}_{i.name}' for i in p.indexes]]
    out = [f'"""Tables of {fbs_label}, generated by ``python -m txaioetcd schema gen`` with flatc '
           f'{flatc_release}: do not edit.',
           '',
           f'Tables: {table_list}. Write object-API instances (``...T``); reads give zero-copy readers',
           'with ``unpack()``. Regenerate after changing the .fbs; ``schema gen --check`` tells when this is stale.',
           '"""',
           '',
           'from __future__ import annotations',
           '',
           'import base64']
    if needs_uuid:
        out.append('import uuid')
    fbs_imports = 'FlatBuffersRoot, ubyte_vector' if needs_vector else 'FlatBuffersRoot'
    formats = sorted({_FORMATS[f.type.base] for p in plans for f in p.obj.fields
                      if f.type.base in _FORMATS and not f.deprecated} | {'i', 'H', 'I'})
    out += ['import struct',
            '',
            'from flatbuffers.table import Table as _Table',
            '',
            'from txaioetcd import pmap',
            f'from txaioetcd.fbs import {fbs_imports}',
            '',
            'if __package__:',
            f'    from . import {module_stem}_generated as _fb',
            'else:',
            f'    import {module_stem}_generated as _fb',
            '',
            *[f"{_unpacker(fmt)} = struct.Struct('<{fmt}').unpack_from" for fmt in formats],
            '',
            f'__all__ = {tuple(sorted(exports + [n for p in plans for n in (p.short, p.short + "T")] + members + [class_name, "BFBS"]))!r}',
            '',
            'BFBS = base64.b64decode(',
            *[f"    '{chunk}'" for chunk in chunks],
            ')',
            f'"""The binary schema of {fbs_label} (what the catalog records and checks)."""',
            '']
    for name in exports:
        out.append(f'{name} = _fb.{name}')
    out.append('')
    for plan in plans:
        native = _native_class(plan, schema)
        if native is None:
            out += ['', f'{plan.short}T = _fb.{plan.short}T']
        else:
            out += ['', native]
        out += ['', _accessor_class(plan, schema)]
        for index in plan.indexes:
            out += ['', _key_function(plan, index)]
    out.append('')
    for plan in plans:
        root = f"FlatBuffersRoot('{plan.obj.name}', BFBS, {plan.short}, {plan.short}T)"
        out.append(f"{plan.name} = pmap.{plan.map_class}({plan.slot}, name='{plan.name}', root={root})")
        for index in plan.indexes:
            index_name = f'{plan.name}_{index.name}'
            out.append(f"{index_name} = pmap.{plan.index_map_class(index)}({index.slot}, name='{index_name}')")
            out.append(f"{plan.name}.attach_index('{index.name}', {index_name}, _{plan.name}_{index.name}, "
                       f"unique={index.unique}, nullable={index.nullable})")
    out += ['', '',
            f'class {class_name}(pmap.Schema):',
            f'    """The tables of {fbs_label}; ``await db.attach({class_name}())`` records or checks them in the '
            f'catalog.',
            '    Subclass it to add tables declared in Python."""',
            '']
    out += [f'    {member} = {member}' for member in members]
    return '\n'.join(out) + '\n'
