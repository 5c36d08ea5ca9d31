"""Commit: one etcd transaction that compares everything the Database transaction relied on.

1. Index maintenance: old records are read (at the snapshot) so their index entries can be moved or
   removed; unique index entries are read to catch duplicates. Those reads are compared like any other.
2. Compares: every key read still has the ``mod_revision`` seen (0 = still absent); no key in a range
   read changed after the snapshot; every key written was not changed after the snapshot.
3. Success branch: all puts and deletes (index entries included). Failure branch: a keys-only read per
   compare, so a conflict can name the keys that moved.
4. A guarded transaction (``db.begin(write=True, guard=lock)``) also compares the lock's fence: the
   holder's key with its create revision. If only that fails, the lock was lost: ``LockLost``.
5. Limits are checked before anything is sent.
6. If the answer is lost, the outcome is settled, never guessed: a fence (a touch of a key the commit
   compared, guarded by the same compare) makes a late arrival of the commit impossible - if the fence
   succeeds, the commit did not and never will apply; otherwise the outcome is reported as unknown.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from ..errors import (CommitOutcomeUnknown, Error, Failed, IndexValueError, NullIndexValue, OutcomeUnknown, Timeout,
                      TransactionConflict, TransactionTooLarge, UniqueViolation)
from ..keyset import KeySet
from ..ops import CompModified, CompVersion, OpDel, OpGet, OpSet, Transaction

__all__ = ('commit',)


# A commit is not sent with less than this left of the transaction's deadline: its answer could
# hardly come in time, and a commit whose deadline passes in flight has an unknown outcome - better a
# Timeout with nothing written.
COMMIT_FLOOR = 0.02


async def commit(txn) -> int | None:
    """Commit ``txn`` → the revision of the commit (the snapshot when nothing was written)."""
    if not txn._writes and not txn._truncated:
        txn.state = 'committed'
        txn.committed_revision = txn.revision
        return txn.revision
    txn.state = 'committing'
    sent = False
    try:
        ops = await _operations(txn)
        checks = _checks(txn, ops)
        fence = txn.guard.fence if txn.guard is not None else None   # LockLost now if known lost
        request = _request(txn, ops, checks, fence)
        _check_limits(txn._db, request, ops)
        left = None if txn._deadline is None else txn._deadline.remaining()
        if left is not None and left < COMMIT_FLOOR:
            raise Timeout(f'{left * 1000:.0f} ms left of the deadline ({txn._deadline.seconds:g} s): too little '
                          f'to commit, so the commit was not sent; nothing was written', 'commit')
        sent = True
        try:
            result = await txn._client.submit(request, timeout=txn.timeout())
        except Failed as failed:
            sent = False                    # refused as a whole: nothing written
            if fence is not None and _fence_failed(fence, failed.responses[-1]):
                raise _lock_lost(txn, fence) from None
            raise _conflict(txn, checks, failed) from None
        except OutcomeUnknown as unknown:
            await _settle(txn, ops, unknown)
            raise AssertionError('unreachable')  # _settle always raises
    except BaseException as error:
        # Sent, then cancelled (the caller stopped waiting) or unsettled: it may have landed.
        txn.state = 'unknown' if sent and isinstance(error, (CancelledError, CommitOutcomeUnknown)) else 'aborted'
        raise
    txn.state = 'committed'
    txn.committed_revision = result.revision
    return result.revision


async def _operations(txn) -> dict:
    """Raw key → bytes to put (None: delete), index entries included."""
    ops = {raw: write.data for raw, write in txn._writes.items()}
    records = [(raw, write) for raw, write in txn._writes.items()
               if write.table.indexes and (write.obj is not None or write.data is None)]
    if not records:
        return ops
    await txn._read_many([raw for raw, _ in records])
    removed, added, claims = set(), {}, {}
    for raw, write in records:
        table, key = write.table, write.key
        old_data = None if txn._in_truncated(raw) else txn._values.get(raw)
        old_obj = table.decode_value(key, old_data) if old_data is not None else None
        for index in table.indexes.values():
            old_value = _indexed(index, table, key, old_obj, 'the stored record')
            new_value = _indexed(index, table, key, write.obj, 'the record written')
            if write.obj is not None and new_value is None and not index.nullable:
                raise NullIndexValue(f'index {index.name} of {table.name}[{key!r}]: the indexed value is '
                                     f'None and the index is not nullable')
            if old_value == new_value:
                continue
            if old_value is not None:
                removed.add(txn._prefix + index.entry_key(old_value, key))
            if new_value is not None:
                entry = txn._prefix + index.entry_key(new_value, key)
                added[entry] = index.entry_value(key)
                txn._owners.setdefault(entry, (index.map, new_value))
                if index.unique:
                    claims.setdefault(entry, []).append((index, new_value, key))
    if claims:
        await txn._read_many(list(claims))
        _check_unique(txn, claims, removed)
    for entry in removed:
        if entry not in added:
            ops[entry] = None
    ops.update(added)
    return ops


def _indexed(index, table, key, obj, which: str):
    """The indexed value of ``obj``; a failing key function (user or generated code) is an error that
    names index, table and record, not a bare exception from inside the commit."""
    try:
        return index.value_of(obj)
    except Exception as error:
        raise IndexValueError(f'index {index.name} of {table.name}[{key!r}]: its key function failed on '
                              f'{which}: {type(error).__name__}: {error}; nothing was written') from error


def _check_unique(txn, claims: dict, removed: set) -> None:
    for entry, claimants in claims.items():
        index, value, key = claimants[0]
        if len(claimants) > 1:
            keys = ', '.join(repr(k) for _, _, k in claimants)
            raise UniqueViolation(f'unique index {index.name} of {index.table.name}: records {keys} of '
                                  f'one transaction all have the value {value!r}', index.name, value)
        current = txn._values.get(entry)
        if current is None or entry in removed or current == index.entry_value(key):
            continue
        owner = index.record_key(current)
        raise UniqueViolation(f'unique index {index.name} of {index.table.name} already maps {value!r} to '
                              f'record {owner!r}; {index.table.name}[{key!r}] cannot take it too',
                              index.name, value, owner)


def _checks(txn, ops: dict) -> list:
    """What the commit compares: ('eq', raw, mod), ('lt', raw, R) and ('range', (start, end), R)."""
    revision = txn.revision
    checks = [('eq', raw, mod) for raw, mod in txn._seen.items()]
    checks += [('range', bounds, revision) for bounds in dict.fromkeys(txn._ranges) if bounds[0] < bounds[1]]
    if revision is not None:
        checks += [('lt', raw, revision) for raw in ops if raw not in txn._seen]
    return checks


def _request(txn, ops: dict, checks: list, fence=None) -> Transaction:
    for raw, data in ops.items():
        if data is not None and txn._in_truncated(raw):
            raise ValueError(f'{_name(txn, raw)} is written in a transaction that also truncates its '
                             f'table; truncate and refill in separate transactions')
    compare, failure = [], []
    for kind, target, number in checks:
        if kind == 'eq':
            compare.append(CompModified(target, '==', number))
            failure.append(OpGet(target, keys_only=True))
        elif kind == 'lt':
            compare.append(CompModified(target, '<', number + 1))
            failure.append(OpGet(target, keys_only=True))
        else:
            keyset = KeySet(*target)
            compare.append(CompModified(keyset, '<', number + 1))
            failure.append(OpGet(keyset, keys_only=True, min_mod_revision=number + 1))
    if fence is not None:
        # Last, so that the failure responses of the other compares keep their places.
        compare.append(fence)
        failure.append(OpGet(fence.keyset, keys_only=True))
    success = [OpSet(raw, data) if data is not None else OpDel(raw) for raw, data in ops.items()]
    success += [OpDel(KeySet(start, end)) for start, end in txn._truncated]
    return Transaction(compare, success, failure)


def _fence_failed(fence, response) -> bool:
    """Whether the guard's key is gone or is another key now (not the one its holder created)."""
    return not response.kvs or response.kvs[0].create_revision != fence.operand


def _lock_lost(txn, fence):
    guard = txn.guard
    return guard.lost_error(
        f'{guard.describe()} is not held any more: its key {fence.keyset.key!r} (created at revision '
        f'{fence.operand}) is gone - the lease expired or was revoked, and another holder may have it. '
        f'The commit was refused and nothing was written; acquire the lock again and redo the work',
        'guarded commit')


def _check_limits(db, request: Transaction, ops: dict) -> None:
    limit = db.max_txn_ops
    for branch, count in (('compares', len(request.compare)), ('writes', len(request.success))):
        if count > limit:
            raise TransactionTooLarge(
                f'the transaction needs {count} {branch} in one etcd txn, but etcd allows {limit} '
                f'(--max-txn-ops): {count - limit} too many. Split the work into smaller transactions '
                f'(a transaction compares every key it read and every key it writes), or raise '
                f'--max-txn-ops on the server and max_txn_ops of the Database to match',
                'max_txn_ops', limit, count)
    # Protobuf size as etcd measures it: the keys and values plus a few bytes of framing per field.
    size = 16
    for raw, data in ops.items():
        size += len(raw) + (len(data) + 8 if data is not None else 4) + 8
    for comp in request.compare:
        size += 2 * len(comp.keyset.key) + 24
    allowed = db.max_request_bytes
    if size > allowed:
        raise TransactionTooLarge(
            f'the transaction is about {size:,} bytes, but etcd accepts requests of at most '
            f'{allowed:,} bytes (--max-request-bytes): {size - allowed:,} bytes too many. Write less per '
            f'transaction, or raise --max-request-bytes on the server and max_request_bytes of the '
            f'Database to match', 'max_request_bytes', allowed, size)


def _conflict(txn, checks: list, failed: Failed) -> TransactionConflict:
    moved = []
    for (kind, target, number), result in zip(checks, failed.responses):
        if kind == 'range':
            moved += [_name(txn, kv.key) for kv in result.kvs]
            continue
        current = result.kvs[0].mod_revision if result.kvs else 0
        if (kind == 'eq' and current != number) or (kind == 'lt' and current > number):
            moved.append(_name(txn, target))
    shown = ', '.join(moved[:10]) + (f' and {len(moved) - 10} more' if len(moved) > 10 else '')
    return TransactionConflict(f'conflict: changed since revision {txn.revision} by another writer: '
                               f'{shown or "(keys not identified)"}; nothing was written - run the '
                               f'transaction again', moved)


def _name(txn, raw: bytes) -> str:
    return txn.describe_key(raw)


async def _settle(txn, ops: dict, unknown: OutcomeUnknown) -> None:
    """The commit's answer was lost: fence it off, or report the outcome as unknown. Always raises.

    The fence is a touch of a key the commit *writes* and that existed at the snapshot, guarded by
    the commit's own compare on it: if the commit applied, that key moved and the fence fails; if the
    fence applies, the key moved and the commit's compare can never hold again.
    """
    fence = _fence(txn, ops)
    if fence is not None:
        try:
            await txn._client.submit(fence, timeout=txn.timeout())
        except Failed:
            pass            # the key moved: our commit, or someone else's - cannot tell
        except Error:
            pass            # could not reach etcd to settle it
        else:
            raise TransactionConflict(
                f'the connection dropped during commit ({unknown.reason}); the commit was fenced off '
                f'and did not apply, nothing was written - run the transaction again', [])
    raise CommitOutcomeUnknown(
        f'the commit was sent but its answer was lost ({unknown.reason}), and it could not be '
        f'settled: it may or may not have applied. Read the data back before retrying',
        unknown.request, unknown)


def _fence(txn, ops: dict):
    revision = txn.revision
    for raw in ops:
        seen = txn._seen.get(raw)
        if seen:
            compare = [CompModified(raw, '==', seen)]
        elif seen is None and revision is not None:
            compare = [CompModified(raw, '<', revision + 1), CompVersion(raw, '>', 0)]
        else:
            continue        # absent at the snapshot: a touch would create it
        return Transaction(compare=compare, success=[OpSet(raw, ignore_value=True, ignore_lease=True)])
    return None
