"""The nemesis: a seeded, time-bounded schedule of faults on an ``EtcdCluster`` (Jepsen's word).

Each round picks one fault, holds it for a while, undoes it, and lets the cluster recover:

- ``isolate-leader``: the leader is cut off from the others (a new one is elected on the majority
  side; the old one keeps believing it leads for a moment);
- ``partition``: a random minority is cut off from a random majority;
- ``pause``: a member (the leader half the time) is stopped with SIGSTOP, then continued;
- ``kill``: a member is killed with SIGKILL, then restarted with its data;
- ``delay``: every peer link gets latency;
- ``drop``: every peer connection is closed once (members redial).

The cluster's calls block (they wait for processes), so they run in a thread of the reactor's pool:
the clients under test keep running meanwhile. A run is fully determined by its seed as far as the
choices go (which fault, which member, how long); the timing of the cluster is not. ``log`` keeps
what was done, with times, for the report.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool

__all__ = ('Nemesis', 'FAULTS', 'Fault')

FAULTS = ('isolate-leader', 'partition', 'pause', 'kill', 'delay', 'drop')


@dataclass
class Fault:
    kind: str
    detail: str
    start: float
    end: float | None = None


class Nemesis:
    """Injects faults into ``cluster`` (an ``EtcdCluster(proxied=True)``; without proxies only
    ``pause`` and ``kill`` are possible) for ``seconds``, chosen by ``random.Random(seed)``.

    ``faults`` limits the kinds used. ``hold`` and ``quiet`` are the ranges (seconds) a fault lasts and
    the calm after it. ``await nemesis.run()`` returns once the time is up and every fault is undone.
    """

    def __init__(self, reactor, cluster, seconds: float, seed: int, *, faults=FAULTS,
                 hold=(0.5, 2.0), quiet=(0.5, 1.5)):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f'unknown fault kind(s) {sorted(unknown)}; known: {", ".join(FAULTS)}')
        self._reactor = reactor
        self.cluster = cluster
        self.seconds = seconds
        self.seed = seed
        self.random = random.Random(seed)
        self.faults = tuple(faults)
        self.hold = hold
        self.quiet = quiet
        self.log: list[Fault] = []
        self._stopping = False

    def counts(self) -> dict[str, int]:
        """How many faults of each kind were injected."""
        counts: dict[str, int] = {}
        for fault in self.log:
            counts[fault.kind] = counts.get(fault.kind, 0) + 1
        return counts

    def stop(self) -> None:
        """End the schedule early (the current fault is still undone)."""
        self._stopping = True

    async def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        try:
            while not self._stopping and time.monotonic() + self.hold[0] < deadline:
                kind = self.random.choice(self.faults)
                hold = min(self.random.uniform(*self.hold), max(0.0, deadline - time.monotonic()))
                await self._inject(kind, hold)
                await self._sleep(self.random.uniform(*self.quiet))
        finally:
            await self._blocking(self._undo_everything)

    async def _inject(self, kind: str, hold: float) -> None:
        fault = Fault(kind, '', time.monotonic())
        self.log.append(fault)
        undo = await self._blocking(getattr(self, '_' + kind.replace('-', '_')), fault)
        try:
            await self._sleep(hold)
        finally:
            await self._blocking(undo)
            fault.end = time.monotonic()

    # -- the faults: each does its harm in a pool thread and returns what undoes it

    def _isolate_leader(self, fault: Fault):
        leader = self._leader()
        self.cluster.isolate(leader)
        fault.detail = f'm{leader} cut off from the others'
        return self.cluster.heal

    def _partition(self, fault: Fault):
        members = list(range(self.cluster.size))
        self.random.shuffle(members)
        minority = members[:(self.cluster.size - 1) // 2] or members[:1]
        majority = [m for m in members if m not in minority]
        self.cluster.partition(sorted(minority), sorted(majority))
        fault.detail = f'{sorted(minority)} | {sorted(majority)}'
        return self.cluster.heal

    def _pause(self, fault: Fault):
        index = self._leader() if self.random.random() < 0.5 else self.random.randrange(self.cluster.size)
        self.cluster.pause_member(index)
        fault.detail = f'SIGSTOP m{index}'
        return lambda: self.cluster.resume_member(index)

    def _kill(self, fault: Fault):
        index = self.random.randrange(self.cluster.size)
        self.cluster.kill_member(index)
        fault.detail = f'SIGKILL m{index}'
        return lambda: self.cluster.start_member(index)

    def _delay(self, fault: Fault):
        seconds = self.random.choice((0.05, 0.1, 0.2))
        self.cluster.delay(seconds)
        fault.detail = f'{seconds * 1000:.0f} ms on every peer link'
        return self.cluster.heal

    def _drop(self, fault: Fault):
        self.cluster.drop_connections()
        fault.detail = 'every peer connection closed'
        return lambda: None

    def _leader(self) -> int:
        try:
            return self.cluster.leader(timeout=5)
        except RuntimeError:        # no leader right now (an election under way): any member will do
            return self.random.randrange(self.cluster.size)

    def _undo_everything(self) -> None:
        cluster = self.cluster
        for index in cluster.paused:
            cluster.resume_member(index)
        if cluster.proxied:
            cluster.heal()
        for index, member in enumerate(cluster.members):
            if not member.running:
                cluster.start_member(index)
        cluster.leader(timeout=30)          # healthy again before the final reads:
        cluster.wait_connected(timeout=30)  # a write forwarded over a link still down would be dropped

    # -- plumbing

    def _blocking(self, fn, *args):
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    def _sleep(self, seconds: float):
        return deferLater(self._reactor, seconds, lambda: None)
