"""Bank: every read of all balances sums to the initial total, has no negative balance, and equals the
initial balances plus exactly the transfers in its log; an ok transfer is in every log read after it;
a failed one in none; logs only grow in real time."""

from __future__ import annotations

from ._realtime import realtime_edges
from ._report import Findings

__all__ = ('check_bank',)


def check_bank(history, initial: dict):
    """Judge the ``transfer`` and ``read`` operations of a bank history, starting from the balances
    ``initial`` (account -> int) → a Report."""
    findings = Findings('bank')
    total = sum(initial.values())
    transfers = {op.value[0]: op for op in history if op.f == 'transfer'}
    reads = sorted((op for op in history if op.f == 'read' and op.ok), key=lambda op: op.start)
    for read in reads:
        balances, logged = read.result['balances'], read.result['transfers']
        if sum(balances.values()) != total:
            findings.add('wrong-total', f'read {read.index}: balances sum to {sum(balances.values())}, not {total}',
                         read)
        negative = {account: balance for account, balance in balances.items() if balance < 0}
        if negative:
            findings.add('negative-balance', f'read {read.index}: {negative}', read)
        expected = dict(initial)
        for transfer_id in logged:
            transfer = transfers.get(transfer_id)
            if transfer is None:
                findings.add('unknown-id', f'read {read.index}: transfer {transfer_id!r} logged, never invoked', read)
                continue
            if transfer.failed:
                findings.add('aborted-transfer-applied', f'read {read.index}: transfer {transfer_id!r} failed '
                                                         f'but is logged', read, transfer)
            _, source, target, amount = transfer.value
            expected[source] = expected.get(source, 0) - amount
            expected[target] = expected.get(target, 0) + amount
        if expected != balances:
            wrong = {account: (balances.get(account), expected.get(account))
                     for account in set(balances) | set(expected) if balances.get(account) != expected.get(account)}
            findings.add('balances-mismatch', f'read {read.index}: (read, initial + logged transfers) differ: '
                                              f'{wrong} - a transfer applied twice, half, or not logged', read)
    _lost(transfers, reads, findings)
    by_index = {read.index: read for read in reads}
    for a, b in realtime_edges(reads):
        missing = set(by_index[a].result['transfers']) - set(by_index[b].result['transfers'])
        if missing:
            findings.add('transfer-unlogged', f'read {b} began after read {a} ended, yet misses transfer(s) '
                                              f'{sorted(missing)[:5]} that read {a} saw', a, b)
    last = set(max(reads, key=lambda op: op.end).result['transfers']) if reads else set()
    unknown = [op for op in transfers.values() if op.unknown]
    applied = sum(op.value[0] in last for op in unknown)
    return findings.report(transfers=len(transfers), ok=sum(op.ok for op in transfers.values()),
                           failed=sum(op.failed for op in transfers.values()), unknown=len(unknown),
                           unknown_applied=applied, unknown_not_applied=len(unknown) - applied, reads=len(reads))


def _lost(transfers, reads, findings) -> None:
    done = sorted((op for op in transfers.values() if op.ok), key=lambda op: op.end)
    ended, position = [], 0
    for read in reads:
        while position < len(done) and done[position].end < read.start:
            ended.append(done[position])
            position += 1
        logged = set(read.result['transfers'])
        for transfer in ended:
            if transfer.value[0] not in logged:
                findings.add('lost-transfer', f'transfer {transfer.value[0]!r} succeeded (op {transfer.index}) but '
                                              f'read {read.index}, begun later, does not have it', transfer, read)
