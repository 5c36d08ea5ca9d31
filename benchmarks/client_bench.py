"""Throughput and client CPU of txaioetcd.Client against a real etcd.

    python benchmarks/client_bench.py [--runs 3] [--seconds 2] [--url URL --etcd-pid PID] [--fsync]
                                      [--transports gateway,grpc] [--json out.json]
                                      [--pool-size N] [--only NAME,...] [--profile NAME]

Without ``--url`` it starts an embedded etcd (``txaioetcd.testing.LocalEtcd``: etcd 3.5 on loopback,
``fast=True``, i.e. --unsafe-no-fsync and short raft timers; ``--fsync`` keeps etcd's fsync) and
always stops it again. With ``--url`` it uses that server; every key written lives under a fresh
prefix ``/txaioetcd-bench/<pid>-<rand>/`` which is deleted at the end.

Both transports run side by side by default, one client each on the same etcd: every round runs each
workload on the gateway, then on gRPC, so both see the same machine. Besides this process's CPU, each
run reads etcd's own CPU (utime + stime from /proc/<pid>/stat; the embedded etcd's PID, or
``--etcd-pid``) and divides it by the operations. The last table gives gRPC ÷ gateway per workload,
against the targets of issue 9.

Workloads (see benchmarks/README.md for what each number means):

    put seq         one put at a time (100-byte value, 1,000 distinct keys)
    get seq         one get of a single key at a time
    range 5k keys   one get of a prefix holding 5,000 keys with 100-byte values (ranges/s and keys/s)
    txn seq (CAS)   Transaction(compare=[CompModified(k, '==', rev)], success=[OpSet(k, v)]), the
                    revision it returns becoming the next compare's operand
    put @16/@64     exactly 16 / 64 puts outstanding (a window, not batches)
    get @64         exactly 64 gets outstanding

Every workload runs ``--runs`` times (rounds interleave the workloads, so a transient load spike hits
one run of each rather than every run of one); the table shows medians. Each run is preceded by a short
unmeasured warm-up of the same workload. ``--profile put@64`` additionally runs that workload once under
cProfile and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (Summary, environment, load_average, print_grid, print_table,  # noqa: E402
                     remove_and_close, run_window, sleep)

from txaioetcd import Client, CompModified, KeySet, OpSet, Transaction  # noqa: E402

VALUE = b'v' * 100
SEQ_KEYS = 1000
RANGE_KEYS = 5000

# gRPC ÷ gateway targets (issue 9): throughput at least this many times the gateway's
SPEEDUP_TARGETS = {'put @64': 1.6, 'get @64': 1.8, 'range 5k keys': 2.5, 'put seq': 1.3, 'txn seq (CAS)': 1.3}
ETCD_CPU_TARGET = 0.5       # etcd's CPU per op on gRPC, at most this share of the gateway's
CLIENT_CPU_TARGET = 1.2     # our CPU per op on gRPC, at most this many times the gateway's

# name -> (in flight, min ops/s target, max CPU ms/op target)
WORKLOADS = {
    'put seq': (1, 1100, None),
    'get seq': (1, None, None),
    'range 5k keys': (1, None, None),
    'txn seq (CAS)': (1, None, None),
    'put @16': (16, None, 0.3),
    'put @64': (64, 3000, 0.3),
    'get @64': (64, 3600, 0.3),
}
ALIASES = {
    'put': 'put seq', 'put@1': 'put seq', 'seqput': 'put seq', 'putseq': 'put seq',
    'get': 'get seq', 'get@1': 'get seq', 'seqget': 'get seq', 'getseq': 'get seq',
    'range': 'range 5k keys', 'txn': 'txn seq (CAS)', 'txnseq': 'txn seq (CAS)',
    'put@16': 'put @16', 'put@64': 'put @64', 'get@64': 'get @64',
}


def workload_name(text: str) -> str:
    text = text.strip()
    if text in WORKLOADS:
        return text
    key = text.replace(' ', '').lower()
    if key in ALIASES:
        return ALIASES[key]
    raise SystemExit(f'unknown workload {text!r}; choose from: {", ".join(ALIASES)}')


class Bench:
    """The calls of each workload, bound to one client and one key prefix."""

    def __init__(self, client: Client, prefix: bytes):
        self.client = client
        self.prefix = prefix
        self.keys = [prefix + b'k/%05d' % i for i in range(SEQ_KEYS)]
        self.range_prefix = prefix + b'r/'
        self.range_keyset = KeySet(self.range_prefix, prefix=True)
        self.txn_key = prefix + b'txn'
        self.txn_rev = 0
        self.items = 0

    @inlineCallbacks
    def populate(self):
        keys, client, n = self.keys, self.client, len(self.keys)
        yield run_window(lambda i: client.set(keys[i % n], VALUE), 64, 1e9, SEQ_KEYS, SEQ_KEYS)
        rkey = self.range_prefix + b'%06d'
        yield run_window(lambda i: client.set(rkey % i, VALUE), 64, 1e9, RANGE_KEYS, RANGE_KEYS)
        count = yield client.count(self.range_keyset)
        if count != RANGE_KEYS:
            raise RuntimeError(f'range prefix holds {count} keys, expected {RANGE_KEYS}')
        result = yield client.set(self.txn_key, VALUE)
        self.txn_rev = result.revision

    def call(self, name: str):
        client, keys, n = self.client, self.keys, len(self.keys)
        if name in ('put seq', 'put @16', 'put @64'):
            return lambda i: client.set(keys[i % n], VALUE)
        if name in ('get seq', 'get @64'):
            return lambda i: client.get(keys[i % n])
        if name == 'range 5k keys':
            def ranged(i):
                d = client.get(self.range_keyset)
                d.addCallback(self._count_range)
                return d
            return ranged
        if name == 'txn seq (CAS)':
            key = self.txn_key

            def txn(i):
                d = client.submit(Transaction(compare=[CompModified(key, '==', self.txn_rev)],
                                              success=[OpSet(key, VALUE)]))
                d.addCallback(self._txn_done)
                return d
            return txn
        raise KeyError(name)

    def _count_range(self, result):
        if len(result.kvs) != RANGE_KEYS:
            raise RuntimeError(f'range returned {len(result.kvs)} keys, expected {RANGE_KEYS}')
        self.items += RANGE_KEYS
        return result

    def _txn_done(self, success):
        self.txn_rev = success.revision
        return success

    @inlineCallbacks
    def run(self, name: str, seconds: float, warmup: float, etcd_pid: int | None = None):
        concurrency = WORKLOADS[name][0]
        call = self.call(name)
        min_ops = 5 if name == 'range 5k keys' else 200
        if warmup > 0:
            yield run_window(call, concurrency, warmup, 1)
        self.items = 0
        etcd_before = etcd_cpu_seconds(etcd_pid)
        result = yield run_window(call, concurrency, seconds, min_ops)
        etcd_after = etcd_cpu_seconds(etcd_pid)
        result.items = self.items
        if etcd_before is not None and etcd_after is not None:
            result.server_seconds = etcd_after - etcd_before
        return result


def etcd_cpu_seconds(pid: int | None) -> float | None:
    """etcd's user + system CPU so far (/proc/<pid>/stat), or None without a PID."""
    if not pid:
        return None
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def profile_workload(bench: Bench, name: str, seconds: float, top: int = 15, timer: str = 'cpu') -> Deferred:
    import cProfile
    import io
    import pstats

    @inlineCallbacks
    def go():
        concurrency = WORKLOADS[name][0]
        call = bench.call(name)
        yield run_window(call, concurrency, 0.5, 1)
        # 'cpu' charges each function with this process's CPU time (time.process_time): what the
        # CPU ms/op column measures. 'wall' (cProfile's default) also counts time blocked in the kernel.
        profiler = cProfile.Profile(time.process_time) if timer == 'cpu' else cProfile.Profile()
        profiler.enable()
        result = yield run_window(call, concurrency, seconds, 200)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats('tottime').print_stats(top)
        print(f'\ncProfile ({timer} time) of {name!r} ({result.ops:,} ops, {result.ops_per_s:,.0f} ops/s '
              f'under the profiler): top {top} by tottime')
        text = out.getvalue()
        # Drop pstats' preamble up to the column header; keep the table.
        start = text.find('   ncalls')
        print(text[start:] if start >= 0 else text)
        return result
    return go()


async def main(reactor, args, etcd_info: dict):
    env = environment(reactor)
    env.update(etcd_info)
    client_kwargs = {}
    if args.pool_size:
        client_kwargs['pool_size'] = args.pool_size
    clients = {kind: Client(reactor, args.url, transport=kind, **client_kwargs) for kind in args.transports}
    prefix = b'/txaioetcd-bench/%d-%s/' % (os.getpid(), os.urandom(4).hex().encode())
    names = args.only
    print(f'txaioetcd.Client benchmark: python {env["python"]}, Twisted {env["twisted"]}, '
          f'reactor {env["reactor"]}, {env["cpus"]} CPUs')
    print(f'etcd: {etcd_info.get("etcd")} at {args.url} (pid {args.etcd_pid or "unknown"}); transports '
          f'{", ".join(args.transports)}; {args.runs} runs x ~{args.seconds:g} s per workload and transport; '
          f'load average {load_average()}', flush=True)
    summaries = {(kind, name): Summary(name, WORKLOADS[name][0], [], WORKLOADS[name][1], WORKLOADS[name][2],
                                       'keys' if name == 'range 5k keys' else '')
                 for kind in args.transports for name in names}
    # One prefix and one data set; each transport's client reads and writes the same keys.
    benches = {kind: Bench(client, prefix) for kind, client in clients.items()}
    load_before = load_average()
    try:
        first = benches[args.transports[0]]
        await first.populate()
        for bench in benches.values():
            bench.txn_rev = first.txn_rev
        for run in range(args.runs):
            for name in names:
                for kind in args.transports:
                    bench = benches[kind]
                    if name == 'txn seq (CAS)':
                        bench.txn_rev = (await bench.client.get(bench.txn_key)).kvs[0].mod_revision
                    result = await bench.run(name, args.seconds, args.warmup, args.etcd_pid)
                    summaries[kind, name].runs.append(result)
                    etcd = '' if result.server_ms_per_op is None else f' {result.server_ms_per_op:7.3f} etcd ms/op'
                    print(f'  run {run + 1}/{args.runs} {kind:<7} {name:<14} {result.ops_per_s:>9,.1f} ops/s '
                          f'{result.cpu_ms_per_op:7.3f} CPU ms/op{etcd}  ({result.ops:,} ops in '
                          f'{result.seconds:.2f} s)', flush=True)
                    await sleep(reactor, 0.2)
        load_after = load_average()
        for kind in args.transports:
            print_table(f'{kind}: txaioetcd.Client against etcd {etcd_info.get("etcd")} (median of {args.runs} '
                        f'runs; load average before {load_before}, after {load_after})',
                        [summaries[kind, n] for n in names])
        print('  CPU ms/op = this process\'s user+sys CPU (getrusage RUSAGE_SELF) / ops; etcd ms/op = etcd\'s '
              'utime+stime (/proc) / ops.')
        ratios = None
        if set(args.transports) == {'gateway', 'grpc'}:
            ratios = print_ratios(names, summaries)
        profiled = None
        if args.profile:
            profiled = await profile_workload(benches[args.transports[-1]], args.profile, args.seconds,
                                              args.profile_top, args.profile_timer)
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'client_bench', 'environment': env, 'url': args.url,
                           'runs': args.runs, 'seconds_per_run': args.seconds,
                           'load_average_before': load_before, 'load_average_after': load_after,
                           'results': {kind: [summaries[kind, n].as_dict() for n in names]
                                       for kind in args.transports},
                           'grpc_over_gateway': ratios,
                           'profiled': profiled.as_dict() if profiled else None},
                          out, indent=2)
            print(f'wrote {args.json}')
    finally:
        await remove_and_close(first.client, prefix)
        for client in clients.values():
            await client.close()


def print_ratios(names, summaries) -> dict:
    """gRPC ÷ gateway per workload (medians), against the targets; → the figures, for --json."""
    print('\ngRPC ÷ gateway, same run (medians): throughput, our CPU per op, etcd\'s CPU per op')
    header = ('benchmark', 'ops/s ×', 'target', 'client CPU ×', 'target', 'etcd CPU ×', 'target')
    rows, figures = [], {}
    for name in names:
        grpc, gateway = summaries['grpc', name], summaries['gateway', name]
        speed = grpc.ops_per_s / gateway.ops_per_s
        client = grpc.cpu_ms_per_op / gateway.cpu_ms_per_op
        etcd = (grpc.server_ms_per_op / gateway.server_ms_per_op
                if grpc.server_ms_per_op is not None and gateway.server_ms_per_op else None)
        target = SPEEDUP_TARGETS.get(name)
        rows.append((name, f'{speed:.2f}', '-' if target is None else
                     f'>= {target:g} {"PASS" if speed >= target else "MISS"}',
                     f'{client:.2f}', f'<= {CLIENT_CPU_TARGET:g} {"PASS" if client <= CLIENT_CPU_TARGET else "MISS"}',
                     '-' if etcd is None else f'{etcd:.2f}',
                     '-' if etcd is None else f'<= {ETCD_CPU_TARGET:g} {"PASS" if etcd <= ETCD_CPU_TARGET else "MISS"}'))
        figures[name] = {'ops_per_s': speed, 'client_cpu_per_op': client, 'etcd_cpu_per_op': etcd,
                         'ops_per_s_target': target}
    print_grid(header, rows, 1)
    return figures


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3, help='runs per workload; medians are shown (default 3)')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each run (default 2)')
    parser.add_argument('--warmup', type=float, default=0.3, help='unmeasured warm-up before each run (default 0.3)')
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--etcd-pid', type=int, default=0, help="with --url: etcd's PID, to read its CPU")
    parser.add_argument('--fsync', action='store_true', help='the embedded etcd keeps fsync (fast=False)')
    parser.add_argument('--transports', default='gateway,grpc',
                        help='comma-separated, run side by side: gateway, grpc (default both)')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--pool-size', type=int, default=0,
                        help='Client(pool_size=...): connections per endpoint (default: the Client default)')
    parser.add_argument('--only', help='comma-separated workloads: put, get, range, txn, put@16, put@64, get@64')
    parser.add_argument('--profile', metavar='NAME', help='also cProfile one run of this workload, e.g. put@64')
    parser.add_argument('--profile-timer', choices=('cpu', 'wall'), default='cpu',
                        help='cProfile clock: process CPU time (default) or wall time')
    parser.add_argument('--profile-top', type=int, default=15, help='functions shown by --profile (default 15)')
    args = parser.parse_args(argv)
    args.only = [workload_name(n) for n in args.only.split(',')] if args.only else list(WORKLOADS)
    args.transports = [kind.strip() for kind in args.transports.split(',') if kind.strip()]
    if not args.transports or set(args.transports) - {'gateway', 'grpc'}:
        parser.error('--transports: gateway, grpc or both')
    if args.profile:
        args.profile = workload_name(args.profile)
    if args.runs < 1:
        parser.error('--runs must be at least 1')
    return args


def run(args, body) -> None:
    """Start etcd unless --url, run ``body(reactor, args, etcd_info)`` under task.react, stop etcd."""
    etcd = None
    info = {}
    try:
        if not args.url:
            from txaioetcd.testing import LocalEtcd, etcd_version
            fsync = getattr(args, 'fsync', False)
            etcd = LocalEtcd(fast=not fsync)
            print('starting embedded etcd ...', flush=True)
            t0 = time.monotonic()
            etcd.start()
            args.url = etcd.url
            args.etcd_pid = etcd.pid
            info['etcd'] = '.'.join(map(str, etcd_version(etcd.binary))) + \
                (' (embedded, with fsync)' if fsync else ' (embedded, fast=True)')
            print(f'etcd {info["etcd"]} up at {etcd.url} in {time.monotonic() - t0:.1f} s', flush=True)
        else:
            info['etcd'] = 'external'
        task.react(lambda reactor: Deferred.fromCoroutine(body(reactor, args, info)))
    finally:
        if etcd is not None:
            etcd.close()


if __name__ == '__main__':
    run(parse_args(), main)
