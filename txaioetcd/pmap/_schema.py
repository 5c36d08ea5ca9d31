"""Schema: a named set of tables (and their indexes) that several services share, checked against
the catalog in slot 0 so that two services never read one slot two different ways.

The catalog record of a slot lives at ``db prefix + b'\\0\\0' + >H slot`` (the layout zlmdb used) and
holds a CBOR map: name, slot, key type, value type, indexes (name → slot, unique, nullable).
"""

from __future__ import annotations

import struct

import cbor2

from .._defer import returns_deferred
from ..errors import SchemaMismatch
from ._map import PersistentMap

__all__ = ('Schema', 'CATALOG_SLOT', 'catalog_key')

CATALOG_SLOT = 0
_SLOT = struct.Struct('>H')
_COMPARED = ('name', 'key_type', 'value_type', 'indexes')


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
    async def attach(self, txn) -> list:
        """Record each table in the catalog, or check it against the record (in a write transaction).
        → the names of the tables newly recorded (or completed, for records of earlier releases).
        Raises SchemaMismatch naming slot and difference."""
        slots = [catalog_key(table.slot) for table in self.tables.values()]
        stored = await txn.read_records(slots, _CATALOG, slots)
        recorded = []
        for (name, table), key, data in zip(self.tables.items(), slots, stored):
            wanted = table.describe()
            if data is None:
                txn.put_record(key, _CATALOG, key, wanted, cbor2.dumps(wanted))
                recorded.append(name)
                continue
            have = cbor2.loads(data)
            # Records of zlmdb / earlier txaioetcd hold only name and slot (plus oid, creator ...):
            # check what they hold, then complete them with what this service knows.
            differences = [f'{field}: catalog has {have[field]!r}, this service has {wanted[field]!r}'
                           for field in _COMPARED if field in have and have[field] != wanted[field]]
            if differences:
                raise SchemaMismatch(f'slot {table.slot} ({name}) does not match the catalog: '
                                     + '; '.join(differences) + '. Migrate the data or use another slot')
            if any(field not in have for field in _COMPARED):
                upgraded = dict(have, **wanted)
                txn.put_record(key, _CATALOG, key, upgraded, cbor2.dumps(upgraded))
                recorded.append(name)
        return recorded


class _Catalog:
    """Stands in for a table when the transaction names catalog keys in errors."""

    name = 'catalog'
    indexes: dict = {}


_CATALOG = _Catalog()
