"""KeySet: which keys an operation covers - one key, a half-open range [key, range_end), or a prefix.

etcd expresses all three as (key, range_end): no range_end means one key, range_end = b'\\0' means
"every key >= key", and a prefix is the range up to the prefix with its last non-0xFF byte incremented.
"""

from __future__ import annotations

__all__ = ('KeySet', 'as_key', 'prefix_range_end')

_ALL_KEYS = b'\0'


def as_key(key, what: str = 'key') -> bytes:
    """Return ``key`` as bytes, or raise TypeError naming what was wrong and how to fix it."""
    if type(key) is bytes:
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, str):
        raise TypeError(f'{what} must be bytes, not str {key!r}: encode it, e.g. {key!r}.encode()')
    raise TypeError(f'{what} must be bytes, not {type(key).__name__} {key!r}')


def prefix_range_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``.

    Trailing 0xFF bytes cannot be incremented, so they are dropped first; a prefix made only of 0xFF
    bytes (or the empty prefix) has no upper bound, which etcd spells b'\\0'.
    """
    stripped = prefix.rstrip(b'\xff')
    if not stripped:
        return _ALL_KEYS
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class KeySet:
    """One key, a range ``[key, range_end)`` or all keys with a prefix.

    >>> KeySet(b'a')                  # the key b'a'
    >>> KeySet(b'a', b'c')            # b'a' <= key < b'c'
    >>> KeySet(b'app/', prefix=True)  # every key starting with b'app/'
    >>> KeySet(b'', prefix=True)      # every key
    """

    __slots__ = ('key', 'range_end', 'type')

    SINGLE = 'single'
    RANGE = 'range'
    PREFIX = 'prefix'

    def __init__(self, key: bytes, range_end: bytes | None = None, prefix: bool = False):
        key = as_key(key)
        if prefix:
            if range_end is not None:
                raise ValueError('KeySet: give either range_end or prefix=True, not both')
            self.type = KeySet.PREFIX
            self.range_end = prefix_range_end(key)
            # etcd refuses the empty key; "every key" is [b'\0', b'\0') in its spelling.
            self.key = key if key else _ALL_KEYS
        elif range_end is not None:
            self.type = KeySet.RANGE
            self.key = key if key else _ALL_KEYS
            self.range_end = as_key(range_end, 'range_end')
        else:
            if not key:
                raise ValueError('KeySet: the empty key is not a valid etcd key; '
                                 'use KeySet(b"", prefix=True) for all keys')
            self.type = KeySet.SINGLE
            self.key = key
            self.range_end = None

    @classmethod
    def of(cls, key_or_keyset) -> 'KeySet':
        """Accept a KeySet or a plain key (bytes)."""
        if isinstance(key_or_keyset, KeySet):
            return key_or_keyset
        return cls(key_or_keyset)

    def __eq__(self, other):
        if not isinstance(other, KeySet):
            return NotImplemented
        return (self.key, self.range_end, self.type) == (other.key, other.range_end, other.type)

    def __hash__(self):
        return hash((self.key, self.range_end, self.type))

    def __repr__(self):
        if self.type == KeySet.SINGLE:
            return f'KeySet({self.key!r})'
        if self.type == KeySet.PREFIX:
            shown = b'' if self.key == _ALL_KEYS and self.range_end == _ALL_KEYS else self.key
            return f'KeySet({shown!r}, prefix=True)'
        return f'KeySet({self.key!r}, {self.range_end!r})'

    def describe(self) -> str:
        """Short text for error messages: ``key b'x'``, ``range [b'a', b'b')``, ``prefix b'p'``."""
        if self.type == KeySet.SINGLE:
            return f'key {self.key!r}'
        if self.type == KeySet.PREFIX:
            return f'prefix {self.key!r}'
        return f'range [{self.key!r}, {self.range_end!r})'

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` is covered by this set (same rules as etcd)."""
        if self.range_end is None:
            return key == self.key
        if key < self.key:
            return False
        return self.range_end == _ALL_KEYS or key < self.range_end
