"""PersistentMap: one typed table in one slot, read and written inside Database transactions.

A record lives at ``db prefix + >H slot + encoded key`` with the encoded value. The table turns keys
and objects into bytes and back; the transaction does the reading, buffering and committing.
"""

from __future__ import annotations

import struct


from .._defer import Deferred
from ..errors import KeyTypeError, ValueDecodeError, ValueEncodeError
from ..keyset import prefix_range_end
from ._index import Index
from ._txn import Read, check_txn
from ._keys import Composite, KeyType
from ._values import ValueType

__all__ = ('PersistentMap',)

_SLOT = struct.Struct('>H')


class PersistentMap:
    """A typed table: ``tab[txn, key] = obj``, ``await tab[txn, key]``, ``del tab[txn, key]``.

    ``slot`` (1 … 65535; 0 is the catalog) places the table; ``marshal``/``unmarshal`` (JSON, CBOR),
    ``build``/``cast`` (FlatBuffers) and ``allowed`` (Pickle: the classes that may be loaded)
    configure the value type. Named classes such as ``MapUuidCbor`` fix the key and value types.
    """

    KEY: KeyType | None = None
    VALUE: ValueType | None = None

    def __init__(self, slot: int, *, name: str | None = None, key_type: KeyType | None = None,
                 value_type: ValueType | None = None, **options):
        if type(slot) is not int or not 1 <= slot <= 0xFFFF:
            raise ValueError(f'slot must be an int in 1 … 65535 (0 is the catalog), not {slot!r}')
        self.key_type = key_type or self.KEY
        self.value_type = value_type or self.VALUE
        if self.key_type is None or self.value_type is None:
            raise TypeError('PersistentMap needs key_type and value_type (or use a named class, '
                            'e.g. MapUuidCbor)')
        unknown = set(options) - set(self.value_type.options)
        if unknown:
            accepted = ', '.join(self.value_type.options) or 'none'
            raise TypeError(f'{type(self).__name__}: unknown option(s) {", ".join(sorted(unknown))} for '
                            f'{self.value_type.name} values (accepted: {accepted})')
        self.slot = slot
        self.name = name or f'{type(self).__name__}({slot})'
        self._slot_bytes = _SLOT.pack(slot)
        self._encode_value, self._decode_value = self.value_type.bind(**options)
        self.value_options = options     # as given: the catalog description of the value type uses them
        self.indexes: dict[str, Index] = {}

    def __repr__(self):
        return f'<{self.name} slot={self.slot} key={self.key_type.name} value={self.value_type.name}>'

    # -- bytes

    def encode_key(self, key) -> bytes:
        """The slot-relative bytes of ``key`` (slot prefix + encoded key)."""
        try:
            return self._slot_bytes + self.key_type.encode(key)
        except (TypeError, ValueError) as error:
            raise KeyTypeError(f'{self.name}: bad key {key!r}: {error}') from None

    def decode_key(self, data: bytes):
        """The key of slot-relative bytes (the inverse of ``encode_key``)."""
        try:
            return self.key_type.decode(data[2:])
        except (TypeError, ValueError, IndexError) as error:
            raise ValueDecodeError(f'{self.name}: stored key {data!r} does not decode as '
                                   f'{self.key_type.name}: {error}') from None

    def encode_value(self, key, obj) -> bytes:
        if obj is None:
            raise ValueEncodeError(f'{self.name}[{key!r}]: None is not a value; use del tab[txn, key]')
        try:
            return self._encode_value(obj)
        except Exception as error:  # marshal hooks are user code: any failure is an encode error
            raise ValueEncodeError(f'{self.name}[{key!r}]: cannot encode {type(obj).__name__} as '
                                   f'{self.value_type.name}: {type(error).__name__}: {error}') from error

    def decode_value(self, key, data: bytes | None):
        if data is None:
            return None
        try:
            return self._decode_value(data)
        except Exception as error:  # unmarshal hooks are user code: any failure is a decode error
            shown = data[:40] + (b'...' if len(data) > 40 else b'')
            raise ValueDecodeError(f'{self.name}[{key!r}]: stored bytes {shown!r} do not decode as '
                                   f'{self.value_type.name}: {type(error).__name__}: {error}') from error

    def _range(self, from_key=None, to_key=None, prefix=None) -> tuple[bytes, bytes]:
        """Slot-relative [start, end) for a select: the whole table, a key range or a key prefix."""
        if prefix is not None:
            if from_key is not None or to_key is not None:
                raise ValueError(f'{self.name}: give prefix or from_key/to_key, not both')
            if isinstance(self.key_type, Composite) and isinstance(prefix, tuple):
                start = self._slot_bytes + self._wrap(self.key_type.prefix, prefix)
            else:
                start = self.encode_key(prefix)
            return start, prefix_range_end(start)
        start = self.encode_key(from_key) if from_key is not None else self._slot_bytes
        end = self.encode_key(to_key) if to_key is not None else prefix_range_end(self._slot_bytes)
        return start, end

    def _wrap(self, fn, value):
        try:
            return fn(value)
        except (TypeError, ValueError) as error:
            raise KeyTypeError(f'{self.name}: bad key prefix {value!r}: {error}') from None

    # -- record access

    def _txn_key(self, txn_key, what: str):
        """``tab[txn, key]`` → (txn, key), or a TypeError that says how to index a table."""
        if type(txn_key) is not tuple or len(txn_key) != 2:
            raise TypeError(f'{self.name}: index a table as {what.format("txn, key")} with a transaction '
                            f'from db.begin(), not as {what.format(repr(txn_key))}')
        check_txn(txn_key[0], self, what.format('txn, key'))
        return txn_key

    def __getitem__(self, txn_key) -> Read:
        txn, key = self._txn_key(txn_key, 'tab[{}]')
        d = txn.read_record(self.encode_key(key), self, key)
        d.addCallback(lambda data: self.decode_value(key, data))
        return Read(d, txn, self, key)

    def __setitem__(self, txn_key, obj) -> None:
        txn, key = self._txn_key(txn_key, 'tab[{}] = obj')
        txn.put_record(self.encode_key(key), self, key, obj, self.encode_value(key, obj))

    def __delitem__(self, txn_key) -> None:
        txn, key = self._txn_key(txn_key, 'del tab[{}]')
        txn.delete_record(self.encode_key(key), self, key)

    def exists(self, txn, key) -> Read:
        """Whether ``key`` has a record (as this transaction sees it)."""
        check_txn(txn, self, 'exists(txn, key)')
        d = txn.read_record(self.encode_key(key), self, key)
        d.addCallback(lambda data: data is not None)
        return Read(d, txn, self, key, 'exists(txn, {key!r})')

    async def select(self, txn, from_key=None, to_key=None, prefix=None, limit: int | None = None,
                     reverse: bool = False, return_keys: bool = True, return_values: bool = True,
                     index: str | None = None):
        """Iterate records in key order (``async for``): ``(key, obj)`` pairs, or only keys, or only
        objects. ``[from_key, to_key)`` or ``prefix`` narrow it; pages through large tables.

        With ``index=name``, the bounds are index values and records come in index order.
        """
        check_txn(txn, self, 'select(txn, ...)')
        if index is not None:
            async for item in self._index(index).select_records(txn, from_key, to_key, prefix, limit,
                                                                 reverse, return_keys, return_values):
                yield item
            return
        start, end = self._range(from_key, to_key, prefix)
        async for slot_key, data in txn.scan_records(start, end, limit, reverse, not return_values, self):
            key = self.decode_key(slot_key)
            if return_keys and return_values:
                yield key, self.decode_value(key, data)
            elif return_keys:
                yield key
            else:
                yield self.decode_value(key, data)

    def count(self, txn, prefix=None) -> Read:
        """Number of records (with ``prefix``: whose key starts with it)."""
        check_txn(txn, self, 'count(txn)')
        start, end = self._range(prefix=prefix) if prefix is not None else self._range()
        return Read(txn.count_records(start, end, self), txn, self, prefix, 'count(txn)')

    def count_range(self, txn, from_key, to_key) -> Read:
        """Number of records with ``from_key <= key < to_key``."""
        check_txn(txn, self, 'count_range(txn, from_key, to_key)')
        return Read(txn.count_records(*self._range(from_key, to_key), self), txn, self,
                    (from_key, to_key), 'count_range(txn, {key[0]!r}, {key[1]!r})')

    def truncate(self, txn) -> None:
        """Delete every record of the table (and its index entries) when the transaction commits."""
        check_txn(txn, self, 'truncate(txn)')
        start, end = self._range()
        txn.truncate_records(start, end, self)
        for index in self.indexes.values():
            txn.truncate_records(*index.map._range(), index.map)

    # -- indexes

    def attach_index(self, name: str, index_map: 'PersistentMap', fkey, unique: bool = True,
                     nullable: bool = False) -> Index:
        """Keep ``index_map`` current with every write of this table, in the same etcd transaction.

        ``fkey(obj)`` gives the indexed value (None = no entry, allowed only if ``nullable``). A unique
        index maps value → record key; a non-unique one needs a composite key (value, record key).
        """
        if name in self.indexes:
            raise ValueError(f'{self.name} already has an index named {name!r}')
        index = Index(name, self, index_map, fkey, unique, nullable)
        self.indexes[name] = index
        return index

    def _index(self, name: str) -> Index:
        try:
            return self.indexes[name]
        except KeyError:
            raise KeyError(f'{self.name} has no index {name!r} (has: {", ".join(self.indexes) or "none"})') \
                from None

    def mirror(self, db, index: str | None = None, on_change=None, **options):
        """A local copy of this table under ``db`` kept current by a watch → ``TableMirror``; with
        ``index=name`` a copy of that index → ``IndexMirror`` (see txaioetcd.recipes.table_mirror)."""
        from ..recipes.table_mirror import IndexMirror, TableMirror   # a recipe on top: loaded on use
        if index is not None:
            return IndexMirror(db, self._index(index), on_change, **options)
        return TableMirror(db, self, on_change, **options)

    def rebuild_index(self, txn, name: str) -> Deferred:
        """Rewrite index ``name`` from the table's records (in ``txn``) → number of entries."""
        check_txn(txn, self, 'rebuild_index(txn, name)')
        return self._index(name).rebuild(txn)

    def describe(self) -> dict:
        """What the catalog records about this table."""
        return {
            'name': self.name, 'slot': self.slot, 'key_type': self.key_type.name,
            'value_type': self.value_type.name,
            'indexes': {name: index.describe() for name, index in sorted(self.indexes.items())},
            **self.value_type.describe(**self.value_options),
        }
