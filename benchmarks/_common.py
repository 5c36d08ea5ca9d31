"""Shared pieces of the benchmark scripts: the windowed load driver, CPU accounting, the table.

Not a public module; ``client_bench.py`` and ``http_layer.py`` import it from this directory.

Measurement model
-----------------
* A *workload* is a function ``call(i) -> Deferred`` (the i-th operation) plus a window size N.
* ``run_window`` keeps exactly N operations outstanding: every completion starts the next one, until
  the run's time budget is spent (and at least ``min_ops`` completed); then the window drains. N = 1
  is a sequential loop (each operation starts when the previous one has answered).
* ops/s = completed operations / wall time (``time.perf_counter``) from the first launch to the last
  completion, drain included.
* CPU ms/op = (user + system CPU of *this process*, ``getrusage(RUSAGE_SELF)``) delta over the same
  section / completed operations. etcd is a child process and is not counted (RUSAGE_CHILDREN would
  only include it after it exits anyway). It includes the harness's own cost, which is a few µs/op.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

from twisted.internet.defer import Deferred

__all__ = ('RunResult', 'Summary', 'run_window', 'cpu_seconds', 'cpu_split', 'print_table', 'print_grid', 'remove_and_close',
           'environment', 'load_average', 'sleep')


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_split() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def load_average() -> str:
    try:
        return ' '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return '?'


def sleep(reactor, seconds: float) -> Deferred:
    d = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@dataclass
class RunResult:
    ops: int
    seconds: float
    cpu_seconds: float
    items: int = 0           # e.g. keys returned by range reads
    user_seconds: float = 0.0    # the user part of cpu_seconds
    system_seconds: float = 0.0  # the kernel part (syscalls: send, recv, epoll, loopback TCP)
    server_seconds: float | None = None     # etcd's own CPU over the run, when its PID is known

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_op(self) -> float:
        return 1000.0 * self.cpu_seconds / self.ops if self.ops else 0.0

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_ms_per_op(self) -> float | None:
        if self.server_seconds is None or not self.ops:
            return None
        return 1000.0 * self.server_seconds / self.ops

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(ops_per_s=self.ops_per_s, cpu_ms_per_op=self.cpu_ms_per_op, items_per_s=self.items_per_s,
                 server_ms_per_op=self.server_ms_per_op,
                 user_ms_per_op=1000.0 * self.user_seconds / self.ops if self.ops else 0.0,
                 system_ms_per_op=1000.0 * self.system_seconds / self.ops if self.ops else 0.0)
        return d


class _Window:
    """Keeps ``concurrency`` calls in flight until the time budget is spent."""

    def __init__(self, call, concurrency: int, seconds: float, min_ops: int, max_ops: int | None):
        self.call = call
        self.concurrency = concurrency
        self.seconds = seconds
        self.min_ops = min_ops
        self.max_ops = max_ops
        self.issued = 0
        self.completed = 0
        self.in_flight = 0
        self.stopping = False
        self.error = None
        self.done = Deferred()

    def start(self) -> Deferred:
        self.user0, self.sys0 = cpu_split()
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.seconds
        for _ in range(self.concurrency):
            if self.stopping:
                break
            self._launch()
        return self.done

    def _launch(self) -> None:
        i = self.issued
        self.issued = i + 1
        self.in_flight += 1
        if self.max_ops is not None and self.issued >= self.max_ops:
            self.stopping = True
        self.call(i).addCallbacks(self._ok, self._failed)

    def _ok(self, _result) -> None:
        self.in_flight -= 1
        self.completed += 1
        if not self.stopping and (self.completed >= self.min_ops and time.perf_counter() >= self.deadline):
            self.stopping = True
        if not self.stopping:
            self._launch()
        elif self.in_flight == 0:
            self._finish()

    def _failed(self, failure) -> None:
        self.in_flight -= 1
        if self.error is None:
            self.error = failure
        self.stopping = True
        if self.in_flight == 0:
            self._finish()

    def _finish(self) -> None:
        elapsed = time.perf_counter() - self.t0
        user, system = cpu_split()
        user -= self.user0
        system -= self.sys0
        if self.error is not None:
            self.done.errback(self.error)
        else:
            self.done.callback(RunResult(self.completed, elapsed, user + system, 0, user, system))


def run_window(call, concurrency: int, seconds: float, min_ops: int = 1,
               max_ops: int | None = None) -> Deferred:
    """Run ``call(i)`` with exactly ``concurrency`` outstanding until ``seconds`` have passed and at least
    ``min_ops`` completed (or ``max_ops`` were issued) → Deferred[RunResult]. The first failure stops
    the run and is raised."""
    return _Window(call, concurrency, seconds, min_ops, max_ops).start()


@dataclass
class Summary:
    name: str
    in_flight: int
    runs: list = field(default_factory=list)            # RunResult per run
    min_ops_per_s: float | None = None                   # target
    max_cpu_ms: float | None = None                      # target
    item_label: str = ''                                 # e.g. 'keys' for range reads

    @property
    def ops_per_s(self) -> float:
        return statistics.median(r.ops_per_s for r in self.runs)

    @property
    def cpu_ms_per_op(self) -> float:
        return statistics.median(r.cpu_ms_per_op for r in self.runs)

    @property
    def items_per_s(self) -> float:
        return statistics.median(r.items_per_s for r in self.runs)

    @property
    def server_ms_per_op(self) -> float | None:
        known = [r.server_ms_per_op for r in self.runs if r.server_ms_per_op is not None]
        return statistics.median(known) if known else None

    @property
    def user_sys_text(self) -> str:
        user = statistics.median(1000.0 * r.user_seconds / r.ops for r in self.runs if r.ops)
        system = statistics.median(1000.0 * r.system_seconds / r.ops for r in self.runs if r.ops)
        return f'{user:.3f}/{system:.3f}'

    def target_text(self) -> str:
        parts = []
        if self.min_ops_per_s is not None:
            parts.append(f'>= {self.min_ops_per_s:,.0f}/s')
        if self.max_cpu_ms is not None:
            parts.append(f'<= {self.max_cpu_ms:g} ms')
        return ', '.join(parts) or '-'

    def verdict(self) -> str:
        if self.min_ops_per_s is None and self.max_cpu_ms is None:
            return ''
        missed = []
        if self.min_ops_per_s is not None and self.ops_per_s < self.min_ops_per_s:
            missed.append('rate')
        if self.max_cpu_ms is not None and self.cpu_ms_per_op > self.max_cpu_ms:
            missed.append('cpu')
        return 'PASS' if not missed else 'MISS (' + '+'.join(missed) + ')'

    def as_dict(self) -> dict:
        return {
            'name': self.name, 'in_flight': self.in_flight,
            'ops_per_s_median': self.ops_per_s, 'cpu_ms_per_op_median': self.cpu_ms_per_op,
            'etcd_cpu_ms_per_op_median': self.server_ms_per_op,
            'ops_per_s_min': min(r.ops_per_s for r in self.runs),
            'ops_per_s_max': max(r.ops_per_s for r in self.runs),
            'items_per_s_median': self.items_per_s if self.item_label else None,
            'item_label': self.item_label or None,
            'target': self.target_text(), 'verdict': self.verdict() or None,
            'runs': [r.as_dict() for r in self.runs],
        }


def print_table(title: str, summaries: list, targets: bool = True, file=sys.stdout) -> None:
    header = ['benchmark', 'in flight', 'ops/s (median)', 'CPU ms/op', 'user/sys ms', 'min ops/s', 'max ops/s',
              'ops/run']
    server = any(s.server_ms_per_op is not None for s in summaries)
    if server:
        header.insert(5, 'etcd ms/op')
    if targets:
        header += ['target', 'result']
    rows = []
    notes = []
    for s in summaries:
        row = [s.name, str(s.in_flight), f'{s.ops_per_s:,.0f}', f'{s.cpu_ms_per_op:.3f}', s.user_sys_text,
               f'{min(r.ops_per_s for r in s.runs):,.0f}', f'{max(r.ops_per_s for r in s.runs):,.0f}',
               f'{int(statistics.median(r.ops for r in s.runs)):,}']
        if server:
            row.insert(5, '-' if s.server_ms_per_op is None else f'{s.server_ms_per_op:.3f}')
        if targets:
            row += [s.target_text(), s.verdict() or '-']
        rows.append(row)
        if s.item_label:
            notes.append(f'  {s.name}: {s.items_per_s:,.0f} {s.item_label}/s (median; '
                         f'{s.ops_per_s:,.2f} ranges/s x {s.runs[0].items // max(s.runs[0].ops, 1):,} '
                         f'{s.item_label} per range)')
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = '  '.join('-' * w for w in widths)
    print(f'\n{title}', file=file)
    print(line, file=file)
    print('  '.join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))),
          file=file)
    print(line, file=file)
    for r in rows:
        print('  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))),
              file=file)
    print(line, file=file)
    for n in notes:
        print(n, file=file)
    file.flush()


def print_grid(header: tuple, rows: list, text_columns: int = 1, file=sys.stdout) -> None:
    """A table of strings between rulers: the first ``text_columns`` left-aligned, the rest right."""
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    line = '  '.join('-' * w for w in widths)
    print(line, file=file)
    for row in [header] + rows:
        print('  '.join(c.ljust(w) if i < text_columns else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))), file=file)
        if row is header:
            print(line, file=file)
    print(line, file=file, flush=True)


def environment(reactor) -> dict:
    import twisted
    return {
        'python': sys.version.split()[0], 'implementation': platform.python_implementation(),
        'twisted': twisted.__version__, 'reactor': type(reactor).__module__ + '.' + type(reactor).__name__,
        'cpus': os.cpu_count(), 'platform': platform.platform(),
    }


async def remove_and_close(client, prefix: bytes) -> None:
    """Delete every key a benchmark wrote under ``prefix``, then close its client."""
    from txaioetcd import KeySet
    try:
        await client.delete(KeySet(prefix, prefix=True), timeout=60)
    finally:
        await client.close()
