"""Commits (versioned records) against the raw client, and the commits HTTP API, in one run.

    python benchmarks/commits_bench.py [--runs 5] [--seconds 2] [--http-seconds 5] [--json out.json]

It starts an embedded etcd (as client_bench.py does). Workloads, interleaved run by run:

    raw put seq         client.set of one of 1,000 keys
    raw txn seq (CAS)   Transaction(compare=[CompModified(k, '==', rev)], success=[OpSet(k, v)])
    commit seq          store.commit of the next version of one of 1,000 keys (compares on two log keys,
                        puts head and log: one etcd txn)
    raw get seq         client.get of a stored key;  store get seq: store.get(key) (decodes the record)
    raw put @16         16 puts outstanding, distinct keys
    commit @16          16 commits outstanding, each of a new key (version 1)
    heads 10k           store.heads() over 10,000 keys (keys/s)

Then the HTTP API: ``python -m txaioetcd commits serve`` in a process of its own against the same etcd,
loaded by benchmarks/_http_load.py (another process) with 16 keep-alive connections: GET /:key and POST
/:key/:version, requests/s and the server's CPU per request. Targets: commit seq >= 0.8x raw txn seq;
HTTP GET /:key >= 1,500 requests/s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Summary, environment, load_average, print_table, remove_and_close, run_window, sleep  # noqa: E402
from client_bench import etcd_cpu_seconds, run  # noqa: E402

from twisted.internet.defer import Deferred  # noqa: E402

from txaioetcd import Client, CompModified, OpSet, Transaction  # noqa: E402
from txaioetcd.commits import CommitStore  # noqa: E402

KEYS = 1000
HEADS = 10_000
VALUE = b'limit = 20\nname = "example"\n' * 3
HERE = os.path.dirname(os.path.abspath(__file__))


class Bench:
    def __init__(self, client, prefix: bytes):
        self.client = client
        self.prefix = prefix
        self.store = CommitStore(client, 'bench', prefix=prefix)
        self.heads_store = CommitStore(client, 'heads', prefix=prefix)
        self.raw_keys = [prefix + b'raw/%d' % i for i in range(KEYS)]
        self.versions = [0] * KEYS
        self.fresh = 0

    async def populate(self):
        for key in self.raw_keys:
            await self.client.set(key, VALUE)
        for i in range(KEYS):
            await self.store.commit(f'k{i}', VALUE, 1, 'bench')
            self.versions[i] = 1

    def calls(self):
        client, store, keys = self.client, self.store, self.raw_keys
        revisions = {}

        async def raw_txn(i):
            if i == 0:          # a new run: raw put seq has written the keys since
                revisions.clear()
            key = keys[i % KEYS]
            if key not in revisions:
                revisions[key] = (await client.get(key)).kvs[0].mod_revision
            done = await client.submit(Transaction(compare=[CompModified(key, '==', revisions[key])],
                                                   success=[OpSet(key, VALUE)]))
            revisions[key] = done.revision

        async def commit_seq(i):
            n = i % KEYS
            await store.commit(f'k{n}', VALUE, self.versions[n] + 1, 'bench')
            self.versions[n] += 1

        def commit_fresh(i):
            self.fresh += 1
            return store.commit(f'new-{os.getpid()}-{self.fresh}', VALUE, 1, 'bench')

        return {
            'raw put seq': lambda i: client.set(keys[i % KEYS], VALUE),
            'raw txn seq (CAS)': lambda i: Deferred.fromCoroutine(raw_txn(i)),
            'commit seq': lambda i: Deferred.fromCoroutine(commit_seq(i)),
            'raw get seq': lambda i: client.get(keys[i % KEYS]),
            'store get seq': lambda i: store.get(f'k{i % KEYS}'),
            'raw put @16': lambda i: client.set(self.prefix + b'fresh/%d' % i, VALUE),
            'commit @16': commit_fresh,
        }

    async def populate_heads(self):
        done = 0

        def one(i):
            return self.heads_store.commit(f'h{i:05d}', VALUE, 1, 'bench')
        while done < HEADS:
            batch = [one(i) for i in range(done, min(done + 64, HEADS))]
            for d in batch:
                await d
            done += len(batch)

    async def heads(self):
        from _common import cpu_seconds
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        heads = await self.heads_store.heads()
        if len(heads) != HEADS:
            raise RuntimeError(f'heads gave {len(heads)} keys, expected {HEADS}')
        return HEADS / (time.perf_counter() - t0), 1000 * (cpu_seconds() - cpu0) / HEADS


WORKLOADS = {'raw put seq': 1, 'raw txn seq (CAS)': 1, 'commit seq': 1, 'raw get seq': 1, 'store get seq': 1,
             'raw put @16': 16, 'commit @16': 16}


def _process_cpu(pid: int) -> float:
    return etcd_cpu_seconds(pid)


def http_round(url: str, prefix: str, seconds: float, etcd_pid: int | None) -> dict:
    """Run the server process, load it with GETs then POSTs; → {name: (requests/s, server CPU ms/req,
    etcd CPU ms/req, load generator CPU ms/req)}."""
    command = [sys.executable, '-m', 'txaioetcd', 'commits', 'serve', '--namespace', 'http', '--prefix', prefix,
               '--endpoints', url, '--listen', 'tcp:0']
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError('the commits server exited before serving')
            match = re.search(r'at http://127\.0\.0\.1:(\d+)/', line)
            port = int(match.group(1)) if match else None
        if port is None:
            raise RuntimeError('the commits server did not say where it listens within 30 s')
        load = [sys.executable, os.path.join(HERE, '_http_load.py'), '--port', str(port), '--connections', '16']
        subprocess.run(load + ['--seconds', '1', 'post', 'seed'], check=True, capture_output=True, timeout=60)
        results = {}
        for name, args in (('HTTP GET /:key @16', ['get', 'seed-0']), ('HTTP POST /:key/:v @16', ['post', 'p%d' % time.time_ns()])):
            subprocess.run(load + ['--seconds', '0.5'] + args, check=True, capture_output=True, timeout=60)   # warm-up
            if args[0] == 'post':
                args = ['post', 'p%d' % time.time_ns()]
            server_cpu, etcd_cpu = _process_cpu(server.pid), etcd_cpu_seconds(etcd_pid)
            done = subprocess.run(load + ['--seconds', str(seconds)] + args, check=True, capture_output=True,
                                  text=True, timeout=seconds + 60)
            server_cpu, etcd_cpu = _process_cpu(server.pid) - server_cpu, (
                etcd_cpu_seconds(etcd_pid) - etcd_cpu if etcd_pid else None)
            report = json.loads(done.stdout)
            if set(report['status']) != {'200'}:
                raise RuntimeError(f'{name}: answers {report["status"]}')
            n = report['requests']
            results[name] = (n / report['seconds'], 1000 * server_cpu / n,
                             1000 * etcd_cpu / n if etcd_cpu is not None else None, 1000 * report['cpu_seconds'] / n)
        return results
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


async def main(reactor, args, etcd_info: dict):
    env = environment(reactor)
    client = Client(reactor, args.url)
    tag = f'{os.getpid()}-{os.urandom(4).hex()}'
    prefix = f'/txaioetcd-commits-bench/{tag}/'.encode()
    bench = Bench(client, prefix)
    print(f'commits benchmark: python {env["python"]}, Twisted {env["twisted"]}, etcd {etcd_info.get("etcd")}; '
          f'{args.runs} runs x ~{args.seconds:g} s; load average {load_average()}', flush=True)
    summaries = {name: Summary(name, n, []) for name, n in WORKLOADS.items()}
    heads, http = [], []
    try:
        await bench.populate()
        await bench.populate_heads()
        calls = bench.calls()
        for number in range(args.runs):
            for name, concurrency in WORKLOADS.items():
                await run_window(calls[name], concurrency, 0.3, 1)
                before = etcd_cpu_seconds(args.etcd_pid)
                result = await run_window(calls[name], concurrency, args.seconds, 50)
                after = etcd_cpu_seconds(args.etcd_pid)
                if before is not None and after is not None:
                    result.server_seconds = after - before
                summaries[name].runs.append(result)
                etcd = '' if result.server_ms_per_op is None else f' {result.server_ms_per_op:7.3f} etcd ms/op'
                print(f'  run {number + 1}/{args.runs} {name:<18} {result.ops_per_s:>9,.1f} ops/s '
                      f'{result.cpu_ms_per_op:7.3f} CPU ms/op{etcd}', flush=True)
                await sleep(reactor, 0.2)
            heads.append(await bench.heads())
            print(f'  run {number + 1}/{args.runs} heads 10k: {heads[-1][0]:,.0f} keys/s', flush=True)
            if number < args.http_runs:
                http.append(await _in_thread(reactor, http_round, args.url, f'{prefix.decode()}h{number}/',
                                             args.http_seconds, args.etcd_pid))
                for name, (rate, server_ms, etcd_ms, load_ms) in http[-1].items():
                    print(f'  run {number + 1}/{args.runs} {name:<24} {rate:>8,.0f} req/s, server {server_ms:.3f} '
                          f'CPU ms/req, etcd {etcd_ms if etcd_ms is None else round(etcd_ms, 3)} ms/req', flush=True)
        print_table(f'commits vs raw client (median of {args.runs} runs)', list(summaries.values()), targets=False)
        median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
        print(f'  heads over 10,000 keys: {median([h[0] for h in heads]):,.0f} keys/s, '
              f'{median([h[1] for h in heads]):.4f} CPU ms/key')
        ratio = summaries['commit seq'].ops_per_s / summaries['raw txn seq (CAS)'].ops_per_s
        ratio16 = summaries['commit @16'].ops_per_s / summaries['raw put @16'].ops_per_s
        print(f'  commit seq / raw txn seq = {ratio:6.1%}  (target >= 80%)  {"PASS" if ratio >= 0.8 else "MISS"}')
        print(f'  commit @16 / raw put @16 = {ratio16:6.1%}')
        http_summary = {}
        for name in (http[0] if http else {}):
            rates = [h[name][0] for h in http]
            http_summary[name] = {'requests_per_s': median(rates), 'server_cpu_ms': median([h[name][1] for h in http]),
                                  'etcd_cpu_ms': median([h[name][2] for h in http if h[name][2] is not None] or [0]),
                                  'runs': rates}
            verdict = ''
            if name.startswith('HTTP GET'):
                verdict = f'  (target >= 1,500/s)  {"PASS" if median(rates) >= 1500 else "MISS"}'
            print(f'  {name}: {median(rates):,.0f} req/s (median of {len(rates)}), server '
                  f'{http_summary[name]["server_cpu_ms"]:.3f} CPU ms/req, etcd {http_summary[name]["etcd_cpu_ms"]:.3f} '
                  f'ms/req{verdict}')
        print(f'  load average {load_average()}')
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'commits_bench', 'environment': env,
                           'results': [s.as_dict() for s in summaries.values()],
                           'heads_keys_per_s': [h[0] for h in heads], 'commit_vs_txn': ratio,
                           'commit16_vs_put16': ratio16, 'http': http_summary}, out, indent=2)
    finally:
        await remove_and_close(client, prefix)


def _in_thread(reactor, fn, *args):
    from twisted.internet import threads
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--seconds', type=float, default=2.0)
    parser.add_argument('--http-seconds', type=float, default=5.0)
    parser.add_argument('--http-runs', type=int, default=3, help='rounds that include the HTTP part (default 3)')
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--etcd-pid', type=int, help='its PID, for its CPU')
    parser.add_argument('--json', help='also write the results to this file')
    return parser.parse_args(argv)


if __name__ == '__main__':
    run(parse_args(), main)
