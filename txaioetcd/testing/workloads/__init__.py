"""Workloads for the fault harness: each drives real clients against an ``EtcdCluster`` while the
nemesis injects faults, records a History, and hands it to its checker.

``await run_workload(reactor, cluster, 'bank', seconds=20, seed=7)`` → a ``WorkloadResult`` (history,
report, faults injected; ``summary()`` is one line). A failing run prints its seed: the same seed
makes the same choices again (which faults, members, operations), the cluster's timing aside.

- ``list-append`` (Elle) through Database transactions: serializability, no aborted or lost write seen;
- ``register`` with CAS through the raw client: linearizability, with etcd's revisions;
- ``bank`` through ``db.run``: totals, no transfer lost or applied twice;
- ``watch``: several watchers see exactly the revision sequence of the writes;
- ``lock`` with fencing (``fenced=False`` shows what fencing prevents).
"""

from __future__ import annotations

import random
import time
import uuid

from ..._defer import Deferred
from ...client import Client
from ..history import History
from ..nemesis import FAULTS, Nemesis
from ._bank import Bank
from ._common import WorkloadResult, run_workers
from ._list_append import ListAppend
from ._lock import LockWorkload
from ._register import Register
from ._watch import Watch

__all__ = ('WORKLOADS', 'run_workload', 'WorkloadResult')

WORKLOADS = {workload.name: workload for workload in (ListAppend, Register, Bank, Watch, LockWorkload)}


async def run_workload(reactor, cluster, name: str, *, seconds: float, seed: int, faults=FAULTS,
                       workers: int = 4, client_timeout: float = 2.0, **options) -> WorkloadResult:
    """Run workload ``name`` for ``seconds`` with ``workers`` clients (each preferring another member)
    while a ``Nemesis`` injects ``faults`` (none when empty), then heal, make the final reads, check.
    ``options`` go to the workload (e.g. ``fenced=False`` for ``lock``)."""
    if name not in WORKLOADS:
        raise ValueError(f'unknown workload {name!r}; known: {", ".join(WORKLOADS)}')
    rng = random.Random(seed)
    history = History()
    prefix = f'jepsen/{name}/{seed}/{uuid.uuid4().hex[:8]}/'.encode()
    workload = WORKLOADS[name](history, prefix, rng, **options)
    endpoints = cluster.endpoints
    clients = [Client(reactor, endpoints=endpoints[i % len(endpoints):] + endpoints[:i % len(endpoints)],
                      timeout=client_timeout) for i in range(workers)]
    control = Client(reactor, endpoints=endpoints, timeout=10)
    nemesis = Nemesis(reactor, cluster, seconds, seed, faults=faults) if faults else None
    started = time.monotonic()
    try:
        await workload.setup(control, clients)
        chaos = Deferred.fromCoroutine(nemesis.run()) if nemesis is not None else None
        try:
            await run_workers(workload, clients, seconds)
        finally:
            if chaos is not None:
                nemesis.stop()
                await chaos
        await workload.finish(control)
    finally:
        for client in clients + [control]:
            await client.close()
    history.close()
    return WorkloadResult(name, seed, time.monotonic() - started, history, workload.check(),
                          nemesis.counts() if nemesis else {}, nemesis.log if nemesis else [])
