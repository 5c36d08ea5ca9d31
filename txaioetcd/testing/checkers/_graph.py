"""Dependency graphs between operations: edges labelled by kind, strongly connected components
(iterative Tarjan: histories of 50,000 operations need no recursion), and a short cycle inside one.

Both searches are linear in the part of the graph they look at: a stale read under a partition can
put thousands of transactions into one component (real-time edges chain everything that ran in
between), and a cycle search started from every node in turn would be quadratic exactly then."""

from __future__ import annotations

from collections import deque

__all__ = ('Graph',)


class Graph:
    def __init__(self):
        self.edges: dict[int, dict[int, tuple]] = {}     # node -> successor -> ((kind, why), ...)

    def add(self, a: int, b: int, kind: str, why: str = '') -> None:
        if a == b:
            return
        successors = self.edges.setdefault(a, {})
        labels = successors.get(b, ())
        if not any(label[0] == kind for label in labels):
            successors[b] = labels + ((kind, why),)
        self.edges.setdefault(b, {})

    def components(self, nodes=None, allowed=None) -> list[list[int]]:
        """The strongly connected components with more than one node: of the whole graph, or of the
        subgraph of ``nodes`` joined by edges of the ``allowed`` kinds."""
        successors = self._successors(nodes, allowed)
        index, low, on_stack, stack, found = {}, {}, set(), [], []
        counter = 0
        for root in (self.edges if nodes is None else nodes):
            if root in index:
                continue
            work = [(root, successors(root))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, pending = work[-1]
                advanced = False
                for successor in pending:
                    if successor not in index:
                        index[successor] = low[successor] = counter
                        counter += 1
                        stack.append(successor)
                        on_stack.add(successor)
                        work.append((successor, successors(successor)))
                        advanced = True
                        break
                    if successor in on_stack:
                        low[node] = min(low[node], index[successor])
                if advanced:
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
        return found

    def cycle(self, nodes, allowed: set) -> list | None:
        """A short cycle among ``nodes`` using only edges of the ``allowed`` kinds →
        ``[(a, b, (kind, why)), ...]``, or None: the components of that subgraph first, then one
        breadth-first search inside one of them, from a node that is certainly on a cycle."""
        components = self.components(nodes, allowed)
        if not components:
            return None
        members = set(components[0])
        start = min(members)
        parents = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for successor, labels in self.edges[node].items():
                label = _label(labels, allowed) if successor in members else None
                if label is None:
                    continue
                if successor == start:
                    path = [(node, start, label)]
                    while parents[node] is not None:
                        previous, previous_label = parents[node]
                        path.append((previous, node, previous_label))
                        node = previous
                    return list(reversed(path))
                if successor not in parents:
                    parents[successor] = (node, label)
                    queue.append(successor)
        raise AssertionError(f'no cycle through {start} inside its own strongly connected component')

    def _successors(self, nodes, allowed):
        edges = self.edges
        if nodes is None and allowed is None:
            return lambda node: iter(edges[node])
        members = set(edges) if nodes is None else set(nodes)
        return lambda node: (successor for successor, labels in edges[node].items()
                             if successor in members and _label(labels, allowed) is not None)


def _label(labels, allowed):
    """The first of an edge's labels of an ``allowed`` kind (any kind when ``allowed`` is None)."""
    return next((label for label in labels if allowed is None or label[0] in allowed), None)
