"""Real-time order between operations, as the transitive reduction Elle computes with one sweep."""

from __future__ import annotations

__all__ = ('realtime_edges',)


def realtime_edges(ops):
    """Edges (a, b) - op indices - meaning a completed before b was invoked, reduced: an edge implied
    by two others is left out. Ops without an end (unknown outcome) have no outgoing edges."""
    events = []
    for op in ops:
        events.append((op.start, 1, op))             # at equal times invocations come first: not ordered
        if op.end is not None:
            events.append((op.end, 2, op))
    events.sort(key=lambda event: (event[0], event[1], event[2].index))
    frontier, predecessors, edges = set(), {}, []
    for _, kind, op in events:
        if kind == 1:
            predecessors[op.index] = set(frontier)
            edges += [(before, op.index) for before in frontier]
        else:
            frontier -= predecessors.get(op.index, set())
            frontier.add(op.index)
    return edges
