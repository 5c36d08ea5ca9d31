"""Mutual exclusion, judged by revisions. Contenders queue by their keys' create revisions and the
oldest key still there holds the lock, so a hold's tenure runs from the revision at which its key
became the oldest (the deletion of the last older key, or its own creation) to the revision at which
etcd deleted it. A hold reported acquired must have had a tenure, and each write must land inside
the tenure of the hold it was made under."""

from __future__ import annotations

from ._report import Findings

__all__ = ('check_lock',)

_INFINITY = float('inf')


def tenures(keys: dict) -> dict:
    """``{key: (created, deleted or None)}`` of every contender's key → ``{key: (start, end)}``."""
    found, latest_deletion = {}, 0
    for key, (created, deleted) in sorted(keys.items(), key=lambda item: item[1][0]):
        end = deleted if deleted is not None else _INFINITY
        found[key] = (max(created, latest_deletion), end)
        latest_deletion = max(latest_deletion, end)
    return found


def check_lock(history, keys: dict):
    """``keys``: every lock key etcd had during the run → ``(create revision, delete revision or
    None)``, from etcd's history of the lock's prefix."""
    findings = Findings('lock')
    ops = {op.index: op for op in history}
    holds = [op for op in history if op.f == 'hold' and op.ok]
    periods = tenures(keys)
    tenure = {}
    for op in holds:
        period = periods.get(op.result['key'])
        if period is None or period[0] >= period[1]:
            findings.add('hold-without-tenure', f'hold {op.index} reported the lock acquired, but its key '
                                                f'{op.result["key"]!r} was never the oldest: {period}', op)
            continue
        tenure[op.index] = period
    counts = {}
    for op in history:
        if op.f != 'write':
            continue
        fenced = 'fenced' if op.value['fenced'] else 'unfenced'
        name = f'{fenced}_{op.outcome}'
        counts[name] = counts.get(name, 0) + 1
        if not op.ok:
            continue
        hold = ops.get(op.value['hold'])
        created, deleted = tenure.get(op.value['hold'], (None, None))
        if created is None:
            findings.add(f'{fenced}-write-outside-lock', f'write {op.index} was made under hold '
                                                         f'{op.value["hold"]}, which never held the lock', op)
        elif not created < op.revision < deleted:     # created: when the tenure began
            findings.add(f'{fenced}-write-outside-lock', f'write {op.index} landed at revision {op.revision}, '
                         f'outside its hold {hold.index}\'s tenure (revisions {created}-{deleted}): '
                         f'another holder had the lock', op, hold)
    return findings.report(holds=len(holds), **counts)
