"""CommitStore: versioned records with an audit trail, on the raw client.

Every change of a key is a commit: a payload, a version that must be exactly the latest + 1, an author,
a comment and a time. A commit is ONE etcd transaction that writes the head key and a new log key; its
compares make "version = latest + 1" hold under races (this version's log key does not exist, the
previous one does), so of writers racing for one version exactly one wins and the others get
``VersionConflict`` with the version to use. Nothing is retried behind the caller's back.
"""

from __future__ import annotations

from .._defer import Deferred, returns_deferred
from ..errors import CommitNotFound, Failed, PayloadTooLarge, VersionConflict
from ..keyset import KeySet
from ..ops import CompCreated, OpDel, OpGet, OpSet, Transaction
from ._layout import Commit, CommitMeta, Layout, check_key, check_mtime, decode_record, encode_record, now_iso

__all__ = ('CommitStore', 'DEFAULT_MAX_PAYLOAD')

DEFAULT_MAX_PAYLOAD = 700 * 1024
"""A commit writes its payload twice (head and log); etcd's default request limit is 1.5 MiB."""

_PAGE = 100


class CommitStore:
    """Commits of the keys of ``namespace`` (under ``prefix``) in etcd, through ``client``.

    ``keep=N`` keeps the newest N versions of each key (older log keys are deleted by the commit that
    goes past them); None keeps every version. ``max_payload`` (bytes) refuses larger payloads before
    sending; keep it under half of etcd's ``--max-request-bytes``.
    """

    def __init__(self, client, namespace: str, prefix: bytes = b'', keep: int | None = None,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, clock=None):
        if keep is not None and (type(keep) is not int or keep < 1):
            raise ValueError(f'keep is the number of versions to keep (>= 1) or None for all, not {keep!r}')
        self.client = client
        self.namespace = namespace
        self.layout = Layout(prefix, namespace)
        self.keep = keep
        self.max_payload = max_payload
        self._clock = clock            # () -> seconds since the epoch, for mtime (tests pin it)

    def __repr__(self):
        return f'<CommitStore {self.namespace!r} under {self.layout.root!r} keep={self.keep}>'

    # -- writing

    @returns_deferred
    async def commit(self, key: str, payload: bytes, version: int, author: str, comment: str = '',
                     empty: bool = False, mtime: str | None = None) -> CommitMeta:
        """Commit ``payload`` as ``version`` of ``key`` → its metadata. ``version`` (an int >= 1, else
        ValueError) is exactly the latest + 1 (1 for a new key), else VersionConflict and nothing is
        written. ``empty=True`` is a
        tombstone (the payload must be empty). A lost answer is OutcomeUnknown: read ``meta(key, version)``
        to see whether it landed."""
        key = check_key(key)
        meta, record = self._record(key, payload, version, author, comment, empty, mtime)
        layout = self.layout
        log = layout.log(key, version)
        compare = [CompCreated(log, '==', 0)]
        if version > 1:
            compare.append(CompCreated(layout.log(key, version - 1), '>', 0))
        else:
            compare.append(CompCreated(layout.head(key), '==', 0))
        success = [OpSet(layout.head(key), record), OpSet(log, record)]
        if self.keep is not None and version > self.keep:
            # Everything older than the newest ``keep`` versions, in one range delete.
            success.append(OpDel(KeySet(layout.log(key, 0), layout.log(key, version - self.keep + 1))))
        try:
            done = await self.client.submit(Transaction(compare, success, [OpGet(layout.head(key))]))
        except Failed as failed:
            head = failed.responses[0].kvs if failed.responses else []
            latest = decode_record(head[0].key, head[0].value, head[0].create_revision).meta.version if head else 0
            raise VersionConflict(key, latest + 1, version) from None
        return CommitMeta(meta.key, meta.version, meta.author, meta.comment, meta.mtime, meta.empty,
                          done.revision)

    def _record(self, key, payload, version, author, comment, empty, mtime):
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f'commit of {key!r}: the payload is bytes, not {type(payload).__name__}')
        payload = bytes(payload)
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f'commit of {key!r}: the payload is {len(payload):,} bytes, over this store\'s '
                                  f'max_payload of {self.max_payload:,} (it is written twice, head and log); '
                                  f'nothing was sent')
        if type(version) is not int or version < 1:
            raise ValueError(f'commit of {key!r}: version is an int >= 1, not {version!r}')
        if not isinstance(author, str) or not author:
            raise ValueError(f'commit of {key!r}: every commit has an author (a non-empty string)')
        if not isinstance(comment, str):
            raise ValueError(f'commit of {key!r}: the comment is a string, not {comment!r}')
        if empty and payload:
            raise ValueError(f'commit of {key!r}: an empty commit (a tombstone) has no payload')
        mtime = check_mtime(mtime) if mtime is not None else now_iso(self._clock)
        meta = CommitMeta(key, version, author, comment, mtime, bool(empty))
        return meta, encode_record(meta, payload)

    @returns_deferred
    async def revert(self, key: str, to_version: int, author: str, comment: str | None = None,
                     mtime: str | None = None) -> CommitMeta:
        """A new commit of ``to_version``'s payload on top of the latest → its metadata."""
        old = await self.get(key, to_version)
        latest = await self.meta(key)
        return await self.commit(key, old.payload, latest.version + 1, author,
                                 comment if comment is not None else f'Revert to version {to_version}',
                                 empty=old.meta.empty, mtime=mtime)

    @returns_deferred
    async def uncommit(self, key: str, author: str, comment: str = '', mtime: str | None = None) -> CommitMeta:
        """An empty commit (a tombstone) on top of the latest: the key reads as deleted, its versions go on."""
        latest = await self.meta(key)
        return await self.commit(key, b'', latest.version + 1, author, comment, empty=True, mtime=mtime)

    # -- reading

    @returns_deferred
    async def get(self, key: str, version: int | None = None) -> Commit:
        """The latest commit of ``key`` (a tombstone included), or ``version`` of it → Commit;
        CommitNotFound if there is none."""
        key = check_key(key)
        raw = self.layout.head(key) if version is None else self.layout.log(key, _version(key, version))
        result = await self.client.get(raw)
        if not result.kvs:
            what = f'no commit of {key!r}' if version is None else f'no version {version} of {key!r}'
            raise CommitNotFound(f'{what} in namespace {self.namespace!r}')
        return self.commit_of(result.kvs[0])

    def meta(self, key: str, version: int | None = None) -> Deferred:
        """The metadata of the latest commit of ``key`` (or of ``version``) → CommitMeta."""
        return self.get(key, version).addCallback(lambda commit: commit.meta)

    @returns_deferred
    async def heads(self, all: bool = False) -> dict:
        """{key: Commit} of every key's latest commit, in key order; tombstones only with ``all``."""
        out = {}
        async for kv in self._scan(self.layout.heads):
            commit = self.commit_of(kv)
            if all or not commit.meta.empty:
                out[commit.meta.key] = commit
        return out

    async def history(self, key: str, before: int | None = None, limit: int | None = None):
        """The commits of ``key``, newest first (``async for``), read a page at a time; from version
        ``before - 1`` down when given; at most ``limit``."""
        key = check_key(key)
        start = self.layout.log_prefix(key)
        end = self.layout.log(key, before) if before is not None else None
        given = 0
        while limit is None or given < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - given)
            keyset = KeySet(start, end) if end is not None else KeySet(start, prefix=True)
            result = await self.client.get(keyset, limit=page, sort_order='descend', sort_target='key')
            for kv in result.kvs:
                yield self.commit_of(kv)
            given += len(result.kvs)
            if not result.more or not result.kvs:
                return
            end = result.kvs[-1].key

    def commit_of(self, kv) -> Commit:
        """The Commit a head or log key-value of this store holds."""
        # The revision of a commit is the one that created its log key; a head key is rewritten by
        # every commit, so its mod_revision is the revision of the commit it holds.
        revision = kv.mod_revision if kv.key.startswith(self.layout.heads) else kv.create_revision
        return decode_record(kv.key, kv.value, revision)

    async def _scan(self, prefix: bytes):
        """Every key-value under ``prefix`` in key order, a page at a time, at one revision."""
        start, revision = prefix, None
        end = KeySet(prefix, prefix=True).range_end
        while True:
            result = await self.client.get(KeySet(start, end), limit=1000, revision=revision)
            revision = result.header.revision
            for kv in result.kvs:
                yield kv
            if not result.more or not result.kvs:
                return
            start = result.kvs[-1].key + b'\0'

    def mirror(self, on_commit=None, **options):
        """A live ``{key: Commit}`` of the heads, kept current by a watch → CommitMirror."""
        from ._mirror import CommitMirror
        return CommitMirror(self, on_commit, **options)


def _version(key: str, version) -> int:
    if type(version) is not int or version < 1:
        raise ValueError(f'{key!r}: a version is an int >= 1, not {version!r}')
    return version
