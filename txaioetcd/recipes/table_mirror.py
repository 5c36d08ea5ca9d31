"""Mirrors of persistent maps: a table's records as decoded objects, or an index's entries, kept
current by a ``Mirror`` of the table's (or index's) key range. Made by ``table.mirror(db)``.
"""

from __future__ import annotations


from .._defer import Deferred
from ..keyset import KeySet
from ..results import KeyValue
from ..watch import WatchEvent
from .mirror import _PAGE, Mirror, _notify

__all__ = ('TableMirror', 'IndexMirror')


class _View:
    """What the table and index mirrors share: a raw Mirror underneath, and its life cycle."""

    def __init__(self, db, start: bytes, on_change, on_resync, page_size: int, timeout):
        self._cut = len(db.prefix)
        self._callbacks = [on_change] if on_change is not None else []
        self.mirror = Mirror(db.client, KeySet(db.prefix + start, prefix=True), self._raw_change,
                             on_resync=on_resync, page_size=page_size, timeout=timeout)

    @property
    def revision(self) -> int:
        return self.mirror.revision

    @property
    def resyncs(self) -> int:
        return self.mirror.resyncs

    @property
    def done(self) -> Deferred:
        return self.mirror.done

    def ready(self) -> Deferred:
        """Fires (with this mirror) once the snapshot is loaded and the watch runs."""
        return self.mirror.ready().addCallback(lambda _: self)

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        """Fires once the write at ``revision`` (to this table or index) is applied; see Mirror."""
        return self.mirror.wait_for(revision, timeout).addCallback(lambda _: self)

    def subscribe(self, callback) -> None:
        """Call ``callback(key, old, new)`` for every change from now on (None: absent)."""
        self._callbacks.append(callback)

    def unsubscribe(self, callback) -> None:
        self._callbacks.remove(callback)

    def close(self) -> None:
        self.mirror.close()

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def items(self) -> list:
        return [(key, self[key]) for key in self]

    def _raw_change(self, event: WatchEvent) -> None:
        raise NotImplementedError


class TableMirror(_View):
    """A local copy of a persistent map's records (made by ``table.mirror(db)``).

    ``mirror[key]`` is the decoded object (KeyError if absent); ``get``, ``in``, ``len``, iteration
    over the keys in the table's order, ``items()``. Objects are decoded when first read and kept
    until their record changes: treat them as read-only. Callbacks get ``(key, old_obj, new_obj)``.
    """

    def __init__(self, db, table, on_change=None, *, on_resync=None, page_size: int = _PAGE,
                 timeout: float | None = None):
        self.table = table
        self._base = db.prefix
        self._objects: dict[bytes, object] = {}     # raw key -> decoded object, once read
        start, _ = table._range()
        super().__init__(db, start, on_change, on_resync, page_size, timeout)

    def __repr__(self):
        return f'<TableMirror {self.table.name} {self.mirror.state} records={len(self)}>'

    def __getitem__(self, key):
        raw = self._base + self.table.encode_key(key)
        obj = self._objects.get(raw)
        if obj is None:
            data = self.mirror.get(raw)
            if data is None:
                raise KeyError(key)
            obj = self._objects[raw] = self.table.decode_value(key, data)
        return obj

    def __contains__(self, key) -> bool:
        return self._base + self.table.encode_key(key) in self.mirror

    def __len__(self) -> int:
        return len(self.mirror)

    def __iter__(self):
        cut, decode = self._cut, self.table.decode_key
        return (decode(raw[cut:]) for raw in self.mirror.keys())

    def kv(self, key) -> KeyValue | None:
        """The record's raw KeyValue (revisions, version), or None if absent."""
        return self.mirror.kv(self._base + self.table.encode_key(key))

    def _raw_change(self, event: WatchEvent) -> None:
        raw = event.kv.key
        cached = self._objects.pop(raw, None)
        if not self._callbacks:
            return
        table = self.table
        key = table.decode_key(raw[self._cut:])
        old = cached
        if old is None and event.prev_kv is not None:
            old = table.decode_value(key, event.prev_kv.value)
        new = table.decode_value(key, event.kv.value) if event.type == 'PUT' else None
        _notify(self._callbacks, key, old, new)


class IndexMirror(_View):
    """A local copy of a table's index (made by ``table.mirror(db, index=name)``): index value →
    record key (a unique index) or → the list of record keys, in key order (a non-unique one).

    Iteration gives the index values in order; callbacks get ``(value, old_record_key,
    new_record_key)`` for each entry added, moved or removed.
    """

    def __init__(self, db, index, on_change=None, *, on_resync=None, page_size: int = _PAGE,
                 timeout: float | None = None):
        self.index = index
        self._base = db.prefix
        start, _ = index.map._range()
        super().__init__(db, start, on_change, on_resync, page_size, timeout)

    def __repr__(self):
        return f'<IndexMirror {self.index.name} of {self.index.table.name} {self.mirror.state}>'

    def __getitem__(self, value):
        index = self.index
        if index.unique:
            entry = self.mirror.get(self._base + index.map.encode_key(value))
            if entry is None:
                raise KeyError(value)
            return index.record_key(entry)
        start, _ = index._bounds(None, None, value)
        keys = [index.record_key(entry) for _, entry in self.mirror.items(self._base + start)]
        if not keys:
            raise KeyError(value)
        return keys

    def __iter__(self):
        last = object()
        for raw in self.mirror.keys():
            value = self._value_of(raw)
            if value != last:
                yield value
                last = value

    def __len__(self) -> int:
        if self.index.unique:
            return len(self.mirror)
        return sum(1 for _ in self)

    def _value_of(self, raw: bytes):
        decoded = self.index.map.decode_key(raw[self._cut:])
        if self.index.unique:
            return decoded
        parts = decoded[:-1]
        return parts[0] if len(parts) == 1 else parts

    def _raw_change(self, event: WatchEvent) -> None:
        if not self._callbacks:
            return
        index = self.index
        value = self._value_of(event.kv.key)
        old = index.record_key(event.prev_kv.value) if event.prev_kv is not None else None
        new = index.record_key(event.kv.value) if event.type == 'PUT' else None
        if old != new:
            _notify(self._callbacks, value, old, new)
