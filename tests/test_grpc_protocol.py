"""The gRPC transport against an in-process HTTP/2 server on 127.0.0.1, and its framer fed raw bytes.

The server peer is the ``h2`` package's server side inside a Twisted protocol: it answers unary calls
with real etcd protobuf messages framed as gRPC messages, and each test scripts what it does with a
request (answer, Trailers-Only error, RST_STREAM, GOAWAY, silence, PING floods, tiny windows, header
blocks split into CONTINUATION frames). Everything is seen through the public Client API on real
loopback sockets. The last tests feed ``_h2.H2Connection.dataReceived`` directly: a valid server byte
stream split anywhere, garbage and mutated frames, and frames the protocol forbids.

Every wait is for an event with a bound; the bounds are generous for a loaded machine, and the
keepalive tests shrink PING_AFTER / PING_ANSWER so that "well before the deadline" means seconds.
"""

import random
import struct
import time
from urllib.parse import quote

import hpack
import pytest
import pytest_twisted
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Server
from h2.errors import ErrorCodes
from h2.events import (DataReceived, PingAckReceived, PingReceived, RequestReceived, StreamEnded,
                       StreamReset, WindowUpdated)
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txaioetcd import Client, errors
from txaioetcd.transport import _grpc
from txaioetcd.transport._h2 import H2Connection, Stream, header_block
from txaioetcd.transport._proto import message

_REQUESTS = {'KV/Range': message('RangeRequest'), 'KV/Put': message('PutRequest'),
             'Maintenance/Status': message('StatusRequest')}
_GRPC = struct.Struct('>BI')


def grpc_message(body: bytes) -> bytes:
    return _GRPC.pack(0, len(body)) + body


# -- the server peer

class Request:
    """One gRPC call as the peer received it, and the ways to answer it."""

    def __init__(self, connection: '_PeerConnection', stream_id: int, headers):
        self.connection = connection
        self.stream_id = stream_id
        self.headers = dict(headers)
        self.rpc = self.headers[b':path'].decode().split('.', 1)[1]     # '/etcdserverpb.KV/Range'
        self.body = bytearray()
        self.frames = 0
        self.message = None

    def complete(self) -> None:
        flag, length = _GRPC.unpack_from(self.body)
        assert flag == 0 and length == len(self.body) - 5, 'a gRPC request message badly framed'
        self.message = _REQUESTS[self.rpc].FromString(bytes(self.body[5:]))

    @property
    def key(self):
        return getattr(self.message, 'key', None)

    def answer(self, response=None, headers=(), trailers=()) -> None:
        """Answer OK with ``response`` (default: what the peer's store says)."""
        response = self.connection.peer.reply(self) if response is None else response
        self.connection.respond(self.stream_id, response.SerializeToString(), headers, trailers)

    def fail(self, status: int, text: str) -> None:
        """A Trailers-Only error answer."""
        self.connection.trailers_only(self.stream_id, status, text)

    def reset(self, code) -> None:
        self.connection.reset(self.stream_id, code)


def serve(request: Request) -> None:
    request.answer()


class _PeerConnection(Protocol):
    """One HTTP/2 server connection of a Peer (``h2`` does the protocol, and checks the client's)."""

    def __init__(self, peer: 'Peer'):
        self.peer = peer
        self.h2 = H2Server(config=H2Configuration(client_side=False, header_encoding=None))
        self.streams = {}           # stream id -> Request, from its HEADERS on
        self.outgoing = {}          # stream id -> [bytes, offset, trailers] waiting for window
        self.silent = False         # drop everything that arrives (and answer nothing)
        self.lost = False

    def connectionMade(self):
        self.peer.connections.append(self)
        self.h2.initiate_connection()
        if self.peer.settings:
            # A second SETTINGS frame: it applies once the client acknowledges it, as RFC 9113 says.
            self.h2.update_settings(self.peer.settings)
        self.flush()

    def connectionLost(self, reason):
        self.lost = True
        self.peer.changed()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def raw(self, data: bytes) -> None:
        """Bytes written past h2 (h2's own output goes first, so the order on the wire is kept)."""
        self.flush()
        self.transport.write(data)

    def dataReceived(self, data):
        if self.silent:
            return
        try:
            events = self.h2.receive_data(data)
            for event in events:
                self._event(event)
            self.pump()
        except Exception as error:         # the client broke HTTP/2 (or a behaviour failed): the test sees it
            self.peer.errors.append(error)
            self.flush()
            self.transport.abortConnection()
        self.peer.changed()

    def _event(self, event) -> None:
        peer = self.peer
        if isinstance(event, RequestReceived):
            self.streams[event.stream_id] = Request(self, event.stream_id, event.headers)
        elif isinstance(event, DataReceived):
            request = self.streams[event.stream_id]
            request.body += event.data
            request.frames += 1
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded):
            request = self.streams[event.stream_id]
            request.complete()
            peer.requests.append(request)
            peer.behaviour(request)
        elif isinstance(event, WindowUpdated):
            peer.window_updates.append((event.stream_id, event.delta))
        elif isinstance(event, PingAckReceived):
            peer.ping_acks.append(event.ping_data)
        elif isinstance(event, PingReceived):
            peer.pings_received += 1          # h2 acknowledges it by itself
        elif isinstance(event, StreamReset):
            peer.resets.append((event.stream_id, event.error_code))
            self.outgoing.pop(event.stream_id, None)

    # -- answering

    def respond(self, stream_id: int, body: bytes, headers=(), trailers=()) -> None:
        self.h2.send_headers(stream_id, [(b':status', b'200'), (b'content-type', b'application/grpc'),
                                         *headers])
        self.outgoing[stream_id] = [grpc_message(body), 0,
                                    [(b'grpc-status', b'0'), (b'grpc-message', b''), *trailers]]
        self.pump()

    def pump(self) -> None:
        """Send what waits, as the client's windows allow (h2 raises if we overstep them)."""
        for stream_id, waiting in list(self.outgoing.items()):
            data, offset, trailers = waiting
            view = memoryview(data)
            while offset < len(data):
                room = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                self.h2.send_data(stream_id, bytes(view[offset:offset + room]))
                offset += room
            waiting[1] = offset
            if offset >= len(data):
                del self.outgoing[stream_id]
                self.h2.send_headers(stream_id, trailers, end_stream=True)
        self.flush()

    def trailers_only(self, stream_id: int, status: int, text: str) -> None:
        self.h2.send_headers(stream_id, [
            (b':status', b'200'), (b'content-type', b'application/grpc'),
            (b'grpc-status', str(status).encode()),
            (b'grpc-message', quote(text, safe=' :/,;!()[]{}<>=?@').encode('ascii'))], end_stream=True)
        self.flush()

    def reset(self, stream_id: int, code) -> None:
        self.h2.reset_stream(stream_id, code)
        self.flush()

    def goaway(self, last_stream_id: int, code: int = 0) -> None:
        """A GOAWAY written past h2, so h2 still lets us answer the streams at or below the last id."""
        self.peer.goaways += 1
        self.raw(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code,
                             additional_data=b'test peer going away').serialize())

    def ping(self, count: int) -> None:
        for n in range(count):
            self.h2.ping(struct.pack('>Q', n))
        self.flush()

    def close(self) -> None:
        self.flush()
        self.transport.loseConnection()


class Peer(Factory):
    """A scriptable gRPC server: ``behaviour(request)`` decides what each complete request gets."""

    def __init__(self, reactor, name: str, member_id: int, behaviour=None, store=None, settings=None):
        self.reactor = reactor
        self.name = name
        self.member_id = member_id
        self.behaviour = behaviour or serve
        self.store = dict(store or {})
        self.settings = settings or {}
        self.revision = 10
        self.connections = []
        self.requests = []
        self.errors = []
        self.resets = []
        self.window_updates = []
        self.ping_acks = []
        self.pings_received = 0
        self.goaways = 0
        self.port = None
        self._waiters = []

    def buildProtocol(self, addr):
        return _PeerConnection(self)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port.getHost().port}'

    def keys(self) -> list:
        return [request.key for request in self.requests]

    def header(self):
        return message('ResponseHeader')(cluster_id=7, member_id=self.member_id, revision=self.revision,
                                         raft_term=2)

    def reply(self, request: Request):
        """The answer of the peer's store (a little etcd of single keys)."""
        if request.rpc == 'KV/Range':
            kvs = []
            if request.key in self.store:
                kvs.append(message('KeyValue')(key=request.key, value=self.store[request.key],
                                               create_revision=5, mod_revision=self.revision, version=1))
            return message('RangeResponse')(header=self.header(), kvs=kvs, count=len(kvs))
        if request.rpc == 'KV/Put':
            self.revision += 1
            self.store[request.key] = request.message.value
            return message('PutResponse')(header=self.header())
        if request.rpc == 'Maintenance/Status':
            return message('StatusResponse')(header=self.header(), version='3.5.99', leader=self.member_id)
        raise AssertionError(f'the test peer does not answer {request.rpc}')

    # -- waiting for what the peer sees

    def changed(self) -> None:
        for entry in list(self._waiters):
            condition, d, timer = entry
            if condition():
                self._waiters.remove(entry)
                if timer.active():
                    timer.cancel()
                d.callback(None)

    def until(self, condition, what: str, timeout: float = 5.0) -> Deferred:
        """Fires once ``condition()`` holds (checked at every event of the peer); fails after ``timeout``."""
        d = Deferred()
        if condition():
            d.callback(None)
            return d

        def expired():
            entry = next((e for e in self._waiters if e[1] is d), None)
            if entry is not None:
                self._waiters.remove(entry)
                d.errback(AssertionError(f'{self.name}: waited {timeout} s for {what}'))
        self._waiters.append((condition, d, self.reactor.callLater(timeout, expired)))
        return d


@pytest_twisted.async_yield_fixture
async def peers(reactor):
    """``peers(behaviour, store=..., settings=...)`` → a listening Peer; all stopped after the test."""
    started = []

    def start(behaviour=None, **options):
        peer = Peer(reactor, f'peer {chr(ord("A") + len(started))}', 0x100 + len(started), behaviour,
                    **options)
        peer.port = reactor.listenTCP(0, peer, interface='127.0.0.1')
        started.append(peer)
        return peer
    yield start
    for peer in started:
        for connection in peer.connections:
            if not connection.lost:
                connection.transport.abortConnection()
        await peer.port.stopListening()
    # h2 checks every frame the client sent: a violation (or a behaviour that broke) fails the test.
    broken = [(peer.name, error) for peer in started for error in peer.errors]
    assert not broken, broken


@pytest_twisted.async_yield_fixture
async def grpc_client(reactor, peers):
    """``grpc_client(peer, ...)`` → a gRPC Client on those peers; every one closed after the test."""
    made = []

    def make(*members, timeout=5):
        client = Client(reactor, endpoints=[peer.url for peer in members], transport='grpc', timeout=timeout)
        made.append(client)
        return client
    yield make
    for client in made:
        await client.close()


_PENDING = object()


async def settle(reactor, d: Deferred, bound: float, what: str):
    """``(result, None)`` or ``(None, error)`` of ``d``, which must settle within ``bound`` seconds
    (else it is cancelled and the test fails saying so)."""
    box = Deferred()

    def done(result):
        if not box.called:
            box.callback([result])      # in a list: a Failure given to callback() would errback
    d.addBoth(done)
    timer = reactor.callLater(bound, lambda: box.called or box.callback([_PENDING]))
    [result] = await box
    if timer.active():
        timer.cancel()
    if result is _PENDING:
        d.cancel()
        raise AssertionError(f'{what}: still pending after {bound} s')
    if isinstance(result, Failure):
        return None, result.value
    return result, None


async def fails(reactor, d: Deferred, bound: float, what: str) -> Exception:
    result, error = await settle(reactor, d, bound, what)
    assert error is not None, f'{what}: expected a failure, got {result!r}'
    return error


# -- 1. the peer answers

@pytest_twisted.ensureDeferred
async def test_a_call_is_answered(reactor, peers, grpc_client):
    peer = peers(store={b'k': b'v'})
    client = grpc_client(peer)

    got = await client.get(b'k', timeout=5)
    assert [(kv.key, kv.value) for kv in got.kvs] == [(b'k', b'v')]
    assert got.header.member_id == peer.member_id and got.header.revision == 10
    written = await client.set(b'k2', b'v2', timeout=5)
    assert written.header.revision == 11 and peer.store[b'k2'] == b'v2'
    status = await client.status(timeout=5)
    assert status.version == '3.5.99' and status.leader == peer.member_id

    first = peer.requests[0].headers
    assert first[b':method'] == b'POST' and first[b':scheme'] == b'http'
    assert first[b':path'] == b'/etcdserverpb.KV/Range'
    assert first[b':authority'] == peer.url.split('//')[1].encode()
    assert first[b'content-type'] == b'application/grpc' and first[b'te'] == b'trailers'
    timeout = first[b'grpc-timeout']
    assert timeout.endswith(b'm') and 0 < int(timeout[:-1]) <= 5000
    assert [r.stream_id for r in peer.requests] == [1, 3, 5]       # one connection, one stream per call
    assert len(peer.connections) == 1 and peer.errors == []


# -- 2. Trailers-Only errors

@pytest.mark.parametrize('status, text, kind', [
    (3, 'etcdserver: key is not provided', errors.EmptyKey),
    (3, 'etcdserver: too many operations in txn request', errors.TooManyOperations),
    (9, 'etcdserver: precondition failed (\u00e9t\u00e9 100%)', errors.ServerError),
    (11, 'etcdserver: mvcc: required revision has been compacted', errors.Compacted),
    (12, 'unknown method Range for service etcdserverpb.KV', errors.Unsupported),
])
@pytest_twisted.ensureDeferred
async def test_a_trailers_only_error_is_the_mapped_error(reactor, peers, grpc_client, status, text, kind):
    peer = peers(lambda request: request.fail(status, text))
    client = grpc_client(peer)

    error = await fails(reactor, client.get(b'k', timeout=5), 8, 'get')
    assert type(error) is kind, repr(error)
    assert error.request == "get of key b'k'", error.request
    assert text in str(error)             # percent-decoded, UTF-8 included
    if kind is not errors.Unsupported:
        assert error.code == status and error.server_message == text
    assert len(peer.requests) == 1        # an answer from the server: not sent again
    assert peer.errors == []


@pytest.mark.parametrize('text, outcome', [
    ('etcdserver: no leader', 'moved'),                      # refused before processing: goes elsewhere
    ('etcdserver: request timed out', errors.OutcomeUnknown),  # taken, then lost: not sent again
])
@pytest_twisted.ensureDeferred
async def test_an_unavailable_write_follows_the_failover_rules(reactor, peers, grpc_client, text, outcome):
    a = peers(lambda request: request.fail(14, text))
    b = peers()
    client = grpc_client(a, b)

    result, error = await settle(reactor, client.set(b'w', b'1', timeout=5), 8, 'set')
    assert a.keys() == [b'w']
    if outcome == 'moved':
        assert error is None, repr(error)
        assert result.header.member_id == b.member_id and b.store == {b'w': b'1'}
    else:
        assert isinstance(error, outcome), repr(error)
        assert b.keys() == []


# -- 3. GOAWAY

def _hold_then(count: int, then):
    """A behaviour that keeps requests unanswered until ``count`` are in, then calls ``then(held)``
    with them in stream order."""
    held = []

    def behaviour(request):
        held.append(request)
        if len(held) == count:
            then(sorted(held, key=lambda r: r.stream_id))
    return behaviour, held


async def _four_calls(reactor, client):
    calls = [client.get(b'r-low', timeout=5), client.set(b'w-low', b'1', timeout=5),
             client.set(b'w-high', b'2', timeout=5), client.get(b'r-high', timeout=5)]
    names = ('r-low', 'w-low', 'w-high', 'r-high')
    return [await settle(reactor, d, 10, name) for d, name in zip(calls, names)]


@pytest_twisted.ensureDeferred
async def test_goaway_then_close_resends_above_last_stream_and_a_write_below_is_unknown(reactor, peers,
                                                                                        grpc_client):
    def goaway_and_close(held):
        connection = held[0].connection
        connection.goaway(last_stream_id=held[1].stream_id)
        connection.close()
    behaviour, held = _hold_then(4, goaway_and_close)
    a = peers(behaviour, store={b'r-low': b'from a', b'r-high': b'from a'})
    b = peers(store={b'r-low': b'from b', b'r-high': b'from b'})
    client = grpc_client(a, b)

    (r_low, e1), (w_low, e2), (w_high, e3), (r_high, e4) = await _four_calls(reactor, client)
    assert [r.key for r in sorted(held, key=lambda r: r.stream_id)] == [b'r-low', b'w-low', b'w-high',
                                                                          b'r-high']
    # Above the last stream id: not processed, sent to B - the write included.
    assert e3 is None and w_high.header.member_id == b.member_id
    assert e4 is None and [kv.value for kv in r_high.kvs] == [b'from b']
    # At or below it, then the connection closed: the read goes elsewhere, the write's fate is unknown.
    assert e1 is None and [kv.value for kv in r_low.kvs] == [b'from b']
    assert isinstance(e2, errors.OutcomeUnknown), repr(e2)
    assert isinstance(e2.cause, errors.ConnectionLost), repr(e2.cause)
    assert b'w-low' not in b.keys() and b.store.get(b'w-high') == b'2'
    assert sorted(b.keys()) == [b'r-high', b'r-low', b'w-high']
    assert len(a.connections) == 1 and a.errors == [] and b.errors == []


@pytest_twisted.ensureDeferred
async def test_goaway_lets_the_streams_below_last_stream_id_finish(reactor, peers, grpc_client):
    def goaway_and_drain(held):
        connection = held[0].connection
        connection.goaway(last_stream_id=held[1].stream_id)
        held[0].answer()
        held[1].answer()
        connection.close()
    behaviour, held = _hold_then(4, goaway_and_drain)
    a = peers(behaviour, store={b'r-low': b'from a', b'r-high': b'from a'})
    b = peers(store={b'r-low': b'from b', b'r-high': b'from b'})
    client = grpc_client(a, b)

    (r_low, e1), (w_low, e2), (w_high, e3), (r_high, e4) = await _four_calls(reactor, client)
    assert (e1, e2, e3, e4) == (None, None, None, None)
    assert [kv.value for kv in r_low.kvs] == [b'from a'] and w_low.header.member_id == a.member_id
    assert a.store[b'w-low'] == b'1'
    assert [kv.value for kv in r_high.kvs] == [b'from b'] and w_high.header.member_id == b.member_id
    assert sorted(b.keys()) == [b'r-high', b'w-high']
    assert len(a.connections) == 1 and a.errors == [] and b.errors == []


@pytest_twisted.ensureDeferred
async def test_close_ends_a_call_left_on_a_connection_draining_after_goaway(reactor, peers, grpc_client):
    """client.close() closes every connection (ITransport.close): also one that got a GOAWAY and still
    carries a stream at or below its last stream id - the call fails with ClientClosed at once."""
    def goaway_keep_open(request):
        request.connection.goaway(last_stream_id=request.stream_id)
        request.connection.ping(1)          # its ACK says the client has read the GOAWAY
    peer = peers(goaway_keep_open)
    client = grpc_client(peer)

    call = client.get(b'k', timeout=30)
    await peer.until(lambda: peer.ping_acks, 'the PING after the GOAWAY acknowledged')
    await client.close()
    error = await fails(reactor, call, 3, 'get on the draining connection after close()')
    assert isinstance(error, errors.ClientClosed), repr(error)
    await peer.until(lambda: peer.connections[0].lost, 'the draining connection closed', timeout=3)


@pytest_twisted.ensureDeferred
async def test_a_single_member_that_goes_away_gets_the_unprocessed_calls_again(reactor, peers, grpc_client):
    """One member, which ends a connection on purpose (GOAWAY below every stream, as at a maximum
    connection age): the calls it did not process go out again on a new connection to it, writes
    included, and succeed."""
    connections_seen = []

    def goaway_on_the_first_connection(request):
        if not connections_seen:
            connections_seen.append(request.connection)
        if request.connection is connections_seen[0]:
            request.connection.goaway(last_stream_id=0)
            request.connection.close()
        else:
            serve(request)
    peer = peers(goaway_on_the_first_connection, store={b'r': b'v'})
    client = grpc_client(peer)

    written = await client.set(b'w', b'1', timeout=5)
    assert written.header.member_id == peer.member_id and peer.store[b'w'] == b'1'
    assert [kv.value for kv in (await client.get(b'r', timeout=5)).kvs] == [b'v']
    assert len(peer.connections) == 2
    assert peer.keys() == [b'w', b'w', b'r']       # the write twice: once refused, once applied


# -- 4. RST_STREAM

@pytest_twisted.ensureDeferred
async def test_a_refused_stream_is_sent_to_the_next_member_even_a_write(reactor, peers, grpc_client):
    a = peers(lambda request: request.reset(ErrorCodes.REFUSED_STREAM))
    b = peers(store={b'r': b'from b'})
    client = grpc_client(a, b)

    written = await client.set(b'w', b'1', timeout=5)
    assert written.header.member_id == b.member_id and b.store[b'w'] == b'1'
    assert a.keys() == [b'w'] and b.keys() == [b'w']
    got = await grpc_client(a, b).get(b'r', timeout=5)      # a new client: it starts at A again
    assert [kv.value for kv in got.kvs] == [b'from b']
    assert a.errors == [] and b.errors == []


@pytest_twisted.ensureDeferred
async def test_a_write_reset_with_another_code_is_outcome_unknown(reactor, peers, grpc_client):
    a = peers(lambda request: request.reset(ErrorCodes.INTERNAL_ERROR))
    b = peers()
    client = grpc_client(a, b)

    error = await fails(reactor, client.set(b'w', b'1', timeout=5), 8, 'set')
    assert isinstance(error, errors.OutcomeUnknown), repr(error)
    assert isinstance(error.cause, errors.ConnectionLost) and 'code 2' in str(error.cause)
    assert a.keys() == [b'w'] and b.keys() == []


@pytest_twisted.ensureDeferred
async def test_a_read_reset_with_another_code_goes_to_the_next_member(reactor, peers, grpc_client):
    a = peers(lambda request: request.reset(ErrorCodes.INTERNAL_ERROR))
    b = peers(store={b'r': b'from b'})
    client = grpc_client(a, b)

    got = await client.get(b'r', timeout=5)
    assert [kv.value for kv in got.kvs] == [b'from b']
    assert a.keys() == [b'r'] and b.keys() == [b'r']


@pytest_twisted.ensureDeferred
async def test_a_non_grpc_answer_fails_the_call_and_cancels_its_stream(reactor, peers, grpc_client):
    """HTTP 503 with a body to come: ProtocolError, and the stream is reset (``_refused_http``)."""
    def http_503(request):
        request.connection.h2.send_headers(request.stream_id, [(b':status', b'503'),
                                                               (b'content-type', b'text/plain')])
        request.connection.flush()
    peer = peers(http_503)
    client = grpc_client(peer)

    error = await fails(reactor, client.get(b'k', timeout=5), 8, 'get')
    assert isinstance(error, errors.ProtocolError) and 'HTTP 503' in str(error), repr(error)
    await peer.until(lambda: peer.resets, 'RST_STREAM of the abandoned stream', timeout=3)
    assert peer.resets == [(1, ErrorCodes.CANCEL)]


# -- 5. flow control

@pytest_twisted.ensureDeferred
async def test_a_large_put_goes_through_tiny_windows(reactor, peers, grpc_client):
    peer = peers(settings={SettingCodes.INITIAL_WINDOW_SIZE: 16})
    client = grpc_client(peer)
    value = random.Random(5).randbytes(200 * 1024)

    written = await client.set(b'big', value, timeout=30)
    assert written.header.member_id == peer.member_id
    assert peer.store[b'big'] == value
    # The first 64 KiB went out before the client saw the SETTINGS; the rest 16 bytes at a time.
    assert peer.requests[0].frames > (len(value) - 65535) // 16
    # And once the windows are settled, a second large put on the same connection.
    again = await client.set(b'big2', value[::-1], timeout=30)
    assert peer.store[b'big2'] == value[::-1] and again.header.revision == written.header.revision + 1
    assert peer.requests[1].frames >= len(value) // 16
    assert len(peer.connections) == 1 and peer.errors == []


def _big_range(peer, key, size):
    def behaviour(request):
        if request.rpc != 'KV/Range':
            request.answer()
            return
        kvs = [message('KeyValue')(key=key + b'/%d' % n, value=bytes([n]) * (1024 * 1024), mod_revision=n + 1)
               for n in range(size)]
        request.answer(message('RangeResponse')(header=peer.header(), kvs=kvs, count=size))
    return behaviour


@pytest_twisted.ensureDeferred
async def test_a_response_of_several_mib_in_many_data_frames(reactor, peers, grpc_client):
    peer = peers()
    peer.behaviour = _big_range(peer, b'big', 5)
    client = grpc_client(peer)

    got = await client.get(b'big', timeout=20)
    assert [kv.value for kv in got.kvs] == [bytes([n]) * (1024 * 1024) for n in range(5)]
    assert got.count == 5 and peer.errors == []


@pytest_twisted.ensureDeferred
async def test_responses_beyond_the_client_windows_need_its_window_updates(reactor, peers, grpc_client):
    """20 MiB on one stream is more than its 16 MiB window; four of them more than the 64 MiB of the
    connection: they only get through if the client gives the windows back."""
    peer = peers()
    peer.behaviour = _big_range(peer, b'big', 20)
    client = grpc_client(peer)

    for _ in range(4):
        got = await client.get(b'big', timeout=30)
        assert len(got.kvs) == 20 and got.kvs[19].value == bytes([19]) * (1024 * 1024)
    assert {sid for sid, delta in peer.window_updates if sid} >= {1, 3, 5, 7}
    # The first connection WINDOW_UPDATE comes with the client's preface; later ones give data back.
    assert len([delta for sid, delta in peer.window_updates if sid == 0]) >= 2, peer.window_updates
    assert len(peer.connections) == 1 and peer.errors == []


# -- 6. PING flood

@pytest_twisted.ensureDeferred
async def test_a_ping_flood_is_answered_and_calls_still_work(reactor, peers, grpc_client):
    def flood_then_answer(request):
        request.connection.ping(1000)
        request.answer()
    peer = peers(flood_then_answer, store={b'k': b'v'})
    client = grpc_client(peer)

    got = await client.get(b'k', timeout=5)
    assert [kv.value for kv in got.kvs] == [b'v']
    await peer.until(lambda: len(peer.ping_acks) >= 1000, '1000 PING ACKs')
    assert sorted(peer.ping_acks) == [struct.pack('>Q', n) for n in range(1000)]
    got = await client.get(b'k', timeout=5)
    assert [kv.value for kv in got.kvs] == [b'v']
    await peer.until(lambda: len(peer.ping_acks) >= 2000, '1000 more PING ACKs')
    assert len(peer.ping_acks) == 2000 and peer.errors == []


# -- 7. CONTINUATION

_ALPHABET = b'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
_TO_LETTERS = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


def _letters(n: int, seed: int) -> bytes:
    """``n`` random letters and digits: a header value that Huffman coding cannot shrink much."""
    return random.Random(seed).randbytes(n).translate(_TO_LETTERS)


@pytest_twisted.ensureDeferred
async def test_headers_and_trailers_split_into_continuation_frames(reactor, peers, grpc_client):
    big_header = [(b'x-padding', _letters(50_000, 1))]
    big_trailer = [(b'x-trailer-padding', _letters(50_000, 2))]
    # Even Huffman-coded the blocks exceed the 16 KiB frame: h2 sends HEADERS + CONTINUATION.
    assert len(hpack.Encoder().encode(big_header)) > 16384
    peer = peers(lambda request: request.answer(headers=big_header, trailers=big_trailer), store={b'k': b'v'})
    client = grpc_client(peer)

    got = await client.get(b'k', timeout=5)
    assert [kv.value for kv in got.kvs] == [b'v']
    got = await client.get(b'k', timeout=5)         # the HPACK tables stayed in step
    assert [kv.value for kv in got.kvs] == [b'v'] and peer.errors == []


def _raw_answer(request: Request, piece: int) -> None:
    """Headers, message and trailers as raw frames, each header block cut into ``piece``-byte
    CONTINUATION frames (literal "never indexed": h2's HPACK table is not touched)."""
    def block(fields):
        return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields], huffman=False)

    def frames(fields, end_stream):
        data = block(fields)
        pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
        sid = request.stream_id
        first = HeadersFrame(sid, data=pieces[0], flags=['END_STREAM'] if end_stream else [])
        rest = [ContinuationFrame(sid, data=p, flags=['END_HEADERS'] if i == len(pieces) - 1 else [])
                for i, p in enumerate(pieces[1:], 1)]
        assert rest, 'the block must need CONTINUATION frames'
        return b''.join(f.serialize() for f in [first, *rest])
    response = request.connection.peer.reply(request).SerializeToString()
    request.connection.raw(
        frames([(b':status', b'200'), (b'content-type', b'application/grpc'), (b'x-note', b'split' * 20)],
               False) +
        DataFrame(request.stream_id, data=grpc_message(response)).serialize() +
        frames([(b'grpc-status', b'0'), (b'grpc-message', b''), (b'x-more', b'trailer' * 30)], True))


@pytest_twisted.ensureDeferred
async def test_header_blocks_in_many_tiny_continuation_frames(reactor, peers, grpc_client):
    peer = peers(lambda request: _raw_answer(request, 3), store={b'k': b'v'})
    client = grpc_client(peer)

    got = await client.get(b'k', timeout=5)
    assert [kv.value for kv in got.kvs] == [b'v'] and got.header.member_id == peer.member_id
    peer.behaviour = serve
    got = await client.get(b'k', timeout=5)         # the connection is still good for the next call
    assert [kv.value for kv in got.kvs] == [b'v'] and peer.errors == []


@pytest_twisted.ensureDeferred
async def test_a_header_list_within_the_advertised_limit_is_accepted(reactor, peers, grpc_client):
    """The client advertises SETTINGS_MAX_HEADER_LIST_SIZE 1 MiB (and takes header blocks up to 1 MiB):
    a 300 KiB header list is within it."""
    big = [(b'x-padding-%d' % n, _letters(60_000, n)) for n in range(5)]
    peer = peers(lambda request: request.answer(headers=big), store={b'k': b'v'})
    client = grpc_client(peer)

    result, error = await settle(reactor, client.get(b'k', timeout=5), 8, 'get')
    assert error is None, repr(error)
    assert [kv.value for kv in result.kvs] == [b'v']


# -- 8. keepalive

@pytest.fixture
def quick_keepalive(monkeypatch):
    monkeypatch.setattr(_grpc, 'PING_AFTER', 0.2)
    monkeypatch.setattr(_grpc, 'PING_ANSWER', 0.3)


def _go_silent(request):
    request.connection.silent = True


@pytest.mark.parametrize('call, kind', [('get', errors.ConnectionLost), ('set', errors.OutcomeUnknown)])
@pytest_twisted.ensureDeferred
async def test_a_silent_peer_is_found_dead_by_the_keepalive(reactor, peers, grpc_client, quick_keepalive,
                                                            call, kind):
    peer = peers(_go_silent)
    client = grpc_client(peer)

    started = time.monotonic()
    d = client.get(b'k', timeout=30) if call == 'get' else client.set(b'k', b'v', timeout=30)
    error = await fails(reactor, d, 10, call)
    elapsed = time.monotonic() - started
    assert isinstance(error, kind), repr(error)
    lost = error.cause if kind is errors.OutcomeUnknown else error
    assert isinstance(lost, errors.ConnectionLost) and 'PING' in str(lost), repr(lost)
    assert elapsed < 3.0, f'found dead after {elapsed:.1f} s (PING after 0.2 s, dead 0.3 s later)'
    await peer.until(lambda: peer.connections[0].lost, 'the dead connection closed', timeout=3)


@pytest_twisted.ensureDeferred
async def test_a_slow_peer_that_answers_pings_keeps_its_call(reactor, peers, grpc_client, quick_keepalive):
    peer = peers(lambda request: reactor.callLater(1.2, request.answer), store={b'k': b'v'})
    client = grpc_client(peer)

    started = time.monotonic()
    got = await client.get(b'k', timeout=10)
    assert [kv.value for kv in got.kvs] == [b'v']
    assert time.monotonic() - started >= 1.2
    assert peer.pings_received >= 2 and peer.errors == []     # the keepalive ran, and was satisfied


@pytest_twisted.ensureDeferred
async def test_the_keepalive_watches_a_connection_draining_after_goaway(reactor, peers, grpc_client,
                                                                       quick_keepalive):
    """"A connection that carries streams" (the module docstring) includes one that got a GOAWAY."""
    def goaway_then_silence(request):
        request.connection.goaway(last_stream_id=request.stream_id)
        request.connection.silent = True
    peer = peers(goaway_then_silence)
    client = grpc_client(peer)

    started = time.monotonic()
    error = await fails(reactor, client.get(b'k', timeout=8), 6, 'get on the draining connection')
    elapsed = time.monotonic() - started
    assert isinstance(error, errors.ConnectionLost) and 'PING' in str(error), repr(error)
    assert elapsed < 3.0, f'found dead after {elapsed:.1f} s'


# -- 9. the framer, fed bytes directly

class _Owner:
    def __init__(self):
        self.goaways = []
        self.closed_with = []

    def goaway(self, connection, last_stream_id, code, debug):
        self.goaways.append((last_stream_id, code, debug))

    def closed(self, connection, error):
        self.closed_with.append(error)


class _Recorder(Stream):
    def __init__(self):
        self.events = []

    def headers(self, fields, end_stream):
        self.events.append(('headers', list(fields), end_stream))

    def data(self, data, end_stream):
        self.events.append(('data', data, end_stream))

    def reset(self, code):
        self.events.append(('reset', code))

    def lost(self, error):
        self.events.append(('lost', error))


class _Transport(StringTransport):
    aborted = False

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


_BLOCK = header_block([(b':method', b'POST'), (b':scheme', b'http'), (b':path', b'/etcdserverpb.KV/Range'),
                       (b':authority', b'127.0.0.1:2379'), (b'content-type', b'application/grpc'),
                       (b'te', b'trailers')])


def _framer():
    """A client connection (on a StringTransport) with stream 1 open and its request sent."""
    owner, transport = _Owner(), _Transport()
    connection = H2Connection(owner, Clock())
    connection.makeConnection(transport)
    handler = _Recorder()
    connection.open(handler, _BLOCK)
    connection.send(handler.stream_id, grpc_message(b'\x0a\x01k'), end_stream=True)
    return connection, transport, owner, handler


def _server_bytes() -> bytes:
    """What an h2 server sends for stream 1: SETTINGS (+ACK), a padded DATA frame, a PING, a
    message over several DATA frames, a header block over CONTINUATION frames, and trailers."""
    _, transport, _, _ = _framer()
    server = H2Server(config=H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    events = server.receive_data(transport.value())
    assert any(isinstance(e, StreamEnded) for e in events)
    server.send_headers(1, [(b':status', b'200'), (b'content-type', b'application/grpc'),
                            (b'x-big', _letters(30_000, 3))])
    server.ping(b'12345678')
    server.send_data(1, grpc_message(b'\x0a\x02\x08\x01' + b'x' * 20_000)[:16_000], pad_length=7)
    server.send_data(1, grpc_message(b'\x0a\x02\x08\x01' + b'x' * 20_000)[16_000:])
    server.send_headers(1, [(b'grpc-status', b'0'), (b'grpc-message', b'')], end_stream=True)
    return server.data_to_send()


def _small_server_bytes() -> bytes:
    """A short valid answer (fuzzing material): SETTINGS, HEADERS, DATA, PING, trailers."""
    _, transport, _, _ = _framer()
    server = H2Server(config=H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    server.receive_data(transport.value())
    server.send_headers(1, [(b':status', b'200'), (b'content-type', b'application/grpc')])
    server.send_data(1, grpc_message(b'\x0a\x02\x08\x01'), pad_length=3)
    server.ping(b'abcdefgh')
    server.increment_flow_control_window(1000)
    server.send_headers(1, [(b'grpc-status', b'0'), (b'grpc-message', b'fine')], end_stream=True)
    return server.data_to_send()


def _feed(pieces):
    connection, transport, owner, handler = _framer()
    transport.clear()
    for piece in pieces:
        connection.dataReceived(piece)
        if transport.aborted:
            break
    return connection, transport, owner, handler


def _cuts(rng, data: bytes, count: int):
    points = sorted(rng.sample(range(1, len(data)), min(count, len(data) - 1)))
    return [data[i:j] for i, j in zip([0, *points], [*points, len(data)])]


def test_a_server_stream_split_anywhere_gives_the_same_result():
    data = _server_bytes()
    _, whole_transport, whole_owner, whole = _feed([data])
    assert not whole_transport.aborted
    kinds = [(event[0], event[2]) for event in whole.events]
    assert kinds[0] == ('headers', False) and kinds[-1] == ('headers', True)
    assert b''.join(event[1] for event in whole.events if event[0] == 'data').startswith(b'\x00\x00\x00\x4e')
    reference = (whole.events, whole_transport.value(), whole_owner.goaways)

    rng = random.Random(1)
    for case in range(150):
        _, transport, owner, handler = _feed(_cuts(rng, data, rng.choice((2, 10, 100, 1000))))
        assert not transport.aborted, case
        assert (handler.events, transport.value(), owner.goaways) == reference, case
    _, transport, owner, handler = _feed([data[i:i + 1] for i in range(len(data))])
    assert (handler.events, transport.value(), owner.goaways) == reference


def _mutated(rng, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:                                   # garbage after the server's SETTINGS
        return bytes(buf[:15]) + rng.randbytes(rng.randrange(1, 400))
    if kind == 1:                                   # flip bytes anywhere
        for _ in range(rng.randrange(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 2:                                 # a frame header's type, flags or stream id changed
        offsets, position = [], 0
        while position + 9 <= len(buf):
            offsets.append(position)
            position += 9 + int.from_bytes(buf[position:position + 3], 'big')
        at = rng.choice(offsets)
        field = rng.choice((3, 4, 5, 8))
        buf[at + field] = rng.randrange(256) if field != 3 else rng.randrange(12)
    elif kind == 3:                                 # a slice cut out
        i = rng.randrange(len(buf))
        del buf[i:i + rng.randrange(1, 30)]
    elif kind == 4:                                 # random bytes put in
        i = rng.randrange(len(buf))
        buf[i:i] = rng.randbytes(rng.randrange(1, 30))
    else:                                           # nothing valid at all
        return rng.randbytes(rng.randrange(1, 600))
    return bytes(buf)


def test_garbage_and_mutated_frames_are_parsed_or_fail_with_protocol_error():
    data = _small_server_bytes()
    rng = random.Random(2024)
    started = time.monotonic()
    outcomes = {'parsed': 0, 'refused': 0}
    for case in range(2000):
        sample = _mutated(rng, data)
        try:
            connection, transport, owner, handler = _feed(_cuts(rng, sample, rng.randrange(1, 8))
                                                          if len(sample) > 1 else [sample])
        except Exception as error:
            raise AssertionError(f'case {case}: {error!r} escaped dataReceived for {sample!r}') from error
        if transport.aborted:
            connection.connectionLost(Failure(ConnectionDone()))
            assert len(owner.closed_with) == 1 and isinstance(owner.closed_with[0], errors.ProtocolError), \
                (case, owner.closed_with)
            assert handler.events[-1][0] in ('lost', 'headers', 'data', 'reset'), case
            if handler.events[-1][0] == 'lost':
                assert isinstance(handler.events[-1][1], errors.ProtocolError), case
            outcomes['refused'] += 1
        else:
            outcomes['parsed'] += 1
    assert outcomes['parsed'] > 100 and outcomes['refused'] > 100, outcomes
    assert time.monotonic() - started < 10


def _frame(kind, flags, stream_id, payload=b''):
    return struct.pack('>I B I', (len(payload) << 8) | kind, flags, stream_id) + payload


_SETTINGS_FRAME = _frame(4, 0, 0)


@pytest.mark.parametrize('frames', [
    pytest.param(_frame(0, 0, 0, b'x'), id='DATA on stream 0'),
    pytest.param(_frame(1, 4, 0, b'\x88'), id='HEADERS on stream 0'),
    pytest.param(_frame(6, 0, 0, b'1234567'), id='PING of 7 bytes'),
    pytest.param(_frame(6, 0, 1, b'12345678'), id='PING on stream 1'),
    pytest.param(_frame(3, 0, 0, b'\0\0\0\0'), id='RST_STREAM on stream 0'),
    pytest.param(_frame(3, 0, 1, b'\0\0\0'), id='RST_STREAM of 3 bytes'),
    pytest.param(_frame(7, 0, 0, b'\0\0\0\0'), id='GOAWAY of 4 bytes'),
    pytest.param(_frame(5, 4, 1, b'\0\0\0\2\x88'), id='PUSH_PROMISE'),
    pytest.param(_frame(4, 0, 1), id='SETTINGS on stream 1'),
    pytest.param(_frame(4, 0, 0, b'\0\4\0\0'), id='SETTINGS of 4 bytes'),
    pytest.param(_frame(4, 0, 0, b'\0\4\x80\0\0\0'), id='INITIAL_WINDOW_SIZE 2**31'),
    pytest.param(_frame(4, 0, 0, b'\0\5\0\0\0\1'), id='MAX_FRAME_SIZE 1'),
    pytest.param(_frame(8, 0, 0, b'\0\0\1'), id='WINDOW_UPDATE of 3 bytes'),
    pytest.param(_frame(8, 0, 0, b'\x7f\xff\xff\xff'), id='connection window over 2**31-1'),
    pytest.param(_frame(9, 4, 1, b'\x88'), id='CONTINUATION without HEADERS'),
    pytest.param(_frame(1, 0, 1, b'\x88') + _frame(6, 0, 0, b'12345678'), id='PING inside a header block'),
    pytest.param(_frame(1, 0, 1, b'\x88') + _frame(9, 4, 3, b''), id='CONTINUATION of another stream'),
    pytest.param(_frame(1, 4, 1, b'\xff\xff\xff\xff\x7f'), id='a header block that does not decode'),
    pytest.param(_frame(0, 8, 1, b'\x05abc'), id='more padding than frame'),
    pytest.param(_frame(0, 0, 1, b'\0' * 16385), id='a frame over SETTINGS_MAX_FRAME_SIZE'),
])
def test_a_frame_the_protocol_forbids_fails_the_connection(frames):
    connection, transport, owner, handler = _feed([_SETTINGS_FRAME + frames])
    assert transport.aborted, 'the connection was not failed'
    connection.connectionLost(Failure(ConnectionDone()))
    assert isinstance(owner.closed_with[0], errors.ProtocolError), owner.closed_with
    assert isinstance(handler.events[-1][1], errors.ProtocolError), handler.events


def test_a_remembered_header_block_is_decoded_again_once_the_table_changed():
    """The framer remembers blocks made only of table references; when a later block changes the
    dynamic table, the same bytes may name other fields, and are decoded afresh."""
    connection, transport, owner, _ = _framer()
    streams = [_Recorder() for _ in range(4)]
    for handler in streams:
        connection.open(handler, _BLOCK)
    ids = [handler.stream_id for handler in streams]

    def headers(stream_id, block, end=True):
        flags = 0x4 | (0x1 if end else 0)
        connection.dataReceived(_frame(0x1, flags, stream_id, block))

    status = b'\x88'                                    # static :status 200
    insert = b'\x40\x01x\x01%s'                         # literal with incremental indexing: x = ...
    refer = b'\xbe'                                     # dynamic entry 62: the newest
    headers(ids[0], status + insert % b'1')             # the table: [x: 1]
    headers(ids[1], status + refer)                     # x: 1, remembered
    headers(ids[2], status + insert % b'2')             # the table: [x: 2, x: 1]
    headers(ids[3], status + refer)                     # the same bytes: now x: 2
    fields = [dict(handler.events[0][1]) for handler in streams]
    assert [f[b'x'] for f in fields] == [b'1', b'1', b'2', b'2']
    assert not transport.aborted and owner.closed_with == []


def test_grpc_timeout_is_the_literal_field_in_milliseconds():
    from txaioetcd.transport._grpc import _grpc_timeout
    from txaioetcd.transport._h2 import literal
    for seconds, value in ((0.0001, b'1m'), (1, b'1000m'), (4.9995, b'4999m'), (1e9, b'99999999m')):
        assert _grpc_timeout(seconds) == literal(b'grpc-timeout', value)
