"""Secondary indexes: a second map from an indexed value to the record key, kept in the same etcd
transaction as the records.

A unique index stores ``value → record key``; a non-unique one stores ``(value, record key) → record
key`` in a composite-key map, so equal values never collide. Entry values are the record key's own
key encoding, which is byte-identical to the UUID / OID / String value encodings that zlmdb and the
earlier txaioetcd index maps (``MapStringUuid`` ...) used.
"""

from __future__ import annotations

from .._defer import returns_deferred
from ..keyset import prefix_range_end
from ._keys import Composite

__all__ = ('Index',)

_PAGE = 100


class Index:
    """One index of a table; created by ``table.attach_index(...)``."""

    def __init__(self, name: str, table, index_map, fkey, unique: bool, nullable: bool):
        if not callable(fkey):
            raise TypeError(f'index {name!r}: fkey must be a function of the record, not {fkey!r}')
        if index_map is table:
            raise ValueError(f'index {name!r}: the index map must be another table than {table.name}')
        record_type = table.key_type.name
        if index_map.value_type.name not in (record_type, 'Binary'):
            raise TypeError(f'index {name!r}: {index_map.name} stores {index_map.value_type.name} values, '
                            f'but entries hold {table.name} keys ({record_type}); use a map whose value '
                            f'type is {record_type}, e.g. Map...{record_type}')
        if not unique:
            key_type = index_map.key_type
            if not isinstance(key_type, Composite) or key_type.parts[-1].name != record_type:
                raise TypeError(f'index {name!r}: a non-unique index needs a composite key ending in the '
                                f'record key ({record_type}), e.g. Map<Value>{record_type}{record_type}; '
                                f'{index_map.name} has {key_type.name} keys')
        self.name = name
        self.table = table
        self.map = index_map
        self.fkey = fkey
        self.unique = unique
        self.nullable = nullable

    def __repr__(self):
        kind = 'unique' if self.unique else 'non-unique'
        return f'<Index {self.name} of {self.table.name} in {self.map.name}, {kind}>'

    def describe(self) -> dict:
        return {'slot': self.map.slot, 'unique': self.unique, 'nullable': self.nullable}

    def value_of(self, obj):
        """The indexed value of a record (None: no entry)."""
        if obj is None:
            return None
        value = self.fkey(obj)
        if isinstance(value, tuple) and any(part is None for part in value):
            return None
        return value

    def entry_key(self, value, record_key) -> bytes:
        """Slot-relative key of the entry for ``value`` pointing at ``record_key``."""
        if self.unique:
            return self.map.encode_key(value)
        parts = value if isinstance(value, tuple) else (value,)
        return self.map.encode_key(parts + (record_key,))

    def entry_value(self, record_key) -> bytes:
        return self.table.key_type.encode(record_key)

    def record_key(self, entry_value: bytes):
        return self.table.key_type.decode(entry_value)

    def _bounds(self, from_value, to_value, prefix) -> tuple[bytes, bytes]:
        """Slot-relative [start, end) of the entries whose indexed value lies in the bounds."""
        if self.unique:
            return self.map._range(from_value, to_value, prefix)
        key_type = self.map.key_type
        slot = self.map._slot_bytes

        def head(value):
            parts = value if isinstance(value, tuple) else (value,)
            return slot + self.map._wrap(key_type.prefix, parts)

        if prefix is not None:
            start = head(prefix)
            return start, prefix_range_end(start)
        start = head(from_value) if from_value is not None else slot
        end = head(to_value) if to_value is not None else prefix_range_end(slot)
        return start, end

    async def select_records(self, txn, from_value, to_value, prefix, limit, reverse, return_keys,
                             return_values):
        """Records in index order; bounds are indexed values. Records are fetched a page at a time."""
        start, end = self._bounds(from_value, to_value, prefix)
        page = []
        async for _, entry in txn.scan_records(start, end, limit, reverse, False, self.map):
            page.append(self.record_key(entry))
            if len(page) >= _PAGE:
                for item in await self._records(txn, page, return_keys, return_values):
                    yield item
                page = []
        for item in await self._records(txn, page, return_keys, return_values):
            yield item

    async def _records(self, txn, keys, return_keys, return_values):
        if not return_values:
            return keys
        table = self.table
        raws = [table.encode_key(key) for key in keys]
        values = await txn.read_records(raws, table, keys)
        objs = [table.decode_value(key, data) for key, data in zip(keys, values)]
        return list(zip(keys, objs)) if return_keys else objs

    @returns_deferred
    async def rebuild(self, txn) -> int:
        """Delete every entry, then write one per record (in ``txn``) → number of entries written."""
        start, end = self.map._range()
        async for slot_key, _ in txn.scan_records(start, end, None, False, True, self.map):
            txn.delete_record(slot_key, self.map, self.map.decode_key(slot_key))
        written = 0
        async for key, obj in self.table.select(txn):
            value = self.value_of(obj)
            if value is None:
                continue
            entry = self.entry_key(value, key)
            txn.put_record(entry, self.map, value, None, self.entry_value(key))
            written += 1
        return written
