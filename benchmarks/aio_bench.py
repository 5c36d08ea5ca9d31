"""The asyncio face next to the Twisted face: the same workloads, in one process, in one run.

    python benchmarks/aio_bench.py [--runs 5] [--seconds 2] [--transports grpc,gateway] [--json out.json]

Without ``--url`` it starts an embedded etcd (``LocalEtcd(fast=True)``) and stops it again.

Both faces run the same user code - N coroutines, each ``await``-ing one call after another
(``await client.set(key, value)``) - which is what an application on either loop writes:

    twisted   ``txaioetcd.Client(reactor)`` on Twisted's epoll reactor, the coroutines run with
              ``Deferred.fromCoroutine`` (the reactor is driven here by its own iterate loop, so that
              both faces can live in one process)
    asyncio   ``txaioetcd.aio.Client()`` on an asyncio loop (``run_until_complete``), the coroutines
              run as asyncio Tasks; each awaited call goes through ``Deferred.asFuture``

Rounds interleave the faces (each workload on twisted, then on asyncio, then the next workload), so a
load spike hits one run of each rather than every run of one; the tables show medians. CPU per op is
this process's (getrusage) and etcd's (/proc/<pid>/stat); the last table gives asyncio ÷ twisted
against the targets of issue 10: put@64 and get@64 >= 0.7, put seq >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from twisted.internet.epollreactor import EPollReactor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RunResult, Summary, cpu_split, load_average, print_grid, print_table  # noqa: E402
from client_bench import etcd_cpu_seconds  # noqa: E402

import txaioetcd  # noqa: E402
from txaioetcd import KeySet, aio  # noqa: E402
from txaioetcd._defer import Deferred  # noqa: E402

VALUE = b'v' * 100
KEYS = 1000
WORKLOADS = {'put seq': 1, 'get seq': 1, 'put @64': 64, 'get @64': 64}
TARGETS = {'put @64': 0.7, 'get @64': 0.7, 'put seq': 0.8}      # asyncio ÷ twisted throughput, at least


def operation(client, name: str, keys: list):
    n = len(keys)
    if name.startswith('put'):
        return lambda i: client.set(keys[i % n], VALUE)
    return lambda i: client.get(keys[i % n])


def window(call, seconds: float, min_ops: int):
    """→ (worker, started): ``worker()`` is a coroutine awaiting ``call(i)`` one after another until
    ``seconds`` have passed (and ``min_ops`` completed); run N of them for a window of N. The same
    coroutine runs on both faces; only its driver differs. ``finish(started)`` gives the RunResult."""
    state = {'issued': 0, 'completed': 0}
    user0, system0 = cpu_split()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker():
        while state['completed'] < min_ops or time.perf_counter() < deadline:
            i = state['issued']
            state['issued'] = i + 1
            await call(i)
            state['completed'] += 1
    return worker, (state, user0, system0, t0)


def finish(started) -> RunResult:
    state, user0, system0, t0 = started
    elapsed = time.perf_counter() - t0
    user, system = cpu_split()
    return RunResult(state['completed'], elapsed, user - user0 + system - system0, 0, user - user0, system - system0)


class TwistedFace:
    """txaioetcd.Client on an epoll reactor of its own, driven by iterate() until a Deferred fires."""

    name = 'twisted'

    def __init__(self, url: str, transport: str):
        self.reactor = EPollReactor()
        self.client = txaioetcd.Client(self.reactor, url, transport=transport)

    def wait(self, d: Deferred):
        reactor = self.reactor
        while not d.called:
            reactor.runUntilCurrent()
            timeout = reactor.timeout()
            reactor.doIteration(0.1 if timeout is None else min(timeout, 0.1))
        results = []
        d.addBoth(results.append)
        if hasattr(results[0], 'raiseException'):
            results[0].raiseException()
        return results[0]

    def run(self, name: str, keys: list, seconds: float, min_ops: int) -> RunResult:
        async def go():
            worker, started = window(operation(self.client, name, keys), seconds, min_ops)
            workers = [Deferred.fromCoroutine(worker()) for _ in range(WORKLOADS[name])]
            for d in workers:
                await d
            return finish(started)
        return self.wait(Deferred.fromCoroutine(go()))

    def call(self, d_factory):
        return self.wait(d_factory())

    def close(self) -> None:
        self.wait(self.client.close())


class AsyncioFace:
    """txaioetcd.aio.Client on an asyncio loop, the workers as asyncio Tasks."""

    name = 'asyncio'

    def __init__(self, url: str, transport: str):
        self.loop = asyncio.new_event_loop()

        async def create():
            return aio.Client(url, transport=transport)
        self.client = self.loop.run_until_complete(create())

    def run(self, name: str, keys: list, seconds: float, min_ops: int) -> RunResult:
        async def go():
            worker, started = window(operation(self.client, name, keys), seconds, min_ops)
            await asyncio.gather(*[worker() for _ in range(WORKLOADS[name])])
            return finish(started)
        return self.loop.run_until_complete(go())

    def call(self, d_factory):
        async def go():
            return await d_factory()
        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.call(self.client.close)
        self.loop.close()


def measure(face, name: str, keys: list, args) -> RunResult:
    min_ops = 200
    if args.warmup > 0:
        face.run(name, keys, args.warmup, 1)
    before = etcd_cpu_seconds(args.etcd_pid)
    result = face.run(name, keys, args.seconds, min_ops)
    after = etcd_cpu_seconds(args.etcd_pid)
    if before is not None and after is not None:
        result.server_seconds = after - before
    return result


def bench_transport(transport: str, args, summaries: dict) -> None:
    faces = [TwistedFace(args.url, transport), AsyncioFace(args.url, transport)]
    prefix = b'/txaioetcd-bench/aio-%d-%s/' % (os.getpid(), os.urandom(4).hex().encode())
    keys = [prefix + b'%05d' % i for i in range(KEYS)]
    try:
        faces[0].run('put @64', keys, 0.0, KEYS)            # every key exists before the gets
        for run in range(args.runs):
            for name in args.only:
                for face in faces:
                    result = measure(face, name, keys, args)
                    summaries[transport, face.name, name].runs.append(result)
                    etcd = '' if result.server_ms_per_op is None else f' {result.server_ms_per_op:7.3f} etcd ms/op'
                    print(f'  run {run + 1}/{args.runs} {transport:<7} {face.name:<7} {name:<8} '
                          f'{result.ops_per_s:>9,.1f} ops/s {result.cpu_ms_per_op:7.3f} CPU ms/op{etcd}', flush=True)
    finally:
        faces[0].call(lambda: faces[0].client.delete(KeySet(prefix, prefix=True)))
        for face in faces:
            face.close()


def print_ratios(transports, names, summaries) -> dict:
    print('\nasyncio ÷ twisted, same run (medians): throughput, client CPU per op, etcd CPU per op')
    header = ('transport', 'benchmark', 'ops/s ×', 'target', 'client CPU ×', 'etcd CPU ×')
    rows, figures = [], {}
    for transport in transports:
        for name in names:
            a, t = summaries[transport, 'asyncio', name], summaries[transport, 'twisted', name]
            speed = a.ops_per_s / t.ops_per_s
            cpu = a.cpu_ms_per_op / t.cpu_ms_per_op
            etcd = (a.server_ms_per_op / t.server_ms_per_op
                    if a.server_ms_per_op is not None and t.server_ms_per_op else None)
            target = TARGETS.get(name)
            rows.append((transport, name, f'{speed:.2f}',
                         '-' if target is None else f'>= {target:g} {"PASS" if speed >= target else "MISS"}',
                         f'{cpu:.2f}', '-' if etcd is None else f'{etcd:.2f}'))
            figures[f'{transport} {name}'] = {'ops_per_s': speed, 'client_cpu_per_op': cpu,
                                              'etcd_cpu_per_op': etcd, 'target': target}
    print_grid(header, rows, 2)
    return figures


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=5, help='runs per workload and face; medians shown (default 5)')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each run (default 2)')
    parser.add_argument('--warmup', type=float, default=0.3, help='unmeasured warm-up before each run (default 0.3)')
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--etcd-pid', type=int, default=0, help="with --url: etcd's PID, to read its CPU")
    parser.add_argument('--transports', default='grpc,gateway', help='comma-separated: grpc, gateway')
    parser.add_argument('--only', help=f'comma-separated workloads of: {", ".join(WORKLOADS)}')
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args(argv)
    args.transports = [t.strip() for t in args.transports.split(',') if t.strip()]
    if not args.transports or set(args.transports) - {'grpc', 'gateway'}:
        parser.error('--transports: grpc, gateway or both')
    args.only = [n.strip() for n in args.only.split(',')] if args.only else list(WORKLOADS)
    if set(args.only) - set(WORKLOADS):
        parser.error(f'--only: choose from {", ".join(WORKLOADS)}')
    return args


def main(args) -> None:
    etcd = None
    try:
        if not args.url:
            from txaioetcd.testing import LocalEtcd
            etcd = LocalEtcd(fast=True)
            etcd.start()
            args.url, args.etcd_pid = etcd.url, etcd.pid
        import twisted
        print(f'txaioetcd asyncio face vs Twisted face: python {sys.version.split()[0]}, Twisted '
              f'{twisted.__version__}, {os.cpu_count()} CPUs; etcd at {args.url} (pid {args.etcd_pid or "?"}); '
              f'{args.runs} runs x ~{args.seconds:g} s; load average {load_average()}', flush=True)
        summaries = {(t, f, n): Summary(n, WORKLOADS[n], []) for t in args.transports
                     for f in ('twisted', 'asyncio') for n in args.only}
        load_before = load_average()
        for transport in args.transports:
            bench_transport(transport, args, summaries)
        load_after = load_average()
        for transport in args.transports:
            for face in ('twisted', 'asyncio'):
                print_table(f'{transport}, {face} face (median of {args.runs} runs; load average before '
                            f'{load_before}, after {load_after})',
                            [summaries[transport, face, n] for n in args.only], targets=False)
        figures = print_ratios(args.transports, args.only, summaries)
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'aio_bench', 'runs': args.runs, 'seconds_per_run': args.seconds,
                           'load_average_before': load_before, 'load_average_after': load_after,
                           'results': {f'{t} {f}': [summaries[t, f, n].as_dict() for n in args.only]
                                       for t in args.transports for f in ('twisted', 'asyncio')},
                           'asyncio_over_twisted': figures}, out, indent=2)
            print(f'wrote {args.json}')
    finally:
        if etcd is not None:
            etcd.close()


if __name__ == '__main__':
    main(parse_args())
