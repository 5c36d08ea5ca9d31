"""What a service schema declares: its tables, slots, key types and indexes, read from the declared
attributes of its binary schema (``txaioetcd.fbs`` lists them), checked for clashes; and the Python
names flatc gives their fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..pmap._keys import KEY_TYPES
from ._reflection import BinarySchema, SchemaField, SchemaObject, read_binary_schema

__all__ = ('CodegenError', 'IndexPlan', 'TablePlan', 'plan_tables', 'method_name', 'attribute_name',
           'schema_from_binary')

_UNSIGNED = {'UByte', 'UShort', 'UInt', 'ULong'}


class CodegenError(Exception):
    """The schema cannot be turned into tables (the message names file, table, field and attribute),
    or the compiler is missing or failed."""


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
            stray = [a for a in attrs if a.startswith('pmap_')] + \
                [f'{a} (on {f.name})' for f in obj.fields for a in f.attributes if a.startswith('pmap_')]
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
    elif t.base == 'Vector' and t.element == 'UByte' and t.index < 0:
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

def name_words(name: str) -> list:
    return [w for w in re.split(r'_+', name) if w]


def method_name(field_name: str) -> str:
    """flatc's accessor method for a field (UpperCamel): ``customer_id`` → ``CustomerId``."""
    return ''.join(w[0].upper() + w[1:] for w in name_words(field_name))


def attribute_name(field_name: str) -> str:
    """flatc's object-API attribute for a field (lowerCamel): ``customer_id`` → ``customerId``."""
    upper = method_name(field_name)
    return upper[0].lower() + upper[1:]


def _map_class(key_type: str, value: str) -> str:
    return 'Map' + ''.join(key_type.split(',')) + value


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
