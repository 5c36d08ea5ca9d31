"""Keys as paths, the way ZooKeeper users expect: '/'-separated levels, children of a level,
recursive delete, and ``PathCache`` - a tree view served from a ``Mirror``.
"""

from __future__ import annotations

import bisect


from .._defer import Deferred, returns_deferred
from ..errors import Compacted
from ..keyset import KeySet, as_key, prefix_range_end
from .mirror import _PAGE, Mirror

__all__ = ('children', 'delete_prefix', 'PathCache')


def _directory(path: bytes) -> bytes:
    """``b'/app'`` and ``b'/app/'`` both name the level below ``/app``: ``b'/app/'``."""
    path = as_key(path, 'path')
    return path if path.endswith(b'/') else path + b'/'


def _child(directory: bytes, key: bytes) -> tuple[bytes, bool]:
    """The name one level below ``directory`` that ``key`` lies in, and whether it lies deeper."""
    name, slash, _ = key[len(directory):].partition(b'/')
    return name, bool(slash)


@returns_deferred
async def children(client, prefix: bytes, *, page_size: int = _PAGE) -> list:
    """The names one '/'-level below ``prefix``, sorted: keys ``/app/a`` and ``/app/b/c`` under
    ``b'/app/'`` give ``[b'a', b'b']``. One consistent read; a big subtree is skipped, not listed."""
    directory = _directory(prefix)
    end = prefix_range_end(directory)
    for attempt in range(3):
        names, start, revision = set(), directory, None
        try:
            while True:
                result = await client.get(KeySet(start, end), keys_only=True, limit=page_size,
                                          revision=revision)
                revision = revision or result.header.revision
                for kv in result.kvs:
                    name, _ = _child(directory, kv.key)
                    if name:
                        names.add(name)
                if not (result.more and result.kvs):
                    return sorted(names)
                last = result.kvs[-1].key
                name, deeper = _child(directory, last)
                # Every key left below ``name`` sorts before ``directory + name + b'0'`` ('/' + 1).
                start = directory + name + b'0' if deeper and name else last + b'\0'
        except Compacted:
            if attempt == 2:
                raise


@returns_deferred
async def delete_prefix(client, prefix: bytes) -> int:
    """Delete every key that starts with ``prefix`` (one request) → how many were deleted."""
    prefix = as_key(prefix, 'prefix')
    if not prefix:
        raise ValueError('delete_prefix: the empty prefix would delete every key in etcd')
    result = await client.delete(KeySet(prefix, prefix=True))
    return result.deleted


class PathCache:
    """A Mirror of the tree below ``root`` (keys starting with ``root + b'/'``), asked like ZooKeeper:
    ``get(path)`` (the value, or None), ``exists(path)`` (a key, or a level with keys below it) and
    ``children(path)`` - all synchronous. Paths are whole keys, such as ``b'/app/config/db'``.
    """

    def __init__(self, client, root: bytes, on_change=None, *, on_resync=None, page_size: int = _PAGE,
                 timeout: float | None = None):
        self.root = _directory(root)
        self.mirror = Mirror(client, KeySet(self.root, prefix=True), on_change, on_resync=on_resync,
                             page_size=page_size, timeout=timeout)

    def __repr__(self):
        return f'<PathCache {self.root!r} {self.mirror.state} keys={len(self.mirror)}>'

    @property
    def revision(self) -> int:
        return self.mirror.revision

    def ready(self) -> Deferred:
        return self.mirror.ready().addCallback(lambda _: self)

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        return self.mirror.wait_for(revision, timeout).addCallback(lambda _: self)

    def subscribe(self, callback) -> None:
        """Call ``callback(event)`` (a WatchEvent) for every change below the root."""
        self.mirror.subscribe(callback)

    def close(self) -> None:
        self.mirror.close()

    def get(self, path: bytes):
        return self.mirror.get(path)

    def exists(self, path: bytes) -> bool:
        if path in self.mirror:
            return True
        lo, hi = self.mirror._span(_directory(path))
        return lo < hi

    def children(self, path: bytes) -> list:
        """The names one level below ``path``, sorted (``[]`` for a leaf or an absent path)."""
        directory = _directory(path)
        keys = self.mirror._keys()
        end = prefix_range_end(directory)
        names = set()
        i = bisect.bisect_left(keys, directory)
        while i < len(keys) and keys[i] < end:
            name, deeper = _child(directory, keys[i])
            if name:
                names.add(name)
            if deeper and name:
                i = bisect.bisect_left(keys, directory + name + b'0', i + 1)
            else:
                i += 1
        return sorted(names)
