"""Schema: a named set of tables (and their indexes) that several services share, checked against
the catalog in slot 0 so that two services never read one slot two different ways.

The catalog record of a slot lives at ``db prefix + b'\\0\\0' + >H slot`` (the layout zlmdb used) and
holds a CBOR map: name, slot, key type, value type, indexes (name → slot, unique, nullable); a
generated FlatBuffers table adds its root type, binary schema (``.bfbs``) and its sha256, and a service
whose schema is a compatible evolution of the recorded one updates the record (see txaioetcd.fbs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cbor2
from twisted.logger import Logger

from .._defer import returns_deferred
from ..errors import SchemaMismatch
from ..fbs import BinarySchemaError, evolution_problems, read_binary_schema
from ..keyset import prefix_range_end
from ._map import PersistentMap

__all__ = ('Schema', 'CatalogVerdict', 'CATALOG_SLOT', 'catalog_key', 'compare_record')

CATALOG_SLOT = 0
_SLOT = struct.Struct('>H')
_COMPARED = ('name', 'key_type', 'value_type', 'indexes')
_log = Logger()


def catalog_key(slot: int) -> bytes:
    """Slot-relative key of a slot's catalog record."""
    return _SLOT.pack(CATALOG_SLOT) + _SLOT.pack(slot)


class Schema:
    """Tables by name. Declare them as class attributes of a subclass, or pass them as keywords::

        class Accounts(Schema):
            users = MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)
            users_by_name = MapStringUuid(2)
            users.attach_index('by_name', users_by_name, lambda user: user.name)

    A table's catalog name is its attribute name.
    """

    def __init__(self, **tables: PersistentMap):
        found = {name: value for klass in reversed(type(self).__mro__)
                 for name, value in vars(klass).items() if isinstance(value, PersistentMap)}
        found.update(tables)
        by_slot = {}
        for name, table in found.items():
            if not isinstance(table, PersistentMap):
                raise TypeError(f'Schema: {name} is not a persistent map: {table!r}')
            other = by_slot.get(table.slot)
            if other is not None and other is not table:
                raise ValueError(f'Schema: tables {by_slot[table.slot].name} and {name} both use slot '
                                 f'{table.slot}')
            table.name = name
            by_slot[table.slot] = table
        self.tables = dict(sorted(found.items(), key=lambda item: item[1].slot))
        for table in self.tables.values():
            for index in table.indexes.values():
                if index.map.slot not in by_slot:
                    raise ValueError(f'Schema: index {index.name} of {table.name} uses {index.map.name} '
                                     f'(slot {index.map.slot}), which is not in the schema')

    def __getattr__(self, name):
        try:
            return self.__dict__['tables'][name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self):
        return iter(self.tables.values())

    def __repr__(self):
        return f'<{type(self).__name__} ' + ', '.join(f'{n}@{t.slot}' for n, t in self.tables.items()) + '>'

    @returns_deferred
    async def check(self, txn) -> list:
        """Compare each table with its catalog record, writing nothing → a ``CatalogVerdict`` per table
        (what ``attach`` would do: record it, accept it, update the record, or refuse)."""
        slots = [catalog_key(table.slot) for table in self.tables.values()]
        stored = await txn.read_records(slots, _CATALOG, slots)
        verdicts = [compare_record(name, table, data) for (name, table), data in zip(self.tables.items(), stored)]
        if any(verdict.status == 'new' for verdict in verdicts):
            # A table keeps its slot: one recorded elsewhere under the same name has moved. The scan
            # is part of the transaction's reads, so a concurrent attach conflicts and is retried.
            elsewhere = await _recorded_slots(txn)
            verdicts = [_moved(verdict, elsewhere) for verdict in verdicts]
        return verdicts

    @returns_deferred
    async def attach(self, txn) -> list:
        """Record each table in the catalog, or check it against the record (in a write transaction).
        → the names of the tables newly recorded, completed (records of earlier releases) or updated
        to a compatible newer FlatBuffers schema. Raises SchemaMismatch naming slot and difference."""
        verdicts = await self.check(txn)
        refused = [verdict.detail for verdict in verdicts if verdict.status == 'mismatch']
        if refused:
            raise SchemaMismatch('; and '.join(refused))
        recorded = []
        for verdict in verdicts:
            if verdict.status == 'upgraded':
                _log.info('{detail}: recorded it', detail=verdict.detail)
            elif verdict.status == 'older':
                _log.info('{detail}', detail=verdict.detail)
            if verdict.record is not None:
                key = catalog_key(verdict.slot)
                txn.put_record(key, _CATALOG, key, verdict.record, cbor2.dumps(verdict.record))
                recorded.append(verdict.table)
        return recorded


@dataclass(frozen=True)
class CatalogVerdict:
    """How a table compares with its catalog record. ``status``: 'new' (no record), 'same', 'completed'
    (a record of an earlier release, to complete), 'upgraded' (this service has a compatible newer
    FlatBuffers schema), 'older' (the catalog holds a compatible newer one), 'mismatch'. ``record`` is
    what attach writes (None: nothing); ``detail`` says what differs."""
    table: str
    slot: int
    status: str
    record: dict | None = None
    detail: str = ''


def compare_record(name: str, table, data: bytes | None) -> CatalogVerdict:
    """The verdict for ``table`` (called ``name``) against the stored catalog record ``data``."""
    wanted = table.describe()
    if data is None:
        return CatalogVerdict(name, table.slot, 'new', wanted)
    have = cbor2.loads(data)
    where = f'slot {table.slot} ({name})'
    # Records of zlmdb / earlier txaioetcd hold only name and slot (plus oid, creator ...): check what
    # they hold, then complete them with what this service knows.
    differences = [f'{field}: catalog has {have[field]!r}, this service has {wanted[field]!r}'
                   for field in _COMPARED if field in have and have[field] != wanted[field]]
    if differences:
        return CatalogVerdict(name, table.slot, 'mismatch', detail=f'{where} does not match the catalog: '
                              + '; '.join(differences) + '. Migrate the data or use another slot')
    status, detail = 'same', ''
    if 'bfbs' in have and 'bfbs' in wanted and have['bfbs_sha256'] != wanted['bfbs_sha256']:
        status, detail = _evolution(where, table, have, wanted)
        if status == 'mismatch':
            return CatalogVerdict(name, table.slot, status, detail=detail)
    if 'bfbs' in have and status != 'upgraded':
        # Keep the stored binary schema: it is the newer one, an equivalent one, or this service has
        # hand-written build/cast and cannot say more than the value type.
        wanted = dict(wanted, **{field: have[field] for field in _BINARY_SCHEMA})
    if all(have.get(field) == wanted[field] for field in wanted):
        return CatalogVerdict(name, table.slot, status, detail=detail)
    return CatalogVerdict(name, table.slot, status if status != 'same' else 'completed', dict(have, **wanted),
                          detail)


_BINARY_SCHEMA = ('root_type', 'bfbs', 'bfbs_sha256')


async def _recorded_slots(txn) -> dict:
    """Table name → slot, of every catalog record (records that are not CBOR maps are skipped)."""
    start = catalog_key(CATALOG_SLOT)[:2]
    found = {}
    async for slot_key, data in txn.scan_records(start, prefix_range_end(start), None, False, False, _CATALOG):
        try:
            record = cbor2.loads(data)
        except Exception:      # not ours to judge here; compare_record reports a slot it is asked about
            continue
        if isinstance(record, dict) and isinstance(record.get('name'), str):
            found.setdefault(record['name'], _SLOT.unpack(slot_key[2:4])[0])
    return found


def _moved(verdict: CatalogVerdict, elsewhere: dict) -> CatalogVerdict:
    slot = elsewhere.get(verdict.table)
    if verdict.status != 'new' or slot is None or slot == verdict.slot:
        return verdict
    return CatalogVerdict(verdict.table, verdict.slot, 'mismatch', detail=(
        f'slot {verdict.slot} ({verdict.table}): the catalog records table {verdict.table} in slot {slot}, this '
        f'service has it in slot {verdict.slot}; a table keeps its slot. Migrate the data, or give the table '
        f'another name'))


def _evolution(where: str, table, have: dict, wanted: dict) -> tuple:
    """Two different binary schemas of one FlatBuffers table → (status, detail)."""
    old_sha, new_sha = have['bfbs_sha256'][:12], wanted['bfbs_sha256'][:12]
    if have['root_type'] != wanted['root_type']:
        return 'mismatch', (f'{where} does not match the catalog: root type: catalog has {have["root_type"]}, '
                            f'this service has {wanted["root_type"]}. Migrate the data or use another slot')
    root = wanted['root_type']
    try:
        theirs = read_binary_schema(have['bfbs'])
    except BinarySchemaError as error:
        return 'mismatch', f'{where}: the catalog\'s binary schema cannot be read: {error}'
    ours = table.value_options['root'].schema
    forward = evolution_problems(theirs, ours, root)
    backward = evolution_problems(ours, theirs, root)
    if not forward and backward:
        return 'upgraded', (f'{where}: this service\'s {root} (sha256 {new_sha}) is a compatible evolution of '
                            f'the catalog\'s (sha256 {old_sha})')
    if not forward:
        return 'same', f'{where}: an equivalent {root} (renames or comments only); the record is kept'
    if not backward:
        return 'older', (f'{where}: the catalog holds a newer compatible version of {root} (sha256 {old_sha}) '
                         f'than this service (sha256 {new_sha}); the record is kept')
    return 'mismatch', (f'{where}: this service\'s {root} (sha256 {new_sha}) is not a compatible evolution of '
                        f'the catalog\'s (sha256 {old_sha}): ' + '; '.join(forward)
                        + '. Migrate the data or use another slot')


class _Catalog:
    """Stands in for a table when the transaction names catalog keys in errors."""

    name = 'catalog'
    indexes: dict = {}


_CATALOG = _Catalog()
