"""CommitMirror: the latest commit of every key of a namespace, as a local dict kept current by a watch.

It is a ``Mirror`` of the head keys (so a resync after compaction reports what changed meanwhile).
Because a commit writes its head and its log key in one etcd transaction, what the mirror shows is
what the history holds: there is no separate publisher to fall behind or to fail.
"""

from __future__ import annotations

from .._defer import Deferred
from ..keyset import KeySet
from ..recipes.mirror import Mirror, _notify
from ..errors import InvalidCommitKey
from ._layout import Commit, check_key

__all__ = ('CommitMirror',)


class CommitMirror:
    """``mirror[key]`` → the latest Commit of ``key`` (KeyError if none, or if it is a tombstone),
    ``get``, ``in``, ``len``, ``keys()``, ``items()``. ``on_commit(commit)`` (and ``subscribe``) hear
    every commit after it is applied, tombstones included; ``async for commit in mirror.commits()``
    iterates them as they come. ``await mirror.ready()`` before trusting it."""

    def __init__(self, store, on_commit=None, *, on_resync=None, timeout: float | None = None):
        self.store = store
        self._layout = store.layout
        self._callbacks = [on_commit] if on_commit is not None else []
        self.mirror = Mirror(store.client, KeySet(self._layout.heads, prefix=True), self._changed,
                             on_resync=on_resync, timeout=timeout)

    def __repr__(self):
        return f'<CommitMirror {self.store.namespace!r} {self.mirror.state} keys={len(self)}>'

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
        return self.mirror.ready().addCallback(lambda _: self)

    def wait_for(self, revision: int, timeout: float | None = None) -> Deferred:
        """Fires once the commit at ``revision`` (e.g. ``meta.revision``) is applied."""
        return self.mirror.wait_for(revision, timeout).addCallback(lambda _: self)

    def close(self) -> None:
        self.mirror.close()

    # -- reading

    def _commit(self, raw: bytes) -> Commit | None:
        kv = self.mirror.kv(raw)
        if kv is None:
            return None
        commit = self.store.commit_of(kv)
        return None if commit.meta.empty else commit

    def __getitem__(self, key: str) -> Commit:
        commit = self._commit(self._layout.head(check_key(key)))
        if commit is None:
            raise KeyError(key)
        return commit

    def get(self, key: str, default=None):
        commit = self._commit(self._layout.head(check_key(key)))
        return default if commit is None else commit

    def __contains__(self, key) -> bool:
        try:
            return self._commit(self._layout.head(check_key(key))) is not None
        except InvalidCommitKey:
            return False

    def keys(self) -> list:
        """The keys whose latest commit is not a tombstone, in key order."""
        return [key for key, _ in self.items()]

    def items(self) -> list:
        out = []
        for raw in self.mirror.keys():
            commit = self._commit(raw)
            if commit is not None:
                out.append((commit.meta.key, commit))
        return out

    def __len__(self) -> int:
        return len(self.items())

    def __iter__(self):
        return iter(self.keys())

    # -- hearing about commits

    def subscribe(self, callback) -> None:
        self._callbacks.append(callback)

    def unsubscribe(self, callback) -> None:
        self._callbacks.remove(callback)

    def _changed(self, event) -> None:
        if event.type != 'PUT':     # a head key deleted by hand: nothing was committed
            return
        _notify(self._callbacks, self.store.commit_of(event.kv))

    async def commits(self):
        """Every commit from now on, as it is applied (``async for``); ends when the mirror closes."""
        queue: list[Commit] = []
        waiting: list[Deferred] = []

        def heard(commit):
            queue.append(commit)
            if waiting:
                waiting.pop().callback(None)

        def ended(_):
            if waiting:
                waiting.pop().callback(None)

        self.subscribe(heard)
        self.mirror.done.addBoth(lambda result: (ended(result), result)[1])
        try:
            while True:
                if not queue:
                    if self.mirror.state == 'closed':
                        return
                    d = Deferred()
                    waiting.append(d)
                    await d
                    continue
                yield queue.pop(0)
        finally:
            self.unsubscribe(heard)
