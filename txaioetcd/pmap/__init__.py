"""Persistent maps: typed tables stored in etcd, read and written in Database transactions.

``MapUuidCbor(slot, marshal=..., unmarshal=...)`` and every other ``Map<Key...><Value>`` name (see
``_classes``) are subclasses of the one generic ``PersistentMap``.
"""

from ._classes import COMMON_NAMES, map_class
from ._index import Index
from ._keys import BINARY, OID, STRING, TIMESTAMP, UUID, Composite, KeyType
from ._map import PersistentMap
from ._schema import CatalogVerdict, Schema
from ._txn import ITableTxn, Read
from ._values import PickleRefused, RestrictedUnpickler, ValueType

__all__ = ('PersistentMap', 'Schema', 'CatalogVerdict', 'Index', 'ITableTxn', 'Read', 'map_class', 'KeyType', 'ValueType', 'Composite', 'OID',
           'UUID', 'STRING', 'BINARY', 'TIMESTAMP', 'PickleRefused', 'RestrictedUnpickler') + COMMON_NAMES


def __getattr__(name):
    if name.startswith('Map'):
        try:
            return map_class(name)
        except ValueError:
            pass
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(COMMON_NAMES))
