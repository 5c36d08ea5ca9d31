"""The measurement behind txaioetcd's own HTTP/1.1 layer: the same etcd gateway workload over each layer.

    python benchmarks/http_layer.py [--runs 3] [--seconds 2] [--url URL] [--json out.json] [--pool-size 64]
                                    [--layers agent,treq,transport,client]

Without ``--url`` it starts an embedded etcd (``txaioetcd.testing.LocalEtcd``, fast=True) and always
stops it again. Workloads: sequential put, put with 64 in flight, get with 64 in flight (100-byte
values, 1,000 keys under a fresh prefix that is deleted afterwards).

Layers, all with the same number of keep-alive connections (``--pool-size``, default 64):

    agent      bare ``twisted.web.client.Agent`` + ``HTTPConnectionPool(persistent=True,
               maxPersistentPerHost=64)``: POST the JSON body (an in-memory IBodyProducer that writes
               it in one go) to ``{url}/v3/kv/put`` / ``/v3/kv/range``, ``readBody``, ``ujson.loads``.
    treq       ``treq.client.HTTPClient`` over the same kind of Agent + pool, ``data=<json bytes>``,
               ``treq.content`` + ``ujson.loads``. OPTIONAL: treq is not a txaioetcd dependency;
               ``pip install treq`` to include it, otherwise this layer is skipped.
    transport  txaioetcd's ``GatewayTransport.call(rpc, request_dict, ...)``: the very same dict in,
               response dict out - the HTTP layer alone, exactly comparable to agent and treq.
    client     ``txaioetcd.Client(pool_size=64).set/get``: the transport plus building Op values
               (base64 of key and value) and typed results (Revision / Range with KeyValue).

agent, treq and transport all do the same work around HTTP: ``ujson.dumps`` of a prepared request
dict per call and ``ujson.loads`` of the answer; only the HTTP machinery differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from binascii import b2a_base64

from twisted.internet.defer import succeed
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

import ujson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Summary, environment, load_average, print_table, run_window, sleep  # noqa: E402
from client_bench import run as run_with_etcd  # noqa: E402

from txaioetcd import Client, KeySet  # noqa: E402
from txaioetcd.transport import GatewayTransport  # noqa: E402

# Agent hands readBody a transport proxy without abortConnection; Twisted warns about it once.
warnings.filterwarnings('ignore', message='Using readBody with a transport', category=DeprecationWarning)

VALUE = b'v' * 100
NKEYS = 1000
WORKLOADS = {'put seq': 1, 'put @64': 64, 'get @64': 64}
LAYERS = ('agent', 'treq', 'transport', 'client')


def b64(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode('ascii')


def dumps(request: dict) -> bytes:
    return ujson.dumps(request, ensure_ascii=True, escape_forward_slashes=False).encode('ascii')


@implementer(IBodyProducer)
class BytesProducer:
    """The simplest body producer: the whole body in one write (what an Agent user would write)."""

    __slots__ = ('body', 'length')

    def __init__(self, body: bytes):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class HTTPStatusError(Exception):
    pass


class AgentLayer:
    name = 'twisted Agent'

    def __init__(self, reactor, url: str, pool_size: int):
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = pool_size
        self.pool.cachedConnectionTimeout = 600
        self.pool.retryAutomatically = False
        self.agent = Agent(reactor, pool=self.pool)
        self.put_url = (url + '/v3/kv/put').encode('ascii')
        self.range_url = (url + '/v3/kv/range').encode('ascii')
        self.headers = Headers({b'Content-Type': [b'application/json']})

    def _post(self, url: bytes, request: dict):
        d = self.agent.request(b'POST', url, self.headers, BytesProducer(dumps(request)))
        d.addCallback(self._read)
        return d

    @staticmethod
    def _read(response):
        if response.code != 200:
            raise HTTPStatusError(f'HTTP {response.code}')
        return readBody(response).addCallback(ujson.loads)

    def put(self, request):
        return self._post(self.put_url, request)

    def get(self, request):
        return self._post(self.range_url, request)

    def close(self):
        return self.pool.closeCachedConnections()


class TreqLayer(AgentLayer):
    name = 'treq'

    def __init__(self, reactor, url: str, pool_size: int):
        import treq
        from treq.client import HTTPClient
        super().__init__(reactor, url, pool_size)
        self.treq = treq
        self.http = HTTPClient(self.agent)
        self.treq_headers = {b'Content-Type': [b'application/json']}

    def _post(self, url: bytes, request: dict):
        d = self.http.post(url, data=dumps(request), headers=self.treq_headers)
        d.addCallback(self._read_treq)
        return d

    def _read_treq(self, response):
        if response.code != 200:
            raise HTTPStatusError(f'HTTP {response.code}')
        return self.treq.content(response).addCallback(ujson.loads)


class TransportLayer:
    name = 'txaioetcd transport'

    def __init__(self, reactor, url: str, pool_size: int):
        self.transport = GatewayTransport(reactor, [url], pool_size=pool_size)

    def put(self, request):
        return self.transport.call('kv/put', request, 'put', False, 10.0)

    def get(self, request):
        return self.transport.call('kv/range', request, 'get', True, 10.0)

    def close(self):
        return self.transport.close()


class ClientLayer:
    name = 'txaioetcd Client'

    def __init__(self, reactor, url: str, pool_size: int):
        self.client = Client(reactor, url, pool_size=pool_size)

    def close(self):
        return self.client.close()


def make_calls(layer, keys, requests_put, requests_get):
    n = len(keys)
    if isinstance(layer, ClientLayer):
        client = layer.client
        return {'put': lambda i: client.set(keys[i % n], VALUE), 'get': lambda i: client.get(keys[i % n])}
    put, get = layer.put, layer.get
    return {'put': lambda i: put(requests_put[i % n]), 'get': lambda i: get(requests_get[i % n])}


def check_treq() -> str | None:
    try:
        import treq  # noqa: F401
    except ImportError as error:
        return f'treq not importable ({error}); pip install treq to include it'
    return None


async def main(reactor, args, etcd_info: dict):
    env = environment(reactor)
    env.update(etcd_info)
    wanted = [name.strip() for name in args.layers.split(',')] if args.layers else list(LAYERS)
    for name in wanted:
        if name not in LAYERS:
            raise SystemExit(f'unknown layer {name!r}; choose from {", ".join(LAYERS)}')
    skipped = {}
    if 'treq' in wanted:
        why = check_treq()
        if why:
            skipped['treq'] = why
            wanted.remove('treq')
    classes = {'agent': AgentLayer, 'treq': TreqLayer, 'transport': TransportLayer, 'client': ClientLayer}
    layers = {name: classes[name](reactor, args.url, args.pool_size) for name in wanted}

    prefix = b'/txaioetcd-bench/http-%d-%s/' % (os.getpid(), os.urandom(4).hex().encode())
    keys = [prefix + b'k/%05d' % i for i in range(NKEYS)]
    requests_put = [{'key': b64(k), 'value': b64(VALUE)} for k in keys]
    requests_get = [{'key': b64(k)} for k in keys]
    admin = Client(reactor, args.url)

    versions = f'Twisted {env["twisted"]}'
    if 'treq' in layers:
        import treq
        versions += f', treq {treq.__version__}'
    print(f'HTTP layer comparison: python {env["python"]}, {versions}, reactor {env["reactor"]}, '
          f'{env["cpus"]} CPUs')
    print(f'etcd: {etcd_info.get("etcd")} at {args.url}; {args.pool_size} connections per layer; '
          f'{args.runs} runs x ~{args.seconds:g} s; load average {load_average()}', flush=True)
    for name, why in skipped.items():
        print(f'  skipping {name}: {why}')

    summaries = {}
    load_before = load_average()
    try:
        await run_window(lambda i: admin.set(keys[i], VALUE), 64, 1e9, NKEYS, NKEYS)
        calls = {name: make_calls(layer, keys, requests_put, requests_get) for name, layer in layers.items()}
        # Open every layer's connections before measuring anything.
        for name in layers:
            await run_window(calls[name]['get'], args.pool_size, 0.3, 1)
        for run in range(args.runs):
            for workload, concurrency in WORKLOADS.items():
                kind = workload.split()[0]
                for name, layer in layers.items():
                    call = calls[name][kind]
                    await run_window(call, concurrency, args.warmup, 1)
                    result = await run_window(call, concurrency, args.seconds, 200)
                    label = f'{workload} | {layer.name}'
                    summary = summaries.setdefault(label, Summary(label, concurrency, []))
                    summary.runs.append(result)
                    print(f'  run {run + 1}/{args.runs} {label:<34} {result.ops_per_s:>9,.1f} ops/s '
                          f'{result.cpu_ms_per_op:7.3f} CPU ms/op  ({result.ops:,} ops)', flush=True)
                    await sleep(reactor, 0.2)
        load_after = load_average()
        print_table(f'HTTP layer comparison against etcd {etcd_info.get("etcd")} (median of {args.runs} '
                    f'runs; {args.pool_size} connections; load average before {load_before}, after '
                    f'{load_after})', list(summaries.values()), targets=False)
        print('  CPU ms/op = this process\'s user+sys CPU (getrusage RUSAGE_SELF) / ops; etcd not included.')
        for name, why in skipped.items():
            print(f'  {name}: skipped - {why}')
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'http_layer', 'environment': env, 'url': args.url,
                           'connections': args.pool_size, 'runs': args.runs,
                           'seconds_per_run': args.seconds, 'load_average_before': load_before,
                           'load_average_after': load_after, 'skipped': skipped,
                           'results': [s.as_dict() for s in summaries.values()]}, out, indent=2)
            print(f'wrote {args.json}')
    finally:
        try:
            await admin.delete(KeySet(prefix, prefix=True), timeout=60)
        finally:
            for layer in layers.values():
                await layer.close()
            await admin.close()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3, help='runs per layer and workload (default 3)')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each run (default 2)')
    parser.add_argument('--warmup', type=float, default=0.3, help='unmeasured warm-up before each run (default 0.3)')
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--pool-size', type=int, default=64, help='connections per layer (default 64)')
    parser.add_argument('--layers', help='comma-separated subset of: ' + ', '.join(LAYERS))
    return parser.parse_args(argv)


if __name__ == '__main__':
    run_with_etcd(parse_args(), main)
