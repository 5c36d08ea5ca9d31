"""Dependency graphs between operations: edges labelled by kind, strongly connected components
(iterative Tarjan: histories of 50,000 operations need no recursion), and a short cycle inside one."""

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

    def components(self) -> list[list[int]]:
        """The strongly connected components with more than one node."""
        index, low, on_stack, stack, found = {}, {}, set(), [], []
        counter = 0
        for root in self.edges:
            if root in index:
                continue
            work = [(root, iter(self.edges[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, successors = work[-1]
                advanced = False
                for successor in successors:
                    if successor not in index:
                        index[successor] = low[successor] = counter
                        counter += 1
                        stack.append(successor)
                        on_stack.add(successor)
                        work.append((successor, iter(self.edges[successor])))
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
        ``[(a, b, (kind, why)), ...]``, or None."""
        members = set(nodes)
        for start in sorted(members):
            parents = {start: None}
            queue = deque([start])
            while queue:
                node = queue.popleft()
                for successor, labels in self.edges.get(node, {}).items():
                    if successor not in members:
                        continue
                    label = next((label for label in labels if label[0] in allowed), None)
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
        return None
