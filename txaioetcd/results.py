"""Typed, immutable results of etcd calls, parsed from the gateway's JSON (proto3 JSON mapping).

proto3 JSON leaves out fields that hold their default value (0, false, empty), and sends 64-bit
integers as strings; every parser here reads with defaults and converts with ``int``.
"""

from __future__ import annotations

from binascii import a2b_base64
from dataclasses import dataclass, field

__all__ = (
    'Header', 'KeyValue', 'Range', 'Revision', 'Deleted', 'TxnResult', 'Success', 'Status', 'Member',
    'Alarm', 'Hash', 'b64decode',
)


def b64decode(text) -> bytes:
    return a2b_base64(text) if text else b''


@dataclass(frozen=True, slots=True)
class Header:
    """Response header: which cluster and member answered, at which store revision."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0

    @staticmethod
    def parse(obj) -> 'Header':
        if not obj:
            return _EMPTY_HEADER
        return Header(int(obj.get('cluster_id', 0)), int(obj.get('member_id', 0)),
                      int(obj.get('revision', 0)), int(obj.get('raft_term', 0)))


_EMPTY_HEADER = Header()


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key with its value and revisions (``version`` counts the puts since the key was created)."""

    key: bytes
    value: bytes = b''
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @staticmethod
    def parse(obj) -> 'KeyValue':
        get = obj.get
        return KeyValue(b64decode(get('key')), b64decode(get('value')),
                        int(get('create_revision', 0)), int(get('mod_revision', 0)),
                        int(get('version', 0)), int(get('lease', 0)))

    def __repr__(self):
        value = self.value if len(self.value) <= 64 else self.value[:64] + b'...'
        return (f'KeyValue(key={self.key!r}, value={value!r}, create_revision={self.create_revision}, '
                f'mod_revision={self.mod_revision}, version={self.version}, lease={self.lease})')


@dataclass(frozen=True, slots=True)
class Range:
    """Result of a get: the key-values found, how many keys matched (``count``) and whether more exist."""

    header: Header
    kvs: list = field(default_factory=list)
    count: int = 0
    more: bool = False

    @staticmethod
    def parse(obj) -> 'Range':
        kvs = obj.get('kvs')
        return Range(Header.parse(obj.get('header')),
                     [KeyValue.parse(kv) for kv in kvs] if kvs else [],
                     int(obj.get('count', 0)), bool(obj.get('more', False)))

    def __repr__(self):
        shown = ', '.join(repr(kv.key) for kv in self.kvs[:5]) + (', ...' if len(self.kvs) > 5 else '')
        return (f'Range(revision={self.header.revision}, count={self.count}, more={self.more}, '
                f'keys=[{shown}])')


@dataclass(frozen=True, slots=True)
class Revision:
    """Result of a put: the store revision it created, and the previous key-value when asked for."""

    header: Header
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.header.revision

    @staticmethod
    def parse(obj) -> 'Revision':
        prev = obj.get('prev_kv')
        return Revision(Header.parse(obj.get('header')), KeyValue.parse(prev) if prev else None)

    def __repr__(self):
        return f'Revision({self.header.revision}, prev_kv={self.prev_kv!r})'


@dataclass(frozen=True, slots=True)
class Deleted:
    """Result of a delete: how many keys went, and their last key-values when asked for."""

    header: Header
    deleted: int = 0
    prev_kvs: list = field(default_factory=list)

    @property
    def previous(self) -> list:
        """The deleted key-values (``prev_kvs``), under the name earlier txaioetcd releases used."""
        return self.prev_kvs

    @staticmethod
    def parse(obj) -> 'Deleted':
        prev = obj.get('prev_kvs')
        return Deleted(Header.parse(obj.get('header')), int(obj.get('deleted', 0)),
                       [KeyValue.parse(kv) for kv in prev] if prev else [])

    def __repr__(self):
        return (f'Deleted(revision={self.header.revision}, deleted={self.deleted}, '
                f'prev_kvs={len(self.prev_kvs)})')


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Result of a transaction nested in another: which branch ran and its operations' results."""

    header: Header
    succeeded: bool
    responses: list


@dataclass(frozen=True, slots=True)
class Success:
    """A transaction whose compares held: ``responses`` are the success operations' results, in order."""

    header: Header
    responses: list

    @property
    def revision(self) -> int:
        return self.header.revision

    def __repr__(self):
        return f'Success(revision={self.header.revision}, responses={self.responses!r})'


@dataclass(frozen=True, slots=True)
class Status:
    """A member's status (``leader`` and ``member_id`` are member ids; sizes in bytes)."""

    header: Header
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int = 0
    db_size_in_use: int = 0
    errors: tuple = ()
    is_learner: bool = False

    @property
    def is_leader(self) -> bool:
        return self.leader == self.header.member_id

    @staticmethod
    def parse(obj) -> 'Status':
        return Status(Header.parse(obj.get('header')), obj.get('version', ''),
                      int(obj.get('dbSize', 0)), int(obj.get('leader', 0)),
                      int(obj.get('raftIndex', 0)), int(obj.get('raftTerm', 0)),
                      int(obj.get('raftAppliedIndex', 0)), int(obj.get('dbSizeInUse', 0)),
                      tuple(obj.get('errors', ())), bool(obj.get('isLearner', False)))

    def __repr__(self):
        return (f'Status(version={self.version!r}, revision={self.header.revision}, '
                f'member_id={self.header.member_id:x}, leader={self.leader:x}, db_size={self.db_size})')


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member; ``client_urls`` is empty while it has not started yet."""

    id: int
    name: str
    peer_urls: tuple
    client_urls: tuple
    is_learner: bool = False

    @staticmethod
    def parse(obj) -> 'Member':
        return Member(int(obj.get('ID', 0)), obj.get('name', ''), tuple(obj.get('peerURLs', ())),
                      tuple(obj.get('clientURLs', ())), bool(obj.get('isLearner', False)))


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm raised on a member: ``alarm`` is 'NOSPACE' or 'CORRUPT'."""

    member_id: int
    alarm: str

    @staticmethod
    def parse(obj) -> 'Alarm':
        return Alarm(int(obj.get('memberID', 0)), obj.get('alarm', 'NONE'))


@dataclass(frozen=True, slots=True)
class Hash:
    """Hash of the member's whole backend (maintenance/hash): compare members to detect corruption."""

    header: Header
    hash: int

    @staticmethod
    def parse(obj) -> 'Hash':
        return Hash(Header.parse(obj.get('header')), int(obj.get('hash', 0)))
