"""The named map classes (``MapUuidCbor``, ``MapStringUuid``, ``MapUuidStringOid`` ...), all made
from the one generic PersistentMap.

A name is ``Map`` + one to three key types + one value type: ``MapUuidStringOid`` has (UUID, String)
keys and OID values. Key types: Oid, Uuid, String, Binary, Timestamp. Value types: String, Binary, Oid,
Uuid, Json, Cbor, Pickle, FlatBuffers. Classes are created on first use and cached, so every
combination exists without 1,000 definitions.
"""

from __future__ import annotations

import re

from ._keys import KEY_TYPES, Composite
from ._map import PersistentMap
from ._values import VALUE_TYPES

__all__ = ('map_class', 'COMMON_NAMES')

_TOKEN = re.compile('|'.join(sorted(set(KEY_TYPES) | set(VALUE_TYPES), key=len, reverse=True)))
_CACHE: dict[str, type] = {}

# The names earlier txaioetcd releases exported (all still valid here), listed for dir() and docs.
COMMON_NAMES = tuple(f'Map{k}{v}' for k in ('Oid', 'Uuid', 'String', 'Binary', 'Timestamp')
                     for v in VALUE_TYPES) + (
    'MapUuidStringUuid', 'MapUuidUuidUuid', 'MapUuidUuidCbor', 'MapOidOidOid', 'MapStringOidOid',
    'MapUuidStringOid', 'MapOidStringOid', 'MapUuidTimestampCbor', 'MapTimestampUuidCbor',
    'MapStringUuidUuid', 'MapUuidUuidStringUuid')


def _parse(name: str):
    if not name.startswith('Map'):
        return None
    rest = name[3:]
    tokens = []
    pos = 0
    while pos < len(rest):
        match = _TOKEN.match(rest, pos)
        if match is None:
            return None
        tokens.append(match.group())
        pos = match.end()
    if not 2 <= len(tokens) <= 4 or tokens[-1] not in VALUE_TYPES:
        return None
    if any(token not in KEY_TYPES for token in tokens[:-1]):
        return None
    return tokens[:-1], tokens[-1]


def map_class(name: str) -> type:
    """The PersistentMap subclass called ``name`` (e.g. 'MapUuidCbor'); ValueError if not a valid name."""
    cls = _CACHE.get(name)
    if cls is not None:
        return cls
    parsed = _parse(name)
    if parsed is None:
        raise ValueError(f'{name!r} is not a map class name: Map + 1-3 of {", ".join(KEY_TYPES)} + one '
                         f'of {", ".join(VALUE_TYPES)}')
    keys, value = parsed
    key_type = KEY_TYPES[keys[0]] if len(keys) == 1 else Composite(*(KEY_TYPES[k] for k in keys))
    doc = (f'Persistent map with {key_type.python_type} keys and {value} values '
           f'(see PersistentMap).')
    cls = type(name, (PersistentMap,), {'KEY': key_type, 'VALUE': VALUE_TYPES[value], '__doc__': doc,
                                        '__module__': 'txaioetcd.pmap'})
    _CACHE[name] = cls
    return cls
