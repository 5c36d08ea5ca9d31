"""What every workload shares: how an outcome is classified, the worker loop, and the result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from twisted.internet.defer import CancelledError, DeferredList

from ..._defer import Deferred
from ...database import Database
from ...errors import Error, OutcomeUnknown
from ...keyset import KeySet

__all__ = ('outcome_of', 'record', 'run_workers', 'WorkloadResult', 'Workload')


def outcome_of(error: BaseException) -> str:
    """'unknown' when the operation may have happened (its answer was lost, or the wait for it was
    given up), 'fail' for every other error of the library - the library promises that those wrote
    nothing. Anything else is a bug in the workload or the library and is raised."""
    if isinstance(error, (OutcomeUnknown, CancelledError)):
        return 'unknown'
    if isinstance(error, Error):
        return 'fail'
    raise error


async def record(history, op, call):
    """Await ``call()`` → ``(result, revision)`` and complete ``op`` accordingly → the outcome."""
    try:
        result, revision = await call()
    except Exception as error:
        outcome = outcome_of(error)
        getattr(history, outcome)(op, error)
        return outcome
    history.ok(op, result, revision)
    return 'ok'


class Workload:
    """A workload: ``setup(client, clients)`` once (``clients``: the workers'), ``step(worker, client)`` again and again by every worker
    until the time is up, ``finish(client)`` once the faults are healed (final reads, ground truth),
    then ``check()`` → a Report. ``history`` records every operation."""

    name = ''

    def __init__(self, history, prefix: bytes, rng, **options):
        self.history = history
        self.prefix = prefix
        self.random = rng
        self.options = options
        self._databases = {}

    def database(self, client):
        """The workload's Database (under its prefix) on ``client``, one per client."""
        db = self._databases.get(id(client))
        if db is None:
            db = self._databases[id(client)] = Database(client, prefix=self.prefix)
        return db

    async def setup(self, client, clients=()) -> None:
        pass

    async def step(self, worker, client) -> None:
        raise NotImplementedError

    async def finish(self, client) -> None:
        pass

    def check(self):
        raise NotImplementedError


class Worker:
    """One worker: ``process`` is its current process id in the history; after an unknown outcome it
    takes a new one (the old operation may still be in flight), as Jepsen does."""

    def __init__(self, index: int, count: int):
        self.index = index
        self._count = count
        self.process = index

    def retire(self) -> None:
        self.process += self._count


async def run_workers(workload, clients, seconds: float) -> None:
    """Run ``workload.step`` on every client (one worker each) for ``seconds``."""
    deadline = time.monotonic() + seconds

    async def loop(worker, client):
        while time.monotonic() < deadline:
            await workload.step(worker, client)

    workers = [Deferred.fromCoroutine(loop(Worker(i, len(clients)), client)) for i, client in enumerate(clients)]
    results = await DeferredList(workers, consumeErrors=True)
    for succeeded, result in results:
        if not succeeded:
            result.raiseException()


@dataclass
class WorkloadResult:
    """One run of a workload: its history, the checker's report and the faults injected."""

    workload: str
    seed: int
    seconds: float
    history: object
    report: object
    faults: dict = field(default_factory=dict)
    fault_log: list = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.report.valid

    def summary(self) -> str:
        counts = self.history.counts()
        faults = ', '.join(f'{kind} {n}' for kind, n in sorted(self.faults.items())) or 'none'
        anomalies = ', '.join(sorted(self.report.kinds())) or 'none'
        return (f'{self.workload} (seed {self.seed}, {self.seconds:.0f} s): {len(self.history)} operations, '
                f'ok {counts["ok"]} / failed {counts["fail"]} / unknown {counts["unknown"]}; faults: {faults}; '
                f'anomalies: {anomalies}')


async def replay(client, keys, start_revision: int, sentinel: bytes, timeout: float = 30.0) -> list:
    """Every event of ``keys`` from ``start_revision`` on, as ``(revision, type, key, value)``, up to a
    sentinel put written now (inside ``keys``) - the ground truth once the faults are healed."""
    events, reached = [], Deferred()

    def on_event(event):
        events.append((event.kv.mod_revision, event.type, event.key, event.value))
        if event.key == sentinel and not reached.called:
            reached.callback(None)

    watching = client.watch(KeySet.of(keys), on_event, start_revision=start_revision)
    try:
        await client.set(sentinel, b'end')
        await reached.addTimeout(timeout, client.reactor)
    finally:
        watching.cancel()
    return events
