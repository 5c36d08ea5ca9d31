"""Typed, immutable results of etcd calls: what every transport builds from etcd's answers.

Frozen, slotted dataclasses with short reprs. The transports fill them in (the gateway from proto3
JSON, gRPC from protobuf); nothing here knows a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = (
    'Header', 'KeyValue', 'Range', 'Revision', 'Deleted', 'TxnResult', 'Success', 'Status', 'Member',
    'Alarm', 'Hash', 'KVHash', 'LeaseGranted', 'LeaseKept', 'LeaseInfo', 'WatchEvent', 'WatchResponse',
)


@dataclass(frozen=True, slots=True)
class Header:
    """Response header: which cluster and member answered, at which store revision."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key with its value and revisions (``version`` counts the puts since the key was created)."""

    key: bytes
    value: bytes = b''
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

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



@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm raised on a member: ``alarm`` is 'NOSPACE' or 'CORRUPT'."""

    member_id: int
    alarm: str



@dataclass(frozen=True, slots=True)
class Hash:
    """Hash of the member's whole backend (maintenance/hash): compare members to detect corruption."""

    header: Header
    hash: int


@dataclass(frozen=True, slots=True)
class KVHash:
    """Hash of the MVCC key space up to a revision (maintenance/hashkv)."""

    header: Header
    hash: int
    compact_revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    """A lease etcd granted: its id and TTL (the Lease service wraps it into a ``Lease``)."""

    header: Header
    lease_id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseKept:
    """The answer to one keepalive: ``ttl`` <= 0 means etcd does not know the lease any more."""

    header: Header
    lease_id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease's time to live: ``ttl`` seconds left (-1: gone), as granted, and its keys if asked."""

    header: Header
    lease_id: int
    ttl: int
    granted_ttl: int = 0
    keys: tuple = ()


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``type`` is 'PUT' or 'DELETE'; ``kv`` the key-value after it (for a delete: the key
    and the revision of the delete); ``prev_kv`` the one before, when asked for.

    The key-value's fields are also the event's own - ``key``, ``value`` (None for a DELETE),
    ``version``, ``create_revision``, ``mod_revision`` (= ``revision``), ``lease`` - so an
    ``on_change(kv)`` written for earlier txaioetcd releases, which got a key-value, keeps working.
    """

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def key(self) -> bytes:
        return self.kv.key

    @property
    def value(self) -> bytes | None:
        """The value written (None for a DELETE: a deleted key has no value)."""
        return None if self.type == 'DELETE' else self.kv.value

    @property
    def mod_revision(self) -> int:
        return self.kv.mod_revision

    @property
    def create_revision(self) -> int:
        return self.kv.create_revision

    @property
    def version(self) -> int:
        return self.kv.version

    @property
    def lease(self) -> int:
        return self.kv.lease

    def __repr__(self):
        return f'WatchEvent({self.type} {self.kv.key!r} at {self.kv.mod_revision})'


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One message of a watch stream for one watch: created or cancelled (with the compact revision
    or the reason), a progress notification (no events: nothing changed up to ``header.revision``), or
    events in revision order."""

    header: Header
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ''
    events: list = field(default_factory=list)
