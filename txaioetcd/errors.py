"""One hierarchy for everything that can go wrong talking to etcd.

Every error knows the request it belongs to (``.request``: e.g. ``"kv/range of key b'foo'"``) and puts
it at the front of its message, so a log line alone says which call failed and on what.

The tree::

    Error
    ├── ServerError                  etcd answered with an error (``.code``: gRPC status, ``.server_message``)
    │   ├── InvalidArgument
    │   │   ├── TooManyOperations    txn longer than the server's --max-txn-ops
    │   │   ├── LeaseTTLTooLarge     a lease TTL over etcd's maximum (9,000,000,000 s)
    │   │   └── EmptyKey             (the client refuses empty keys itself, with ValueError)
    │   ├── RequestTooLarge          request over the server's --max-request-bytes
    │   ├── NoSpace                  the backend is over its quota (NOSPACE alarm raised)
    │   ├── Compacted                revision compacted away (``.compact_revision`` when known)
    │   ├── FutureRevision
    │   ├── NotFound                 e.g. lease not found
    │   ├── PermissionDenied
    │   ├── AuthFailed               wrong user name or password
    │   ├── Unauthenticated          missing, invalid or expired token
    │   └── Unavailable
    │       └── NoLeader
    ├── TransportError               we could not get an answer
    │   ├── ConnectionFailed         could not connect: nothing was sent, safe to retry anywhere
    │   │   └── TLSError             the TLS handshake failed (nothing was processed)
    │   │       ├── CertificateUntrusted       server certificate not trusted, or not for this host
    │   │       └── ClientCertificateRejected  the server refused our client certificate (or its lack)
    │   ├── ConnectionLost           connection dropped before the answer (reads only; see OutcomeUnknown)
    │   ├── Timeout                  no answer within the request's deadline (reads only; see OutcomeUnknown)
    │   │   └── LockTimeout          a lock did not come free in time; the attempt left nothing behind
    │   ├── OutcomeUnknown           a write was sent but no answer came: it may or may not have been applied
    │   └── ProtocolError            the server's answer could not be understood
    ├── Failed                       a transaction's compares failed (``.responses`` of the failure branch)
    ├── LeaseLost                    a lease expired or was revoked while it was kept alive
    ├── LockLost                     a fenced write of a lock holder that no longer holds it; nothing written
    │   └── NotLeader                the same for an election candidate that does not lead (proclaim, fence)
    ├── TransactionError             Database transactions (txaioetcd.Database)
    │   ├── TransactionConflict      something the transaction read or writes moved (``.keys``); retry
    │   ├── TransactionTooLarge      over etcd's --max-txn-ops or --max-request-bytes; nothing was sent
    │   ├── ReadOnlyTransaction      a write in a read-only transaction or database
    │   ├── TransactionClosed        the transaction was already committed or aborted
    │   ├── UniqueViolation          a unique index already maps the value to another record
    │   ├── NullIndexValue           a non-nullable index got None
    │   ├── IndexValueError          an index's key function failed on a record
    │   └── ReadNotAwaited           the transaction ended with a table read nobody awaited
    ├── CommitOutcomeUnknown         (also an OutcomeUnknown) the commit's answer was lost and could
    │                                not be checked
    ├── TableError                   persistent maps: names the table and the key
    │   ├── KeyTypeError             (also a TypeError) a key of the wrong type for the table
    │   ├── ValueEncodeError         a value that could not be marshalled / encoded
    │   └── ValueDecodeError         stored bytes that could not be decoded
    ├── PickleRefused                (also a pickle.UnpicklingError) a pickled value names a class
    │                                the table does not allow; the cause of a ValueDecodeError
    ├── SchemaMismatch               a table's description differs from the catalog's (slot 0)
    ├── CommitError                  versioned records (txaioetcd.commits); nothing was written
    │   ├── VersionConflict          the version is not the latest + 1 (``.expected_version``)
    │   ├── CommitNotFound           no such key, or no such version of it (any more)
    │   ├── PayloadTooLarge          over the store's max_payload, refused before sending
    │   └── InvalidCommitKey         (also a ValueError) empty, not UTF-8, or containing '/'
    ├── Unsupported                  the transport cannot do this call
    └── ClientClosed                 the client was closed
"""

from __future__ import annotations

import pickle

__all__ = (
    'Error', 'ServerError', 'InvalidArgument', 'TooManyOperations', 'EmptyKey', 'RequestTooLarge', 'NoSpace',
    'Compacted', 'FutureRevision', 'NotFound', 'PermissionDenied', 'AuthFailed', 'Unauthenticated',
    'Unavailable', 'NoLeader', 'TransportError', 'ConnectionFailed', 'TLSError', 'CertificateUntrusted',
    'ClientCertificateRejected', 'ConnectionLost', 'Timeout',
    'OutcomeUnknown', 'ProtocolError', 'Failed', 'Unsupported', 'ClientClosed',
    'TransactionError', 'TransactionConflict', 'TransactionTooLarge', 'ReadOnlyTransaction',
    'TransactionClosed', 'UniqueViolation', 'NullIndexValue', 'IndexValueError', 'CommitOutcomeUnknown', 'TableError',
    'KeyTypeError', 'ValueEncodeError', 'ValueDecodeError', 'SchemaMismatch', 'LeaseTTLTooLarge',
    'LockTimeout', 'LeaseLost', 'LockLost', 'NotLeader', 'ReadNotAwaited', 'PickleRefused',
    'CommitError', 'VersionConflict', 'CommitNotFound', 'PayloadTooLarge', 'InvalidCommitKey',
)


class Error(Exception):
    """Base of every txaioetcd error."""

    def __init__(self, message: str, request: str | None = None):
        self.request = request
        self.reason = message
        super().__init__(f'{request}: {message}' if request else message)


class ServerError(Error):
    """etcd received the request and refused it; ``code`` is the gRPC status code."""

    code: int = 2  # UNKNOWN

    def __init__(self, message: str, request: str | None = None, code: int | None = None,
                 server_message: str | None = None):
        super().__init__(message, request)
        if code is not None:
            self.code = code
        self.server_message = server_message if server_message is not None else message


class InvalidArgument(ServerError):
    code = 3


class TooManyOperations(InvalidArgument):
    """The transaction has more operations than the server's ``--max-txn-ops`` (128 by default)."""


class LeaseTTLTooLarge(InvalidArgument):
    """A lease TTL over etcd's maximum of 9,000,000,000 seconds."""


class EmptyKey(InvalidArgument):
    """etcd refused the empty key. The client refuses empty keys before sending (``ValueError``), so
    this only comes from requests built some other way."""


class RequestTooLarge(ServerError):
    """The request is larger than the server's ``--max-request-bytes`` (1.5 MiB by default)."""

    code = 8


class NoSpace(ServerError):
    """The member's database is over its quota (``--quota-backend-bytes``); writes are refused until
    an operator compacts, defragments and disarms the NOSPACE alarm."""

    code = 8


class Compacted(ServerError):
    """The requested revision was compacted; ``compact_revision`` (when known) is the oldest revision
    still readable."""

    code = 11

    def __init__(self, message: str, request: str | None = None, code: int | None = None,
                 server_message: str | None = None, compact_revision: int | None = None):
        super().__init__(message, request, code, server_message)
        self.compact_revision = compact_revision


class FutureRevision(ServerError):
    """The requested revision is newer than the store's current revision."""

    code = 11


class NotFound(ServerError):
    code = 5


class PermissionDenied(ServerError):
    code = 7


class AuthFailed(ServerError):
    """User name or password were not accepted."""

    code = 3


class Unauthenticated(ServerError):
    """The request carried no valid auth token (missing, invalid or expired)."""

    code = 16


class Unavailable(ServerError):
    code = 14


class NoLeader(Unavailable):
    """The member has no leader (election under way or quorum lost)."""


class TransportError(Error):
    """No usable answer came back from any endpoint."""


class ConnectionFailed(TransportError):
    """No connection could be made; the request was not sent."""


class TLSError(ConnectionFailed):
    """The TLS connection could not be set up. The server processed nothing: like any
    ConnectionFailed, the request is safe to retry (after fixing the configuration)."""


class CertificateUntrusted(TLSError):
    """The server's certificate is not signed by a trusted CA, or does not name the host we asked
    for (``TLSConfig.ca_file``, ``TLSConfig.server_hostname``)."""


class ClientCertificateRejected(TLSError):
    """The server (``--client-cert-auth``) refused our client certificate, or we sent none."""


class ConnectionLost(TransportError):
    """The connection closed before the answer arrived."""


class Timeout(TransportError):
    """The request's deadline passed without an answer (or, for ``LockTimeout``, without the lock)."""


class LockTimeout(Timeout):
    """``client.lock(name, timeout=...)`` (or ``Lock.acquire(timeout)``) gave up: the lock did not
    come free in time. The attempt left nothing behind (its key is deleted and its lease revoked)."""


class OutcomeUnknown(TransportError):
    """A write went out but its answer never came (connection lost or deadline passed).

    It may or may not have been applied: read the key back (or compare revisions) to find out.
    ``cause`` is the underlying ConnectionLost or Timeout.
    """

    def __init__(self, message: str, request: str | None = None, cause: Exception | None = None):
        super().__init__(message, request)
        self.cause = cause


class ProtocolError(TransportError):
    """The server's answer was not what the protocol allows."""


class Failed(Error):
    """A transaction's compares did not hold; the failure branch ran.

    ``responses`` are the results of the failure-branch operations, ``header`` the response header.
    """

    def __init__(self, responses=(), header=None, request: str | None = None):
        self.responses = list(responses)
        self.header = header
        revision = header.revision if header is not None else None
        super().__init__(f'compare failed at revision {revision}; '
                         f'{len(self.responses)} failure operation(s) ran', request)


class LeaseLost(Error):
    """A lease expired or was revoked while it was meant to be kept alive."""


class LockLost(Error):
    """A write fenced by a lock (``lock.fence``, ``db.begin(write=True, guard=lock)``) was refused because
    this holder does not hold the lock any more: its key is gone (the lease expired - a pause longer than
    the TTL, say - or was revoked), so another holder may have it. Nothing was written. Do not retry
    as is: acquire the lock again, then read again what the write relied on."""


class NotLeader(LockLost):
    """``proclaim()`` (or ``election.fence``, or a transaction guarded by the election) by a candidate that
    does not lead - or no longer does (it resigned, or its lease was lost and another candidate may lead
    by now)."""


class TransactionError(Error):
    """A Database transaction could not do what was asked."""


class TransactionConflict(TransactionError):
    """Keys the transaction read (or writes) changed before it committed; nothing was written.

    ``keys`` lists them, as "table[key]" where the table is known, else as raw bytes. Run the
    transaction again (``db.run`` does so with backoff).
    """

    def __init__(self, message: str, keys=(), request: str | None = None):
        self.keys = list(keys)
        super().__init__(message, request)


class TransactionTooLarge(TransactionError):
    """The transaction exceeds an etcd limit; refused before anything was sent.

    ``limit`` names it ('max_txn_ops' or 'max_request_bytes'), ``allowed`` and ``needed`` are numbers.
    """

    def __init__(self, message: str, limit: str, allowed: int, needed: int):
        self.limit = limit
        self.allowed = allowed
        self.needed = needed
        super().__init__(message)


class ReadOnlyTransaction(TransactionError):
    """A write was attempted in a read-only transaction (or on a read-only Database)."""


class TransactionClosed(TransactionError):
    """The transaction was already committed or aborted."""


class UniqueViolation(TransactionError):
    """A unique index already maps this value to another record; nothing was written."""

    def __init__(self, message: str, index: str, value, owner=None):
        self.index = index
        self.value = value
        self.owner = owner
        super().__init__(message)


class NullIndexValue(TransactionError):
    """An index that is not nullable got None for a record."""


class IndexValueError(TransactionError):
    """An index's key function failed on a record (written or stored); nothing was written."""


class ReadNotAwaited(TransactionError):
    """A transaction ended while table reads made in it were never awaited; nothing was written.

    ``tab[txn, key]`` (like ``exists``/``count``) returns a Deferred: ``user = await tab[txn, key]``.
    Without the ``await``, ``if tab[txn, key] is None:`` would silently take the wrong branch.
    ``reads`` lists them as "table[key]".
    """

    def __init__(self, message: str, reads=()):
        self.reads = list(reads)
        super().__init__(message)


class CommitOutcomeUnknown(OutcomeUnknown):
    """A commit was sent, its answer was lost, and reading back could not tell whether it applied."""


class TableError(Error):
    """A persistent map could not encode or decode a key or value; the message names table and key."""


class KeyTypeError(TableError, TypeError):
    """A key of the wrong type (or out of range) for the table."""


class ValueEncodeError(TableError):
    """A value could not be marshalled or encoded for the table."""


class ValueDecodeError(TableError):
    """Stored bytes could not be decoded by the table."""


class PickleRefused(Error, pickle.UnpicklingError):
    """A pickled value names a class the table does not allow (``allowed=`` of a Pickle table). Raised
    by ``RestrictedUnpickler``; reading through a table it is the cause of a ``ValueDecodeError``."""


class SchemaMismatch(Error):
    """A table's description (key type, value type, indexes) differs from what the catalog records."""


class CommitError(Error):
    """A versioned record (txaioetcd.commits) could not be written or read as asked; nothing was written."""


class VersionConflict(CommitError):
    """A commit's version is not exactly the latest + 1: someone else committed first, or the caller
    counted wrong. ``expected_version`` is what the store would have taken."""

    def __init__(self, key: str, expected_version: int, provided_version: int):
        self.key = key
        self.expected_version = expected_version
        self.provided_version = provided_version
        super().__init__(f'commit of {key!r}: version {provided_version} given, but the next version is '
                         f'{expected_version}; nothing was written (read the latest and commit on top of it)')


class CommitNotFound(CommitError, KeyError):
    """No commit of that key (or of that version of it: never written, or removed by ``keep``)."""

    def __str__(self):          # KeyError would quote the message
        return self.args[0]


class PayloadTooLarge(CommitError):
    """A payload over the store's ``max_payload``, refused before anything was sent."""


class InvalidCommitKey(CommitError, ValueError):
    """A commit key must be a non-empty UTF-8 string without '/'."""


class Unsupported(Error):
    """The call cannot be carried by this transport or server."""


class ClientClosed(Error):
    """The client was closed; create a new one."""


# gRPC status codes → default class, refined by the server's message below.
_BY_CODE = {
    3: InvalidArgument, 5: NotFound, 7: PermissionDenied, 8: RequestTooLarge, 11: ServerError,
    14: Unavailable, 16: Unauthenticated,
}

# Substrings of etcd's error messages (stable across 3.3 - 3.6) → class.
_BY_MESSAGE = (
    ('too many operations in txn request', TooManyOperations),
    ('too large lease ttl', LeaseTTLTooLarge),
    ('request is too large', RequestTooLarge),
    ('received message larger than max', RequestTooLarge),
    ('trying to send message larger than max', RequestTooLarge),
    ('database space exceeded', NoSpace),
    ('required revision has been compacted', Compacted),
    ('required revision is a future revision', FutureRevision),
    ('authentication failed', AuthFailed),
    ('invalid auth token', Unauthenticated),
    ('user name is empty', Unauthenticated),
    ('permission denied', PermissionDenied),
    ('no leader', NoLeader),
    ('key is not provided', EmptyKey),
)

_ADVICE = {
    TooManyOperations: 'split the transaction, or raise the server\'s --max-txn-ops',
    LeaseTTLTooLarge: 'ask for a TTL of at most 9,000,000,000 seconds',
    RequestTooLarge: 'send smaller values or transactions, or raise the server\'s --max-request-bytes',
    Compacted: 'read at a newer revision (or without a revision)',
    FutureRevision: 'read at a revision that exists (at most the header revision)',
    AuthFailed: 'check the user name and password',
    Unauthenticated: 'authenticate again, or pass credentials to the client',
    PermissionDenied: 'grant the user a role that allows this key range',
    NoSpace: 'compact and defragment, then disarm the NOSPACE alarm, or raise --quota-backend-bytes',
    NoLeader: 'the cluster is electing a leader or lost quorum; retry shortly',
}


def server_error(code: int, message: str, request: str | None = None) -> ServerError:
    """Build the most specific ServerError for a gRPC ``code`` and etcd's ``message``."""
    lowered = message.lower()
    cls = _BY_CODE.get(code, ServerError)
    for needle, candidate in _BY_MESSAGE:
        if needle in lowered:
            cls = candidate
            break
    advice = _ADVICE.get(cls)
    text = f'{message} ({advice})' if advice else message
    return cls(text, request, code=code, server_message=message)
