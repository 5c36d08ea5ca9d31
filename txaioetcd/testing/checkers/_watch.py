"""Watches: each watcher must receive exactly etcd's events of its keys from its start revision on -
in revision order, none twice, none missing up to the last one it received, none that did not
happen - and every acknowledged put must be in etcd's history at its revision. A watcher that ended
with an error the server reported (Compacted) is judged up to where it ended; one still running that
never delivered the final event ('Stalled: ...') is an anomaly too."""

from __future__ import annotations

from bisect import bisect_left

from ._report import Findings

__all__ = ('check_watch',)


def check_watch(history, truth):
    """Judge the ``put`` and ``watch`` operations against ``truth``, etcd's events of the watched
    keys as ``(revision, type, key, value)`` sorted by revision → a Report."""
    findings = Findings('watch')
    events = {(revision, key): (kind, value) for revision, kind, key, value in truth}
    # By revision alone: the keys of one revision (a txn) need not be comparable (str and bytes).
    ordered = sorted(((revision, key) for revision, _, key, _ in truth), key=lambda event: event[0])
    revisions = [revision for revision, _ in ordered]
    puts = [op for op in history if op.f == 'put']
    for op in (op for op in puts if op.ok):
        key, value = op.value
        if events.get((op.revision, key)) != ('PUT', value):
            findings.add('lost-write', f'put {op.index} of {key!r}={value!r} acknowledged at revision '
                                       f'{op.revision}, which etcd\'s history does not have', op)
    written = {(key, value) for _, kind, key, value in truth if kind == 'PUT'}
    unknown = [op for op in puts if op.unknown]
    applied = sum(tuple(op.value) in written for op in unknown)
    watchers = [op for op in history if op.f == 'watch' and op.ok]
    errors, checked = {}, 0
    for op in watchers:
        checked += _check_watcher(op, events, ordered, revisions, findings)
        error = op.result.get('error')
        if error and error.startswith('Stalled'):
            findings.add('stalled-watcher', f'watcher {op.index}: {error}', op)
        if error:
            kind = error.split(':', 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    return findings.report(puts=len(puts), ok_puts=sum(op.ok for op in puts), unknown_puts=len(unknown),
                           unknown_puts_applied=applied, watchers=len(watchers), events_checked=checked,
                           watchers_ended_by_error=errors, truth=len(truth))


def _check_watcher(op, events, ordered, revisions, findings) -> int:
    start = op.value['start_revision']
    received = op.result['events']
    seen, last = set(), 0
    for revision, kind, key, value in received:
        if revision < last:
            findings.add('reorder', f'watcher {op.index}: revision {revision} ({key!r}) after {last}', op)
        if (revision, key) in seen:
            findings.add('duplicate', f'watcher {op.index}: revision {revision} ({key!r}) received twice', op)
        seen.add((revision, key))
        last = max(last, revision)
        happened = events.get((revision, key))
        if happened is None:
            findings.add('phantom', f'watcher {op.index}: {kind} {key!r} at revision {revision} never happened', op)
        elif happened != (kind, value):
            findings.add('wrong-event', f'watcher {op.index}: {kind} {key!r}={value!r} at revision {revision}; '
                                        f'etcd has {happened[0]} {happened[1]!r}', op)
        if revision < start:
            findings.add('phantom', f'watcher {op.index}: revision {revision} is before its start {start}', op)
    if received:
        expected = ordered[bisect_left(revisions, start):bisect_left(revisions, last + 1)]
        missing = [event for event in expected if event not in seen]
        if missing:
            findings.add('gap', f'watcher {op.index}: {len(missing)} event(s) missing between revisions {start} '
                                f'and {last}, first at revision {missing[0][0]} ({missing[0][1]!r})', op)
    return len(received)
