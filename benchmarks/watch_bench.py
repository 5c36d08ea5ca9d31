"""Watch delivery: events/s and latency from a put's acknowledgement to the watch callback.

    python benchmarks/watch_bench.py [--runs 3] [--events 10000] [--url URL] [--json out.json]
                                     [--transports gateway,grpc]

Without ``--url`` it starts an embedded etcd (as client_bench.py does) and stops it afterwards.
Two clients: one watches a prefix, the other puts ``--events`` keys under it (100-byte values) with 64
in flight, then 1,000 more one at a time, on each transport in turn (both clients on it; rounds
interleave the transports). Every event must arrive exactly once, or the run fails. For each put, latency = time the watch callback saw the
event - time the put's answer arrived (negative when the event came first; the percentiles clip at
0); also shown from the time the put was sent. events/s = events / (first put sent … last event delivered). Targets: >= 5,000 events/s,
p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import cpu_seconds, load_average, run_window, sleep  # noqa: E402
from client_bench import run  # noqa: E402

from txaioetcd import Client, KeySet  # noqa: E402

VALUE = b'v' * 100


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(reactor, url: str, prefix: bytes, events: int, in_flight: int, transport: str) -> dict:
    watcher, writer = Client(reactor, url, transport=transport), Client(reactor, url, transport=transport)
    sent, acked, seen = {}, {}, {}
    done_at = [None]
    repeated = []

    def on_change(event):
        if event.kv.key in seen:
            repeated.append(event.kv.key)
        seen[event.kv.key] = time.perf_counter()
        if len(seen) == events:
            done_at[0] = seen[event.kv.key]

    watching = watcher.watch(KeySet(prefix, prefix=True), on_change)
    try:
        await watching.ready()
        keys = [prefix + b'%07d' % i for i in range(events)]

        def put(i):
            sent[keys[i]] = time.perf_counter()
            d = writer.set(keys[i], VALUE)
            d.addCallback(lambda _: acked.__setitem__(keys[i], time.perf_counter()))
            return d

        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await run_window(put, in_flight, 0, events, events)
        deadline = time.perf_counter() + 30
        while len(seen) < events and time.perf_counter() < deadline:
            await sleep(reactor, 0.01)
        if len(seen) != events or repeated:
            raise RuntimeError(f'the watch delivered {len(seen)} of {events} events, {len(repeated)} twice')
        elapsed = done_at[0] - t0
        latencies = [1000 * max(0.0, seen[k] - acked[k]) for k in keys]
        from_send = [1000 * (seen[k] - sent[k]) for k in keys]
        return {'events': events, 'in_flight': in_flight, 'events_per_s': events / elapsed,
                'p50_ms': percentile(latencies, 0.5), 'p99_ms': percentile(latencies, 0.99),
                'send_p50_ms': percentile(from_send, 0.5), 'send_p99_ms': percentile(from_send, 0.99),
                'cpu_ms_per_event': 1000 * (cpu_seconds() - cpu0) / events,
                'event_before_ack': sum(1 for k in keys if seen[k] < acked[k]) / events}
    finally:
        watching.cancel()
        await writer.delete(KeySet(prefix, prefix=True), timeout=60)
        await watcher.close()
        await writer.close()


async def main(reactor, args, etcd_info: dict):
    print(f'watch benchmark: etcd {etcd_info.get("etcd")}; {args.runs} runs; load average {load_average()}',
          flush=True)
    base = b'/txaioetcd-watch-bench/%d/' % os.getpid()
    kinds = [kind.strip() for kind in args.transports.split(',') if kind.strip()]
    results = {f'{kind} {label}': [] for kind in kinds for label in ('64 in flight', 'sequential')}
    for number in range(args.runs):
        for label, events, in_flight, kind in [(label, events, in_flight, kind) for label, events, in_flight
                                               in (('64 in flight', args.events, 64), ('sequential', 1000, 1))
                                               for kind in kinds]:
            result = await measure(reactor, args.url, base + b'%s/%d/%d/' % (kind.encode(), number, in_flight),
                                   events, in_flight, kind)
            results[f'{kind} {label}'].append(result)
            print(f'  run {number + 1}/{args.runs} {kind:<7} {label:<13} {result["events_per_s"]:>8,.0f} events/s  '
                  f'ack→event p50 {result["p50_ms"]:.2f} ms p99 {result["p99_ms"]:.2f} ms; '
                  f'send→event p50 {result["send_p50_ms"]:.2f} ms p99 {result["send_p99_ms"]:.2f} ms '
                  f'(event before ack: {result["event_before_ack"]:.0%})', flush=True)
    print(f'\nwatch delivery (median of {args.runs} runs; load average now {load_average()})')
    for label, runs in results.items():
        rate = statistics.median(r['events_per_s'] for r in runs)
        p50 = statistics.median(r['p50_ms'] for r in runs)
        p99 = statistics.median(r['p99_ms'] for r in runs)
        s50 = statistics.median(r['send_p50_ms'] for r in runs)
        s99 = statistics.median(r['send_p99_ms'] for r in runs)
        cpu = statistics.median(r['cpu_ms_per_event'] for r in runs)
        print(f'  {label:<21} {rate:>8,.0f} events/s   ack→event p50 {p50:.2f} ms p99 {p99:.2f} ms   '
              f'send→event p50 {s50:.2f} ms p99 {s99:.2f} ms   {cpu:.3f} CPU ms/event')
    for kind in kinds:
        fast = results[f'{kind} 64 in flight']
        rate = statistics.median(r['events_per_s'] for r in fast)
        p50 = statistics.median(r['p50_ms'] for r in fast)
        print(f'  {kind} targets: >= 5,000 events/s {"PASS" if rate >= 5000 else "MISS"}; '
              f'p50 < 5 ms {"PASS" if p50 < 5 else "MISS"}')
    if set(kinds) == {'gateway', 'grpc'}:
        for label in ('64 in flight', 'sequential'):
            ratio = (statistics.median(r['events_per_s'] for r in results[f'grpc {label}']) /
                     statistics.median(r['events_per_s'] for r in results[f'gateway {label}']))
            print(f'  gRPC ÷ gateway events/s, {label}: {ratio:.2f} (target >= 1: {"PASS" if ratio >= 1 else "MISS"})')
    if args.json:
        with open(args.json, 'w') as out:
            json.dump({'benchmark': 'watch_bench', 'results': results}, out, indent=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--events', type=int, default=10_000)
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--transports', default='gateway,grpc', help='comma-separated: gateway, grpc')
    return parser.parse_args(argv)


if __name__ == '__main__':
    run(parse_args(), main)
