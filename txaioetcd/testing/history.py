"""Histories: what a workload asked for and what it was told, for the checkers to judge.

Each operation is recorded when it is invoked and again when it completes, Jepsen's way: ``ok`` (it
happened, with its result and, where known, etcd's revision), ``fail`` (it certainly did not happen)
or ``unknown`` (it may or may not have: the answer was lost; Jepsen's ``info``). An operation still
running when the history is closed is unknown. Checkers never assume how an unknown one ended: they
decide it from what later reads observed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ('History', 'Operation', 'OUTCOMES')

OUTCOMES = ('ok', 'fail', 'unknown')


@dataclass
class Operation:
    """One operation of a history.

    ``process`` is the worker that ran it (a worker runs one operation at a time); ``f`` what it did
    (``'txn'``, ``'read'``, ``'write'``, ``'cas'``, ...); ``value`` what it was asked to do; ``result``
    what came back (for an ok operation); ``revision`` etcd's revision of it where known (the commit's
    revision for a write, the snapshot's for a read); ``start`` and ``end`` monotonic seconds
    (``end`` None while running, and for an unknown outcome whose end is not known); ``error`` the
    exception's text for fail and unknown.
    """

    index: int
    process: int
    f: str
    value: Any
    start: float
    outcome: str | None = None
    result: Any = None
    revision: int | None = None
    end: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == 'ok'

    @property
    def failed(self) -> bool:
        return self.outcome == 'fail'

    @property
    def unknown(self) -> bool:
        return self.outcome == 'unknown'

    def __repr__(self):
        took = f' {1000 * (self.end - self.start):.0f}ms' if self.end is not None else ''
        rev = f' r{self.revision}' if self.revision is not None else ''
        return (f'<op {self.index} p{self.process} {self.f} {self.value!r} -> {self.outcome}'
                f'{rev}{took} {self.result if self.ok else self.error or ""!r}>')


class History:
    """An append-only history of operations; ``invoke`` starts one, and the Operation it returns is
    completed with ``ok``, ``fail`` or ``unknown`` (on this History). Times come from ``clock``
    (time.monotonic), so a history's real-time order is that of this process."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.operations: list[Operation] = []
        self.closed = False

    def invoke(self, process: int, f: str, value: Any = None) -> Operation:
        if self.closed:
            raise RuntimeError('this history is closed')
        op = Operation(len(self.operations), process, f, value, self._clock())
        self.operations.append(op)
        return op

    def ok(self, op: Operation, result: Any = None, revision: int | None = None) -> Operation:
        return self._complete(op, 'ok', result=result, revision=revision)

    def fail(self, op: Operation, error: BaseException | str | None = None) -> Operation:
        return self._complete(op, 'fail', error=_text(error))

    def unknown(self, op: Operation, error: BaseException | str | None = None) -> Operation:
        return self._complete(op, 'unknown', error=_text(error))

    def _complete(self, op: Operation, outcome: str, result=None, revision=None, error=None) -> Operation:
        if op.outcome is not None:
            raise RuntimeError(f'{op!r} is complete already')
        op.outcome, op.result, op.revision, op.error = outcome, result, revision, error
        op.end = self._clock() if outcome != 'unknown' else None
        return op

    def close(self) -> None:
        """End the history: operations still running become unknown."""
        for op in self.operations:
            if op.outcome is None:
                self.unknown(op, 'still running when the history ended')
        self.closed = True

    def counts(self) -> dict[str, int]:
        """How many operations ended ok, fail and unknown."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for op in self.operations:
            if op.outcome is not None:
                counts[op.outcome] += 1
        return counts

    def __len__(self):
        return len(self.operations)

    def __iter__(self):
        return iter(self.operations)


def _text(error) -> str | None:
    if error is None or isinstance(error, str):
        return error
    return f'{type(error).__name__}: {error}'
