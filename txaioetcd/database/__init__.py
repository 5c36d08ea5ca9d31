"""Database: transactions over persistent maps that commit as one etcd compare-and-set.

``db.begin(write=...)`` starts a transaction (``async with`` commits it); ``db.run(fn)`` runs a
transaction function and runs it again, with jittered backoff, when it conflicts with another writer.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from ..errors import ReadOnlyTransaction, TransactionConflict
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

    def begin(self, write: bool = False) -> DbTransaction:
        """A new transaction; ``write=True`` allows writes (refused on a read-only Database)."""
        if write and self.readonly:
            raise ReadOnlyTransaction('this Database is read-only; writes are refused')
        return DbTransaction(self, write)

    def attach(self, schema) -> Deferred:
        """Record ``schema``'s tables in the catalog (slot 0), or check them against it → the names of
        tables newly recorded. A table whose recorded description differs raises SchemaMismatch."""
        return self.run(schema.attach)

    def run(self, fn, *args, retries: int = 10, write: bool = True, backoff: float = 0.01,
            max_backoff: float = 1.0, **kwargs) -> Deferred:
        """Run ``fn(txn, *args, **kwargs)`` in a transaction and commit it → what ``fn`` returned.

        On TransactionConflict the whole function runs again in a new transaction, up to ``retries``
        times, after a random pause of up to ``backoff * 2**attempt`` seconds (at most
        ``max_backoff``). ``fn`` may be a plain function or a coroutine function.
        """
        return Deferred.fromCoroutine(self._run(fn, args, kwargs, retries, write, backoff, max_backoff))

    async def _run(self, fn, args, kwargs, retries, write, backoff, max_backoff):
        attempt = 0
        while True:
            txn = self.begin(write=write)
            try:
                async with txn:
                    result = fn(txn, *args, **kwargs)
                    if hasattr(result, '__await__'):
                        result = await result
                return result
            except TransactionConflict:
                if attempt >= retries:
                    raise
            pause = random.uniform(0, min(max_backoff, backoff * 2 ** attempt))
            attempt += 1
            await deferLater(self._reactor, pause, lambda: None)
