"""A long run of the fault harness: every workload, round after round, on a 3-member cluster whose peer
links the harness controls, while the nemesis injects faults; prints per workload the operations, ok /
failed / unknown, faults injected and anomalies found.

    python benchmarks/faults_run.py --minutes 10 --seed 1 [--round 60] [--workloads bank,watch] [--json out.json]

Each round runs one workload for ``--round`` seconds with seed ``seed + round number`` (printed, so a
round that finds something can be replayed with ``--seed`` alone and ``--minutes`` = one round). The
lock workload runs fenced; ``--unfenced`` adds rounds of the unfenced one to show what the fence
prevents. Exit code 1 if any (fenced) round found an anomaly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from txaioetcd.testing import EtcdCluster
from txaioetcd.testing.workloads import WORKLOADS, run_workload

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, load_average  # noqa: E402


def _add(totals, result, label):
    entry = totals.setdefault(label, {'rounds': 0, 'seconds': 0.0, 'operations': 0, 'ok': 0, 'fail': 0,
                                      'unknown': 0, 'faults': {}, 'anomalies': {}, 'seeds': []})
    counts = result.history.counts()
    entry['rounds'] += 1
    entry['seconds'] += result.seconds
    entry['operations'] += len(result.history)
    for outcome in ('ok', 'fail', 'unknown'):
        entry[outcome] += counts[outcome]
    for kind, n in result.faults.items():
        entry['faults'][kind] = entry['faults'].get(kind, 0) + n
    for anomaly in result.report.anomalies:
        entry['anomalies'][anomaly.kind] = entry['anomalies'].get(anomaly.kind, 0) + 1
    if result.report.anomalies:
        entry['seeds'].append(result.seed)


def _print(totals):
    print(f'{"workload":<16}{"rounds":>7}{"ops":>9}{"ok":>8}{"failed":>8}{"unknown":>8}  faults / anomalies')
    for label, entry in totals.items():
        faults = ', '.join(f'{kind} {n}' for kind, n in sorted(entry['faults'].items())) or 'none'
        anomalies = ', '.join(f'{kind} {n}' for kind, n in sorted(entry['anomalies'].items())) or 'none'
        print(f'{label:<16}{entry["rounds"]:>7}{entry["operations"]:>9}{entry["ok"]:>8}{entry["fail"]:>8}'
              f'{entry["unknown"]:>8}  faults: {faults}; anomalies: {anomalies}')


async def main(reactor, args) -> int:
    names = args.workloads.split(',') if args.workloads else list(WORKLOADS)
    plan = [(name, {}) for name in names]
    if args.unfenced:
        plan.append(('lock', {'fenced': False, 'faults': ()}))
    cluster = EtcdCluster(size=3, proxied=True)
    await deferToThread(cluster.start)
    totals = {}
    started, load_before = time.monotonic(), load_average()
    bad = 0
    try:
        number = 0
        while time.monotonic() - started < args.minutes * 60:
            name, options = plan[number % len(plan)]
            label = name if options.get('fenced', True) else 'lock-unfenced'
            seed = args.seed + number
            seconds = min(args.round, max(5.0, args.minutes * 60 - (time.monotonic() - started)))
            result = await run_workload(reactor, cluster, name, seconds=seconds, seed=seed, **options)
            print(result.summary(), flush=True)
            _add(totals, result, label)
            if not result.valid and label != 'lock-unfenced':
                bad += 1
                print(result.report, flush=True)
            number += 1
    finally:
        await deferToThread(cluster.close)
    print(f'\n{args.minutes:g} minutes requested, {(time.monotonic() - started) / 60:.1f} run; '
          f'load {load_before} -> {load_average()}')
    _print(totals)
    if args.json:
        with open(args.json, 'w') as out:
            json.dump({'environment': environment(reactor), 'args': vars(args), 'totals': totals}, out, indent=1)
    return 1 if bad else 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--round', type=float, default=60.0, help='seconds per workload round')
    parser.add_argument('--workloads', default='', help=f'comma-separated, of: {", ".join(WORKLOADS)}')
    parser.add_argument('--unfenced', action='store_true', help='add rounds of the unfenced lock workload')
    parser.add_argument('--json', default='')
    return parser.parse_args(argv)


if __name__ == '__main__':
    arguments = parse_args()

    async def _main(reactor):
        code = await main(reactor, arguments)
        if code:
            raise SystemExit(code)      # react() exits with it
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor)))
