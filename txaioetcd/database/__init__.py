"""Database: transactions over persistent maps that commit as one etcd compare-and-set.

``db.begin(write=...)`` starts a transaction (``async with`` commits it); ``db.run(fn)`` runs a
transaction function and runs it again, with jittered backoff, when it conflicts with another writer.
"""

from __future__ import annotations

from twisted.internet.task import deferLater

from .._defer import CallerStyle, Deferred
from ..errors import ReadOnlyTransaction, Timeout, TransactionConflict
from ..retry import Backoff, Deadline
from ._commit import COMMIT_FLOOR
from ._transaction import DbTransaction

__all__ = ('Database', 'DbTransaction')

DEFAULT_MAX_TXN_OPS = 128
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024


class Database:
    """Transactions over ``client`` under an optional key ``prefix`` (a namespace for all tables).

    ``max_txn_ops`` and ``max_request_bytes`` must match the server's ``--max-txn-ops`` and
    ``--max-request-bytes``: transactions over them are refused before anything is sent.
    """

    def __init__(self, client, prefix: bytes = b'', readonly: bool = False,
                 max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        if not isinstance(prefix, bytes):
            raise TypeError(f'Database prefix must be bytes, not {prefix!r}')
        self.client = client
        self.prefix = prefix
        self.readonly = readonly
        self.max_txn_ops = max_txn_ops
        self.max_request_bytes = max_request_bytes
        self._reactor = client.reactor

    def __repr__(self):
        return f'<Database prefix={self.prefix!r} readonly={self.readonly} on {self.client!r}>'

    def status(self) -> Deferred:
        """The store's current revision (an int)."""
        return self.client.status().addCallback(lambda status: status.header.revision)

    def begin(self, write: bool = False, *, timeout: float | None = None, guard=None) -> DbTransaction:
        """A new transaction; ``write=True`` allows writes (refused on a read-only Database).

        ``timeout`` (seconds) bounds the whole transaction: every read and the commit get what is
        left of it (each at most the client's own timeout). Without it, each request has its own.

        ``guard`` (a held Lock, or an Election while leading) fences the commit: etcd applies it only
        if the guard's key still exists as it was created, i.e. while the lock is still held. A commit
        of a holder that lost it (its lease expired during a pause) raises ``LockLost`` (``NotLeader``
        for an election), and nothing is written."""
        if write and self.readonly:
            raise ReadOnlyTransaction('this Database is read-only; writes are refused')
        return DbTransaction(self, write, Deadline(self._reactor, timeout) if timeout is not None else None,
                             guard)

    def attach(self, schema) -> Deferred:
        """Record ``schema``'s tables in the catalog (slot 0), or check them against it → the names of
        tables newly recorded. A table whose recorded description differs raises SchemaMismatch."""
        return self.run(schema.attach)

    def run(self, fn, *args, retries: int = 10, write: bool = True, backoff: float = 0.01,
            max_backoff: float = 1.0, timeout: float | None = None, guard=None, **kwargs) -> Deferred:
        """Run ``fn(txn, *args, **kwargs)`` in a transaction and commit it → what ``fn`` returned.

        On TransactionConflict the whole function runs again in a new transaction, up to ``retries``
        times, after a random pause of up to ``backoff * 2**attempt`` seconds (at most
        ``max_backoff``). ``fn`` may be a plain function or a coroutine function (run the way the caller
        runs: called from an asyncio Task, as an asyncio Task, so that it may await anything asyncio
        offers). ``timeout`` bounds all attempts together (their requests and pauses): past it,
        ``Timeout``. ``guard`` fences every attempt's commit as in ``begin``; ``LockLost`` is not a
        conflict and is not retried.
        """
        deadline = Deadline(self._reactor, timeout) if timeout is not None else None
        policy = Backoff(backoff, max(backoff, max_backoff), jitter=0.0)
        return Deferred.fromCoroutine(self._run(fn, args, kwargs, retries, write, policy, deadline, guard,
                                                   CallerStyle()))

    async def _run(self, fn, args, kwargs, retries, write, policy, deadline, guard, caller):
        attempt = 0
        while True:
            if write and self.readonly:
                raise ReadOnlyTransaction('this Database is read-only; writes are refused')
            txn = DbTransaction(self, write, deadline, guard)
            try:
                async with txn:
                    result = fn(txn, *args, **kwargs)
                    if hasattr(result, '__await__'):
                        result = await caller.run(result)
                return result
            except TransactionConflict as conflict:
                if attempt >= retries:
                    raise
                pause = policy.pause(attempt)
                if deadline is not None and deadline.remaining() <= pause:
                    raise _out_of_time(deadline, attempt, conflict) from conflict
            except Timeout as timeout:
                # A read of the last attempt got what was left of the deadline and it ran out, or too
                # little was left to send the commit.
                if type(timeout) is Timeout and deadline is not None and deadline.remaining() < COMMIT_FLOOR:
                    raise _out_of_time(deadline, attempt, timeout) from timeout
                raise
            attempt += 1
            await deferLater(self._reactor, pause, lambda: None)


def _out_of_time(deadline: Deadline, attempt: int, last: Exception) -> Timeout:
    return Timeout(f'no attempt committed within {deadline.seconds:g} s ({attempt + 1} attempt(s); the '
                   f'last: {last.reason})', 'db.run')
