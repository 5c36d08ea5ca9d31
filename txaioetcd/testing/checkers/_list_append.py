"""Elle's list-append checker: from the lists transactions read, the order of every key's appends;
from that order, the dependencies between transactions (ww, wr, rw, and real time); any cycle is an
anomaly (G0, G1c, G-single, G2; '-realtime' when it needs real-time order: a stale read). Also the
anomalies a single read shows: aborted (G1a) or intermediate (G1b) reads, garbage, duplicates,
orders that disagree, a transaction not seeing its own appends, and lost writes."""

from __future__ import annotations

from bisect import bisect_right

from ._graph import Graph
from ._realtime import realtime_edges
from ._report import Findings

__all__ = ('check_list_append',)

_SHOWN_STEPS = 8                 # of a cycle, in an anomaly's message


def check_list_append(history):
    """Judge the ``txn`` operations of a list-append history → a Report (see the module docstring
    for the anomalies, docs/reliability.md for the workload)."""
    findings = Findings('list-append')
    txns = [op for op in history if op.f == 'txn']
    writer = {}                   # (key, element) -> the op that appended it
    appends_of = {}               # op index -> {key: [elements in order]}
    for op in txns:
        mine = appends_of.setdefault(op.index, {})
        for f, key, element in op.value:
            if f == 'append':
                writer[key, element] = op
                mine.setdefault(key, []).append(element)

    reads = []                    # (reader op, key, full list, external part)
    for op in (op for op in txns if op.ok):
        own = {}
        for f, key, seen in op.result:
            if f == 'append':
                own.setdefault(key, []).append(seen)
                continue
            seen = list(seen or [])
            mine = own.get(key, [])
            if mine and seen[-len(mine):] != mine:
                findings.add('internal', f'txn {op.index} read {key}={seen} after appending {mine} to it', op)
                external = seen
            else:
                external = seen[:len(seen) - len(mine)]
            reads.append((op, key, seen, external))

    order = _version_orders(reads, findings)
    committed = {op.index: op for op in txns if op.ok}
    for op, key, seen, external in reads:
        _check_read(op, key, seen, external, writer, appends_of, findings)
        for element in seen:
            source = writer.get((key, element))
            if source is not None and source.unknown:
                committed[source.index] = source
    resolved = sum(1 for op in committed.values() if op.unknown)

    observed = {(key, element) for key, elements in order.items() for element in elements}
    unread = {}
    for (key, element), source in writer.items():
        if source.index in committed and (key, element) not in observed:
            unread.setdefault(key, []).append((element, source))
    graph = Graph()
    for key, elements in order.items():
        for before, after in zip(elements, elements[1:]):
            a, b = writer.get((key, before)), writer.get((key, after))
            if a is not None and b is not None and a.index in committed and b.index in committed:
                graph.add(a.index, b.index, 'ww', key)
    for op, key, seen, external in reads:
        elements = order.get(key, [])
        if elements[:len(seen)] != seen:
            continue                                   # incompatible: reported already
        if external:
            source = writer.get((key, external[-1]))
            if source is not None and source.index in committed:
                graph.add(source.index, op.index, 'wr', key)
        if len(external) < len(elements):
            overwriter = writer.get((key, elements[len(external)]))
            if overwriter is not None and overwriter.index in committed:
                graph.add(op.index, overwriter.index, 'rw', key)
        elif len(seen) == len(elements):
            # A committed append nobody read comes after every element read: this read missed it.
            for element, source in unread.get(key, ()):
                if source.index != op.index:
                    graph.add(op.index, source.index, 'rw', key)
    for a, b in realtime_edges(committed.values()):
        graph.add(a, b, 'realtime')

    components = graph.components()
    for component in components:
        _classify(graph, component, findings)
    _lost_writes(committed, reads, order, writer, findings)
    return findings.report(txns=len(txns), ok=sum(op.ok for op in txns), failed=sum(op.failed for op in txns),
                           unknown=sum(op.unknown for op in txns), unknown_committed=resolved,
                           keys=len(order), cycles=len(components))


def _version_orders(reads, findings) -> dict:
    longest = {}
    for op, key, seen, _ in reads:
        if key not in longest or len(seen) > len(longest[key][0]):
            longest[key] = (seen, op)
    for op, key, seen, _ in reads:
        best, best_op = longest[key]
        if best[:len(seen)] != seen:
            findings.add('incompatible-order', f'{key}: txn {op.index} read {seen}, txn {best_op.index} read '
                                               f'{best}: not one a prefix of the other', op, best_op)
    return {key: list(seen) for key, (seen, _) in longest.items()}


def _check_read(op, key, seen, external, writer, appends_of, findings) -> None:
    if len(set(seen)) != len(seen):
        findings.add('duplicate', f'txn {op.index} read {key}={seen}: an element twice', op)
    for element in seen:
        source = writer.get((key, element))
        if source is None:
            findings.add('garbage-read', f'txn {op.index} read {element!r} in {key}, which nobody appended', op)
        elif source.failed:
            findings.add('G1a', f'txn {op.index} read {element!r} in {key}, appended by txn {source.index} '
                                f'which failed (aborted read)', op, source)
    if external:                 # what others wrote must end on a transaction's last append
        source = writer.get((key, external[-1]))
        if source is not None and source.index != op.index:
            appended = appends_of[source.index].get(key, [])
            if appended and appended[-1] != external[-1]:
                findings.add('G1b', f'txn {op.index} read {key}={seen}, whose part written by others ends on '
                                    f'{external[-1]!r}: txn {source.index} appended {appended} - an intermediate '
                                    f'state', op, source)


def _classify(graph, component, findings) -> None:
    """Report the cycle of the weakest kinds the component holds: ww only, then with wr, rw, real time."""
    for allowed in ({'ww'}, {'ww', 'wr'}, {'ww', 'wr', 'rw'}, {'ww', 'wr', 'rw', 'realtime'}):
        cycle = graph.cycle(component, allowed)
        if cycle is not None:
            break
    else:
        return
    kinds = [label[0] for _, _, label in cycle]
    rw = kinds.count('rw')
    kind = 'G0' if set(kinds) <= {'ww', 'realtime'} else 'G1c' if rw == 0 else 'G-single' if rw == 1 else 'G2'
    if 'realtime' in kinds:
        kind += '-realtime'
    steps = [f'{a} -{label[0]}{"(" + str(label[1]) + ")" if label[1] else ""}-> {b}' for a, b, label in cycle]
    if len(steps) > _SHOWN_STEPS:                       # a cycle through thousands of txns: its ends
        steps[_SHOWN_STEPS - 2:-2] = [f'... {len(steps) - _SHOWN_STEPS + 2} more ...']
    shown = ' '.join(steps)
    findings.add(kind, f'cycle of {len(cycle)} txns: {shown}', *[a for a, _, _ in cycle])


def _lost_writes(committed, reads, order, writer, findings) -> None:
    """An append seen as done (ok, or observed) must be in every read of its key that began later."""
    by_key = {}
    for op, key, seen, _ in reads:
        by_key.setdefault(key, []).append((op.start, len(seen), op.end))
    writers_by_key = {}
    for (key, element), source in writer.items():
        if source.index in committed:
            writers_by_key.setdefault(key, []).append((element, source))
    first_seen = {}                 # writer index -> when a read that saw one of its appends ended
    for op, key, seen, _ in reads:
        for element in seen:
            source = writer.get((key, element))
            if source is not None and source.index != op.index:
                first_seen[source.index] = min(first_seen.get(source.index, op.end), op.end)
    for key, entries in by_key.items():
        entries.sort()
        starts = [start for start, _, _ in entries]
        shortest_from = [0] * (len(entries) + 1)
        shortest_from[len(entries)] = float('inf')
        for i in range(len(entries) - 1, -1, -1):
            shortest_from[i] = min(entries[i][1], shortest_from[i + 1])
        positions = {element: i for i, element in enumerate(order.get(key, []))}
        for element, source in writers_by_key.get(key, ()):
            done = source.end if source.ok else first_seen.get(source.index)
            if done is None:
                continue
            later = bisect_right(starts, done)
            if later == len(entries):
                continue
            position = positions.get(element)
            if position is None or shortest_from[later] <= position:
                findings.add('lost-write', f'{element!r} appended to {key} by txn {source.index} is missing '
                                           f'from a read of {key} that began after it was done', source)
