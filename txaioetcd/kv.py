"""The KV service: get, set (put), delete, transactions and compaction.

Each call builds an Op value and runs it through ``_call`` - the same ops go into transactions.
"""

from __future__ import annotations


from ._defer import Deferred
from .errors import Compacted, Failed
from .keyset import KeySet
from .ops import Compact, Op, OpDel, OpGet, OpSet, Transaction
from .results import Success, TxnResult
from .rpc import WatchCreate

__all__ = ('KV',)


class KV:
    """KV calls of the Client (mixed into it; needs ``_call`` and ``_watch``)."""

    def get(self, key, *, limit: int | None = None, sort_order: str | None = None,
            sort_target: str | None = None, revision: int | None = None, serializable: bool = False,
            keys_only: bool = False, count_only: bool = False, min_mod_revision: int | None = None,
            max_mod_revision: int | None = None, min_create_revision: int | None = None,
            max_create_revision: int | None = None, timeout: float | None = None) -> Deferred:
        """Read one key, a range or a prefix (``key``: bytes or KeySet) → ``Range``.

        An absent key gives a Range with no kvs. See OpGet for the options.
        """
        op = OpGet(key, limit, sort_order, sort_target, revision, serializable, keys_only, count_only,
                   min_mod_revision, max_mod_revision, min_create_revision, max_create_revision)
        d = self._call(op, timeout)
        if revision:
            d.addErrback(self._add_compact_revision, op, revision)
        return d

    def set(self, key: bytes, value: bytes, *, lease=None, return_previous: bool = False,
            ignore_value: bool = False, ignore_lease: bool = False,
            timeout: float | None = None) -> Deferred:
        """Put ``value`` at ``key`` → ``Revision`` (with ``prev_kv`` if ``return_previous``)."""
        return self._call(OpSet(key, value, lease, return_previous, ignore_value, ignore_lease), timeout)

    put = set

    def delete(self, key, *, return_previous: bool = False, timeout: float | None = None) -> Deferred:
        """Delete one key, a range or a prefix → ``Deleted``."""
        return self._call(OpDel(key, return_previous), timeout)

    def submit(self, txn: Transaction, *, timeout: float | None = None) -> Deferred:
        """Run a transaction → ``Success``, or fail with ``Failed`` carrying the failure branch results."""
        if not isinstance(txn, Transaction):
            raise TypeError(f'submit takes a Transaction, not {txn!r}')
        return self._call(txn, timeout).addCallback(_outcome, txn)

    def do(self, op: Op, *, timeout: float | None = None) -> Deferred:
        """Run any single Op (a Transaction gives its ``TxnResult`` without raising)."""
        if not isinstance(op, Op):
            raise TypeError(f'do takes an Op (OpGet, OpSet, OpDel, OpTxn), not {op!r}')
        return self._call(op, timeout)

    def compact(self, revision: int, *, physical: bool = False, timeout: float | None = None) -> Deferred:
        """Discard history before ``revision`` → ``Header``. ``physical`` waits until the space is freed."""
        return self._call(Compact(revision, physical), timeout)

    def _add_compact_revision(self, failure, op: OpGet, revision: int):
        """A read below the compaction point failed: learn where history now starts, and say so.

        A range error does not carry the compact revision, but a watch from the same revision is
        cancelled with it at once - one short stream, only on this error path.
        """
        failure.trap(Compacted)
        error = failure.value
        found = []

        def on_message(message):
            if message.canceled or message.compact_revision:
                found.append(message.compact_revision)
                stream.cancel()

        stream = self._watch(WatchCreate(op.keyset, start_revision=revision), on_message, 2.0)
        give_up = self._reactor.callLater(2.0, stream.cancel)

        def raise_enriched(_):
            if give_up.active():
                give_up.cancel()
            if not found or not found[0]:
                return failure
            compact = found[0]
            raise Compacted(f'{error.server_message} (history starts at revision {compact}: read at '
                            f'{compact} or later, or without a revision)', error.request, error.code,
                            error.server_message, compact)

        return stream.done.addBoth(raise_enriched)

    def count(self, key, *, revision: int | None = None, timeout: float | None = None) -> Deferred:
        """How many keys a key, range or prefix covers → int."""
        d = self._call(OpGet(KeySet.of(key), revision=revision, count_only=True), timeout)
        d.addCallback(lambda result: result.count)
        return d


def _outcome(result: TxnResult, txn: Transaction) -> Success:
    """A top-level transaction: Success, or raise Failed with the failure branch's results."""
    if result.succeeded:
        return Success(result.header, result.responses)
    raise Failed(result.responses, result.header, txn.describe())
