"""Where and how commits live in etcd: pure functions, no I/O.

Under ``prefix + namespace + b'/'``: ``head/<key>`` holds the latest commit of a key and ``log/<key>/<version>``
(the version as 20 decimal digits, so that keys sort by version) one commit each. Both hold the same
CBOR map: key, version, author, comment, mtime, empty, payload. The etcd revision of a commit is the
``create_revision`` of its log key. History is in the log keys, which are written once and never
changed: etcd's compaction, which forgets old revisions of a key, does not touch them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import cbor2

from ..errors import CommitError, InvalidCommitKey

__all__ = ('CommitMeta', 'Commit', 'Layout', 'check_key', 'now_iso', 'check_mtime', 'encode_record',
           'decode_record')

_VERSION_DIGITS = 20


@dataclass(frozen=True, slots=True)
class CommitMeta:
    """What Rainer calls a commit's metadata, plus ``revision``: the etcd revision that wrote it (one
    global order across keys)."""

    key: str
    version: int
    author: str
    comment: str
    mtime: str            # ISO 8601, UTC: '2026-12-03T06:30:00.123Z'
    empty: bool           # a tombstone (uncommit): the key reads as deleted at this version
    revision: int = 0

    def as_json(self) -> dict:
        """Rainer's JSON shape of the metadata (and our ``revision``)."""
        return {'key': self.key, 'version': self.version, 'author': self.author, 'comment': self.comment,
                'mtime': self.mtime, 'empty': self.empty, 'revision': self.revision}


@dataclass(frozen=True, slots=True)
class Commit:
    meta: CommitMeta
    payload: bytes


def check_key(key) -> str:
    """``key`` if it can name a commit (non-empty str, encodable as UTF-8, no '/'), else InvalidCommitKey."""
    if isinstance(key, bytes):
        try:
            key = key.decode('utf-8')
        except UnicodeDecodeError:
            raise InvalidCommitKey(f'commit key {key!r} is not UTF-8') from None
    if not isinstance(key, str) or not key:
        raise InvalidCommitKey(f'a commit key is a non-empty string, not {key!r}')
    if '/' in key:
        raise InvalidCommitKey(f'commit key {key!r} contains "/": keys name one record, not a path')
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        raise InvalidCommitKey(f'commit key {key!r} cannot be encoded as UTF-8') from None
    return key


def now_iso(clock=None) -> str:
    """The current UTC time as Rainer writes it: milliseconds and 'Z'."""
    moment = datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc) if clock else \
        datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + f'{moment.microsecond // 1000:03d}Z'


def check_mtime(mtime: str) -> str:
    """``mtime`` if it is an ISO 8601 date and time with a time zone, else ValueError."""
    if not isinstance(mtime, str):
        raise ValueError(f'mtime is an ISO 8601 string, not {mtime!r}')
    try:
        moment = datetime.datetime.fromisoformat(mtime)
    except ValueError:
        moment = None
    if moment is None or 'T' not in mtime.upper() or moment.tzinfo is None:
        raise ValueError(f'mtime {mtime!r} is not an ISO 8601 date and time with a time zone '
                         f'(e.g. 2026-12-03T06:30:00.000Z)')
    return mtime


class Layout:
    """The keys of one namespace."""

    def __init__(self, prefix: bytes, namespace: str):
        if not isinstance(prefix, bytes):
            raise TypeError(f'prefix must be bytes, not {prefix!r}')
        if not isinstance(namespace, str) or not namespace or '/' in namespace:
            raise ValueError(f'a namespace is a non-empty string without "/", not {namespace!r}')
        self.root = prefix + namespace.encode('utf-8') + b'/'
        self.heads = self.root + b'head/'
        self.logs = self.root + b'log/'

    def head(self, key: str) -> bytes:
        return self.heads + key.encode('utf-8')

    def log(self, key: str, version: int) -> bytes:
        return self.log_prefix(key) + b'%0*d' % (_VERSION_DIGITS, version)

    def log_prefix(self, key: str) -> bytes:
        return self.logs + key.encode('utf-8') + b'/'

    def key_of_head(self, raw: bytes) -> str:
        return raw[len(self.heads):].decode('utf-8')


def encode_record(meta: CommitMeta, payload: bytes) -> bytes:
    return cbor2.dumps({'key': meta.key, 'version': meta.version, 'author': meta.author,
                        'comment': meta.comment, 'mtime': meta.mtime, 'empty': meta.empty,
                        'payload': payload})


def decode_record(raw_key: bytes, data: bytes, revision: int) -> Commit:
    try:
        record = cbor2.loads(data)
        meta = CommitMeta(record['key'], record['version'], record['author'], record['comment'],
                          record['mtime'], record['empty'], revision)
        return Commit(meta, record['payload'])
    except Exception as error:     # someone else's bytes under our prefix
        raise CommitError(f'{raw_key!r} does not hold a commit record: {type(error).__name__}: {error}') \
            from None
