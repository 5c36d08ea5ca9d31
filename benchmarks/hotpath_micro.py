"""Where the client's CPU per call goes: the library's put/get path without network, reactor or etcd.

    python benchmarks/hotpath_micro.py [--n 20000] [--profile]

``client_bench.py`` measures whole calls (library + Twisted reactor + kernel). This script isolates the
library: a real ``txaioetcd.Client`` whose connection pool holds one ``HTTPConnection`` attached to an
in-memory transport; each call is answered by feeding etcd's exact response bytes (captured from etcd
3.5) into ``dataReceived``. So the time per call is everything txaioetcd does for one put/get - building
the Op, JSON, the request head, the deadline timer, the pool, parsing the HTTP response, JSON, typed
result - and nothing else. The pieces are then timed one by one, next to cheaper alternatives, to
size possible optimizations. No etcd is started.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import timeit
from binascii import b2a_base64

import ujson
from twisted.internet import reactor
from twisted.internet.testing import StringTransport

from txaioetcd import Client, KeySet, OpGet, OpSet
from txaioetcd.results import Header, KeyValue, Range, Revision
from txaioetcd.transport import _json
from txaioetcd.transport._http import HTTPConnection

# Response heads and bodies exactly as etcd 3.5.1's gateway sends them.
_HEAD = (b'HTTP/1.1 200 OK\r\nAccess-Control-Allow-Headers: accept, content-type, authorization\r\n'
         b'Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\nAccess-Control-Allow-Origin: *\r\n'
         b'Content-Type: application/json\r\nGrpc-Metadata-Content-Type: application/grpc\r\n'
         b'Date: Sun, 22 Nov 2026 20:20:06 GMT\r\nContent-Length: %d\r\n\r\n')
PUT_BODY = (b'{"header":{"cluster_id":"7410362791999224583","member_id":"12208374650225836384",'
            b'"revision":"2","raft_term":"2"}}')
GET_BODY = (b'{"header":{"cluster_id":"7410362791999224583","member_id":"12208374650225836384",'
            b'"revision":"2","raft_term":"2"},"kvs":[{"key":"L3R4YWlvZXRjZC1iZW5jaC9rLzAwMDAx",'
            b'"create_revision":"2","mod_revision":"2","version":"1","value":"' + b'dnZ2' * 33 + b'dg=="}],'
            b'"count":"1"}')
PUT_RESPONSE = _HEAD % len(PUT_BODY) + PUT_BODY
GET_RESPONSE = _HEAD % len(GET_BODY) + GET_BODY
KEY = b'/txaioetcd-bench/k/00001'
VALUE = b'v' * 100


def make_client():
    """A Client whose pool holds one in-memory connection (no socket; the reactor is never run)."""
    client = Client(reactor, 'http://127.0.0.1:2379')
    pool = client._transport._members[0].pool
    connection = HTTPConnection(pool)
    connection.makeConnection(StringTransport())
    pool._released(connection)
    return client, connection


def library_loop(client, connection, n: int, kind: str) -> float:
    """n calls through the whole library; returns µs per call."""
    response = PUT_RESPONSE if kind == 'put' else GET_RESPONSE
    transport = connection.transport
    results = []
    append = results.append
    if kind == 'put':
        def one():
            client.set(KEY, VALUE).addCallback(append)
            transport.clear()
            connection.dataReceived(response)
    else:
        def one():
            client.get(KEY).addCallback(append)
            transport.clear()
            connection.dataReceived(response)
    one()
    assert results and isinstance(results[0], (Revision, Range)), results[:1]
    # The reactor never runs here, so cancelled deadline timers pile up in its list of new calls;
    # clear them between batches as a running reactor would.
    per = min(timeit.repeat(one, number=n, repeat=3, setup=lambda: reactor._newTimedCalls.clear()))
    reactor._newTimedCalls.clear()
    return 1e6 * per / n


# --- the pieces, and alternatives -------------------------------------------------------------------

class _PlainKV:
    """KeyValue's fields in a plain __slots__ class (no frozen-dataclass object.__setattr__ per field)."""

    __slots__ = ('key', 'value', 'create_revision', 'mod_revision', 'version', 'lease')

    def __init__(self, key, value=b'', create_revision=0, mod_revision=0, version=0, lease=0):
        self.key = key
        self.value = value
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.lease = lease


def start_alternative(head: bytes):
    """Parse the response head with one lower() and targeted finds, instead of a loop over every line."""
    if head[:7] != b'HTTP/1.':
        raise ValueError('not HTTP/1.x')
    status = int(head[9:12])
    lower = head.lower()
    length = None
    i = lower.find(b'\r\ncontent-length:')
    if i >= 0:
        end = head.find(b'\r\n', i + 17)
        length = int(head[i + 17:end if end >= 0 else len(head)])
    j = lower.find(b'\r\ncontent-type:')
    content_type = head[j + 15:head.find(b'\r\n', j + 15)].strip() if j >= 0 else b''
    chunked = b'\r\ntransfer-encoding:' in lower and b'chunked' in lower
    keep_alive = b'\r\nconnection: close' not in lower and head[5:8] != b'1.0'
    return status, length, content_type, chunked, keep_alive


def range_body(keys: int) -> bytes:
    """A gateway range answer of ``keys`` keys with 100-byte values, as etcd writes it."""
    kv = ujson.loads(GET_BODY)['kvs'][0]
    head = GET_BODY[:GET_BODY.index(b',"kvs"')]
    items = b','.join(ujson.dumps(dict(kv, key=b2a_base64(b'/txaioetcd-bench/r/%06d' % i, newline=False)
                                       .decode())).encode() for i in range(keys))
    return head + b',"kvs":[' + items + b'],"count":"%d"}' % keys


def time_us(stmt, n: int, **namespace) -> float:
    return 1e6 * min(timeit.repeat(stmt, number=n, repeat=5, globals=namespace)) / n


def pieces(n: int) -> list[tuple[str, float]]:
    from txaioetcd.transport._gateway import _Member
    head = PUT_RESPONSE[:PUT_RESPONSE.index(b'\r\n\r\n')]
    op = OpSet(KEY, VALUE)
    request = _json.encode(op)
    get = OpGet(KEY)
    member = _Member(reactor, 'http://127.0.0.1:2379', 32, 5.0)

    class Sink:
        def head(self, status, content_type):
            pass

    conn = HTTPConnection(None)
    conn._receiver = Sink()

    def cancel_timer():
        reactor.callLater(10.0, int).cancel()

    rows = [
        ('OpSet(key, value) (as_key, checks)', time_us('OpSet(KEY, VALUE)', n, OpSet=OpSet, KEY=KEY,
                                                           VALUE=VALUE)),
        ('op.describe() (run eagerly on every call)', time_us('op.describe()', n, op=op)),
        ('_json.encode(op) (2x base64)', time_us('e(op)', n, e=_json.encode, op=op)),
        ('ujson.dumps(request).encode()', time_us(
            "ujson.dumps(r, ensure_ascii=True, escape_forward_slashes=False).encode('ascii')", n,
            ujson=ujson, r=request)),
        ('_Member.head(rpc, length)', time_us("m.head('kv/put', 160)", n, m=member)),
        ('reactor.callLater(10, f).cancel() (deadline)', time_us('f()', n, f=cancel_timer)),
        ('HTTPConnection._start(head) (7 header lines)', time_us('c._start(h)', n, c=conn, h=head)),
        ('  alternative: Go-canonical fast path, find()s', time_us('f(h)', n, f=start_alternative, h=head)),
        ('ujson.loads(put body)', time_us('loads(b)', n, loads=ujson.loads, b=PUT_BODY)),
        ('_json.decode(put, response)', time_us('d(op, o)', n, d=_json.decode, op=op, o=ujson.loads(PUT_BODY))),
        ('ujson.loads(get body)', time_us('loads(b)', n, loads=ujson.loads, b=GET_BODY)),
        ('_json.decode(get, response) (1 KeyValue)', time_us('d(op, o)', n, d=_json.decode, op=get,
                                                             o=ujson.loads(GET_BODY))),
        ('OpGet(key)', time_us('OpGet(KEY)', n, OpGet=OpGet, KEY=KEY)),
        ('_json.key_value(kv)', time_us('p(o)', n, p=_json.key_value, o=ujson.loads(GET_BODY)['kvs'][0])),
        ('KeyValue(...) (frozen slots dataclass)', time_us("K(b'k', b'v', 1, 2, 3, 0)", n, K=KeyValue)),
        ('  alternative: plain __slots__ class', time_us("K(b'k', b'v', 1, 2, 3, 0)", n, K=_PlainKV)),
        ('Header(...) (frozen slots dataclass)', time_us('H(1, 2, 3, 4)', n, H=Header)),
    ]
    reactor._newTimedCalls.clear()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=20000, help='calls per timing (default 20000)')
    parser.add_argument('--profile', action='store_true', help='also cProfile the put loop (top 20 by tottime)')
    args = parser.parse_args(argv)
    assert start_alternative(PUT_RESPONSE[:PUT_RESPONSE.index(b'\r\n\r\n')])[:3] == (200, len(PUT_BODY),
                                                                                     b'application/json')
    client, connection = make_client()
    print(f'txaioetcd library path per call, no network/reactor/etcd (python {sys.version.split()[0]}; '
          f'best of 3 x {args.n:,}):')
    put = library_loop(client, connection, args.n, 'put')
    get = library_loop(client, connection, args.n, 'get')
    print(f'  client.set(key, 100-byte value) -> Revision   {put:6.2f} µs/call')
    print(f'  client.get(key) -> Range (1 kv, 100 bytes)     {get:6.2f} µs/call')
    body = range_body(5000)
    loads = 1e3 * min(timeit.repeat(lambda: ujson.loads(body), number=10, repeat=3)) / 10
    parsed = ujson.loads(body)
    get = OpGet(KeySet(b'/txaioetcd-bench/r/', prefix=True))
    parse = 1e3 * min(timeit.repeat(lambda: _json.decode(get, parsed), number=10, repeat=3)) / 10
    print(f'  5,000-key range answer ({len(body) / 1e6:.2f} MB): ujson.loads {loads:.2f} ms + decode '
          f'{parse:.2f} ms ({1e3 * parse / 5000:.2f} µs/key)')
    print('\npieces (µs per call, best of 5):')
    for name, us in pieces(args.n):
        print(f'  {name:<48} {us:6.2f}')
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        library_loop(client, connection, args.n, 'put')
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats('tottime').print_stats(20)
        text = out.getvalue()
        print('\ncProfile of the put loop, top 20 by tottime:')
        print(text[text.find('   ncalls'):])
    return 0


if __name__ == '__main__':
    sys.exit(main())
