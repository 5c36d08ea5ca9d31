"""Linearizable registers, with etcd's revisions as the order of the writes: every read must return
the value of the write at its mod_revision, no write ordered after that one may have completed before
the read began (stale read), the write read must have begun before the read ended (future read), the
writes' revisions must respect real time across all keys (etcd has one revision counter), and a CAS
must have found the value it expected."""

from __future__ import annotations

from bisect import bisect_right

from ._report import Findings

__all__ = ('check_register',)

_INFINITY = float('inf')


def check_register(history):
    """Judge the ``read``/``write``/``cas`` operations of register histories (one register per key)
    → a Report; unknown writes seen by a read are resolved as applied at that read's revision."""
    findings = Findings('register')
    by_key = {}
    for op in history:
        if op.f in ('read', 'write', 'cas'):
            by_key.setdefault(op.value[0], []).append(op)
    resolved, everywhere = 0, {}
    for key, ops in by_key.items():
        applied = _check_key(key, ops, findings)
        resolved += sum(1 for op in applied.values() if op.unknown)
        for revision, op in applied.items():
            other = everywhere.setdefault(revision, op)
            if other is not op:
                findings.add('duplicate-revision', f'ops {other.index} ({other.value[0]!r}) and {op.index} '
                                                   f'({key!r}) both wrote at revision {revision}', other, op)
    _check_revision_order(everywhere, findings)
    ops = [op for ops in by_key.values() for op in ops]
    return findings.report(operations=len(ops), ok=sum(op.ok for op in ops), failed=sum(op.failed for op in ops),
                           unknown=sum(op.unknown for op in ops), unknown_resolved_applied=resolved,
                           keys=len(by_key))


def _written(op):
    return op.value[-1]


def _check_key(key, ops, findings) -> dict:
    """Judge one register's reads and CASes → {revision: the write or cas applied there}."""
    writers = {}                           # value -> the write or cas that wrote it
    applied = {}                           # revision -> write/cas op known applied there
    for op in ops:
        if op.f == 'read':
            continue
        writers[_written(op)] = op
        if op.ok:
            if op.revision in applied:
                findings.add('duplicate-revision', f'{key!r}: ops {applied[op.revision].index} and {op.index} '
                                                   f'both wrote at revision {op.revision}', applied[op.revision], op)
            applied[op.revision] = op
    reads = [op for op in ops if op.f == 'read' and op.ok]
    resolved_at = {}                       # unknown write/cas seen by a read -> the revision it had
    for read in reads:
        value, mod = read.result
        if mod == 0:
            continue
        known = applied.get(mod)
        if known is not None:
            if _written(known) != value:
                findings.add('wrong-value', f'{key!r}: read {read.index} got {value!r} at revision {mod}, where '
                                            f'op {known.index} wrote {_written(known)!r}', read, known)
            source = known
        else:
            source = writers.get(value)
            if source is None:
                findings.add('garbage-read', f'{key!r}: read {read.index} got {value!r}, which nobody wrote', read)
                continue
            if source.failed:
                findings.add('aborted-read', f'{key!r}: read {read.index} got {value!r}, written by op '
                                             f'{source.index} which failed', read, source)
                continue
            if source.ok:
                findings.add('wrong-value', f'{key!r}: read {read.index} got {value!r} at revision {mod}, but '
                                            f'op {source.index} wrote it at revision {source.revision}', read, source)
                continue
            if source.index in resolved_at and resolved_at[source.index] != mod:
                findings.add('wrong-value', f'{key!r}: read {read.index} got {value!r} at revision {mod}, but '
                                            f'op {source.index} (unknown outcome) was read at revision '
                                            f'{resolved_at[source.index]}', read, source)
                continue
            resolved_at[source.index] = mod
            applied[mod] = source          # an unknown write, seen: it applied, at that revision
        if source.start > read.end:
            findings.add('future-read', f'{key!r}: read {read.index} got {value!r}, written by op {source.index} '
                                        f'invoked after the read ended', read, source)

    revisions = sorted(applied)
    earliest_end_from = _earliest_ends(applied, revisions)
    for read in reads:
        _, mod = read.result
        later = bisect_right(revisions, mod)
        if earliest_end_from[later] < read.start:
            newer = next(applied[r] for r in revisions[later:] if applied[r].end == earliest_end_from[later])
            findings.add('stale-read', f'{key!r}: read {read.index} got revision {mod}, but op {newer.index} '
                                       f'wrote at revision {newer.revision} and completed before the read began',
                         read, newer)
    for i, revision in enumerate(revisions):
        if applied[revision].f == 'cas':
            _check_cas(key, applied[revision], revision, revisions[:i], applied, writers, findings)
    return applied


def _check_revision_order(applied, findings) -> None:
    """etcd has one revision counter for all keys: a write that completed before another began must
    have the lower revision, whichever keys they wrote."""
    revisions = sorted(applied)
    earliest_end_from = _earliest_ends(applied, revisions)
    for i, revision in enumerate(revisions):
        op = applied[revision]
        if earliest_end_from[i + 1] < op.start:
            newer = next(applied[r] for r in revisions[i + 1:] if applied[r].end == earliest_end_from[i + 1])
            findings.add('revision-order', f'op {newer.index} ({newer.value[0]!r}, revision {newer.revision}) '
                                           f'completed before op {op.index} ({op.value[0]!r}, revision '
                                           f'{revision}) began', newer, op)


def _earliest_ends(applied, revisions) -> list:
    """For each position in ``revisions``, the earliest end of the writes from there on."""
    ends = [applied[r].end if applied[r].end is not None else _INFINITY for r in revisions]
    earliest_end_from = ends + [_INFINITY]
    for i in range(len(ends) - 1, -1, -1):
        earliest_end_from[i] = min(ends[i], earliest_end_from[i + 1])
    return earliest_end_from


def _check_cas(key, op, revision, earlier, applied, writers, findings) -> None:
    expected = op.value[1]
    found = _written(applied[earlier[-1]]) if earlier else None
    if found == expected:
        return
    # An unknown write nobody read may have applied in between, with the value the CAS expected.
    candidate = writers.get(expected)
    if candidate is not None and candidate.unknown and candidate.start < op.end:
        return
    findings.add('cas-precondition', f'{key!r}: cas {op.index} expected {expected!r} and applied at revision '
                                     f'{revision}, but the value before it was {found!r}', op)


