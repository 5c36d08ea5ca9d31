"""Puts with 64 in flight against a 3-member cluster while the member the client uses is stopped and
started again: ops/s before, during and after, the longest stall, and a check that every
acknowledged write is readable afterwards.

    python benchmarks/failover_bench.py [--seconds 12] [--runs 3]

It starts its own 3-member cluster (``txaioetcd.testing.EtcdCluster``) and stops it at the end. The
member is stopped a third into the run and started again at two thirds (from a thread, so the reactor
never blocks). Every put writes a key of its own; a put whose answer was lost (OutcomeUnknown) is
counted, not retried - it may or may not have landed. Targets: no stall over 2 s, no acknowledged
write lost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from _common import load_average, sleep  # noqa: E402

from txaioetcd import Client, KeySet, errors  # noqa: E402
from txaioetcd.testing import EtcdCluster  # noqa: E402

VALUE = b'v' * 100
IN_FLIGHT = 64


class Load:
    """Keeps 64 puts in flight until told to stop; records completion times."""

    def __init__(self, client, prefix: bytes):
        self.client = client
        self.prefix = prefix
        self.issued = 0
        self.acked = []            # (time, key)
        self.unknown = 0
        self.failed = 0
        self.failures = {}         # error class name -> count
        self.stopping = False
        self.in_flight = 0
        self.drained = Deferred()

    def start(self):
        for _ in range(IN_FLIGHT):
            self._launch()

    def _launch(self):
        key = self.prefix + b'%08d' % self.issued
        self.issued += 1
        self.in_flight += 1
        d = self.client.set(key, VALUE, timeout=5)
        d.addCallbacks(self._ok, self._error, callbackArgs=(key,))

    def _ok(self, _, key):
        self.acked.append((time.monotonic(), key))
        self._next()

    def _error(self, failure):
        if failure.check(errors.OutcomeUnknown):
            self.unknown += 1
        else:
            self.failed += 1
            name = type(failure.value).__name__
            self.failures[name] = self.failures.get(name, 0) + 1
        self._next()

    def _next(self):
        self.in_flight -= 1
        if not self.stopping:
            self._launch()
        elif self.in_flight == 0:
            self.drained.callback(None)


async def one_run(reactor, cluster, seconds: float, number: int) -> dict:
    client = Client(reactor, endpoints=cluster.endpoints, timeout=5)
    prefix = b'/txaioetcd-failover-bench/%d/' % number
    load = Load(client, prefix)
    await client.status()
    victim = cluster.endpoints.index(client.endpoint)
    t0 = time.monotonic()
    load.start()
    await sleep(reactor, seconds / 3)
    t_stop = time.monotonic()
    await deferToThread(cluster.stop_member, victim)
    await sleep(reactor, seconds / 3 - (time.monotonic() - t_stop))
    t_start = time.monotonic()
    await deferToThread(cluster.start_member, victim)
    await sleep(reactor, max(0.0, seconds - (time.monotonic() - t0)))
    load.stopping = True
    await load.drained
    t_end = time.monotonic()

    times = [t for t, _ in load.acked]
    gaps = [b - a for a, b in zip([t0] + times, times + [t_end])]

    def rate(start, end):
        return sum(1 for t in times if start <= t < end) / max(end - start, 1e-9)

    # Every acknowledged write must be readable now.
    stored = await client.get(KeySet(prefix, prefix=True), keys_only=True, timeout=30)
    present = {kv.key for kv in stored.kvs}
    lost = sum(1 for _, key in load.acked if key not in present)
    await client.delete(KeySet(prefix, prefix=True), timeout=30)
    await client.close()
    return {'victim': victim, 'before': rate(t0, t_stop), 'during': rate(t_stop, t_start),
            'after': rate(t_start, t_end), 'stall_s': max(gaps), 'acked': len(load.acked),
            'unknown': load.unknown, 'failed': load.failed, 'failures': load.failures, 'lost': lost}


async def main(reactor, args):
    print(f'starting a 3-member etcd cluster ... (load average {load_average()})', flush=True)
    cluster = EtcdCluster(size=3)
    await deferToThread(cluster.start)
    try:
        results = []
        for number in range(args.runs):
            result = await one_run(reactor, cluster, args.seconds, number)
            results.append(result)
            print(f'  run {number + 1}/{args.runs}: stopped member {result["victim"]}; puts/s before '
                  f'{result["before"]:,.0f}, during {result["during"]:,.0f}, after {result["after"]:,.0f}; '
                  f'longest stall {result["stall_s"]:.2f} s; {result["acked"]:,} acknowledged, '
                  f'{result["unknown"]} unknown outcome, {result["failed"]} failed {result["failures"] or ""}, '
                  f'{result["lost"]} lost',
                  flush=True)
        med = {k: statistics.median(r[k] for r in results) for k in ('before', 'during', 'after', 'stall_s')}
        worst_stall = max(r['stall_s'] for r in results)
        lost = sum(r['lost'] for r in results)
        print(f'\nmedian of {args.runs}: puts/s before {med["before"]:,.0f}, during {med["during"]:,.0f}, '
              f'after {med["after"]:,.0f}; longest stall {worst_stall:.2f} s (target <= 2 s: '
              f'{"PASS" if worst_stall <= 2 else "MISS"}); acknowledged writes lost: {lost} '
              f'({"PASS" if lost == 0 else "MISS"})')
    finally:
        await deferToThread(cluster.close)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=12.0)
    parser.add_argument('--runs', type=int, default=3)
    return parser.parse_args(argv)


if __name__ == '__main__':
    args = parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))
