"""Throughput and client CPU of txaioetcd.Client against a real etcd.

    python benchmarks/client_bench.py [--runs 3] [--seconds 2] [--url URL] [--json out.json]
                                      [--pool-size N] [--only NAME,...] [--profile NAME]

Without ``--url`` it starts an embedded etcd (``txaioetcd.testing.LocalEtcd``: etcd 3.5 on loopback,
``fast=True``, i.e. --unsafe-no-fsync and short raft timers) and always stops it again. With ``--url``
it uses that server; every key written lives under a fresh prefix ``/txaioetcd-bench/<pid>-<rand>/``
which is deleted at the end.

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

from _common import (Summary, environment, load_average, print_table,  # noqa: E402
                     remove_and_close, run_window, sleep)

from txaioetcd import Client, CompModified, KeySet, OpSet, Transaction  # noqa: E402

VALUE = b'v' * 100
SEQ_KEYS = 1000
RANGE_KEYS = 5000

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
    def run(self, name: str, seconds: float, warmup: float):
        concurrency = WORKLOADS[name][0]
        call = self.call(name)
        min_ops = 5 if name == 'range 5k keys' else 200
        if warmup > 0:
            yield run_window(call, concurrency, warmup, 1)
        self.items = 0
        result = yield run_window(call, concurrency, seconds, min_ops)
        result.items = self.items
        return result


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
    client = Client(reactor, args.url, **client_kwargs)
    pool_size = client._transport._members[0].pool.size
    prefix = b'/txaioetcd-bench/%d-%s/' % (os.getpid(), os.urandom(4).hex().encode())
    names = args.only
    print(f'txaioetcd.Client benchmark: python {env["python"]}, Twisted {env["twisted"]}, '
          f'reactor {env["reactor"]}, {env["cpus"]} CPUs')
    print(f'etcd: {etcd_info.get("etcd")} at {args.url}; Client pool_size={pool_size}; '
          f'{args.runs} runs x ~{args.seconds:g} s per workload; load average {load_average()}',
          flush=True)
    summaries = {name: Summary(name, WORKLOADS[name][0], [], WORKLOADS[name][1], WORKLOADS[name][2],
                               'keys' if name == 'range 5k keys' else '')
                 for name in names}
    bench = Bench(client, prefix)
    load_before = load_average()
    try:
        await bench.populate()
        for run in range(args.runs):
            for name in names:
                result = await bench.run(name, args.seconds, args.warmup)
                summaries[name].runs.append(result)
                print(f'  run {run + 1}/{args.runs} {name:<14} {result.ops_per_s:>9,.1f} ops/s '
                      f'{result.cpu_ms_per_op:7.3f} CPU ms/op  ({result.ops:,} ops in {result.seconds:.2f} s)',
                      flush=True)
                await sleep(reactor, 0.2)
        load_after = load_average()
        print_table(f'txaioetcd.Client against etcd {etcd_info.get("etcd")} (median of {args.runs} runs; '
                    f'load average before {load_before}, after {load_after})',
                    [summaries[n] for n in names])
        print('  CPU ms/op = this process\'s user+sys CPU (getrusage RUSAGE_SELF) / ops; etcd not included.')
        profiled = None
        if args.profile:
            profiled = await profile_workload(bench, args.profile, args.seconds,
                                              args.profile_top, args.profile_timer)
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'client_bench', 'environment': env, 'url': args.url,
                           'pool_size': pool_size, 'runs': args.runs, 'seconds_per_run': args.seconds,
                           'load_average_before': load_before, 'load_average_after': load_after,
                           'results': [summaries[n].as_dict() for n in names],
                           'profiled': profiled.as_dict() if profiled else None},
                          out, indent=2)
            print(f'wrote {args.json}')
    finally:
        await remove_and_close(client, prefix)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3, help='runs per workload; medians are shown (default 3)')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each run (default 2)')
    parser.add_argument('--warmup', type=float, default=0.3, help='unmeasured warm-up before each run (default 0.3)')
    parser.add_argument('--url', help='use this etcd instead of starting one')
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
            etcd = LocalEtcd()
            print('starting embedded etcd ...', flush=True)
            t0 = time.monotonic()
            etcd.start()
            args.url = etcd.url
            info['etcd'] = '.'.join(map(str, etcd_version(etcd.binary))) + ' (embedded, fast=True)'
            print(f'etcd {info["etcd"]} up at {etcd.url} in {time.monotonic() - t0:.1f} s', flush=True)
        else:
            info['etcd'] = 'external'
        task.react(lambda reactor: Deferred.fromCoroutine(body(reactor, args, info)))
    finally:
        if etcd is not None:
            etcd.close()


if __name__ == '__main__':
    run(parse_args(), main)
