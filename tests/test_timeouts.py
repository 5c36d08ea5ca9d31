"""Deadlines, lost connections, failover, cancel and close - against real sockets on 127.0.0.1.

The misbehaving servers are small Twisted protocols written here: one that accepts and never answers,
one that reads the request and hangs up. A port nobody listens on is a socket bound and held (never
listening) for the test: connecting to it is refused, and nothing else can take the port meanwhile.
Failover tests pair those with the session's real etcd.

Time bounds here are the promises under test (a deadline is kept; a refused connection or a hang-up
fails at once, not at the deadline), each with honest margin for a loaded machine as said beside it.
"""

import socket
import time

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol

from txaioetcd import Client, OpSet, Transaction, errors

from _loopback import RequestReader, connected


class _Recorder(Protocol):
    """Accepts a connection and keeps whatever arrives; ``answer`` decides what to do with a request."""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.reader = RequestReader()
        self.lost = False

    def dataReceived(self, data):
        resets = len(self.reader.resets)
        for _, request in self.reader.feed(data):
            if request is not None:
                self.factory.requests.append(request.rpc)
                self.factory.arrived()
                self.answer()
        if len(self.reader.resets) > resets:
            self.factory.was_reset()

    def answer(self):
        pass  # the hanging server: never answers

    def connectionLost(self, reason):
        self.lost = True
        self.factory.gone()


class _HangUp(_Recorder):
    """Reads the whole request, then closes the connection without a word."""

    def answer(self):
        self.transport.loseConnection()


class _Server(Factory):
    def __init__(self, reactor, protocol):
        self.reactor = reactor
        self.protocol = protocol
        self.connections = []
        self.requests = []
        self._waiting_requests = []
        self._waiting_gone = []
        self._waiting_resets = []
        self.port = reactor.listenTCP(0, self, interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.port.getHost().port}'

    def arrived(self):
        waiting, self._waiting_requests = self._waiting_requests, []
        for d in waiting:
            d.callback(None)

    def gone(self):
        waiting, self._waiting_gone = self._waiting_gone, []
        for d in waiting:
            d.callback(None)

    def was_reset(self):
        waiting, self._waiting_resets = self._waiting_resets, []
        for d in waiting:
            d.callback(None)

    def stream_reset(self):
        """A Deferred firing when the client next resets an HTTP/2 stream (RST_STREAM)."""
        d = defer.Deferred()
        self._waiting_resets.append(d)
        return d

    @property
    def http2(self):
        """Whether the client spoke HTTP/2 (gRPC) to this server."""
        return any(connection.reader.http2 for connection in self.connections)

    def request_arrived(self):
        """A Deferred firing when the next complete request has arrived."""
        d = defer.Deferred()
        self._waiting_requests.append(d)
        return d

    def connection_gone(self):
        d = defer.Deferred()
        self._waiting_gone.append(d)
        return d

    def stop(self):
        for connection in self.connections:
            if not connection.lost:
                connection.transport.abortConnection()
        return self.port.stopListening()


@pytest.fixture
def hang_server(reactor):
    server = _Server(reactor, _Recorder)
    yield server
    server.stop()


@pytest.fixture
def hangup_server(reactor):
    server = _Server(reactor, _HangUp)
    yield server
    server.stop()


@pytest.fixture
def dead_urls():
    """``dead_urls(n)``: n URLs of loopback ports nothing listens on, each held bound (not listening)
    until the test ends, so that no other process can start listening there meanwhile."""
    held = []

    def make(count):
        urls = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(('127.0.0.1', 0))
            urls.append(f'http://127.0.0.1:{sock.getsockname()[1]}')
        return urls
    yield make
    for sock in held:
        sock.close()


@pytest.fixture
def dead_url(dead_urls):
    return dead_urls(1)[0]


def _within(deadline, func):
    """A Deferred of ``func()``, failed with defer.TimeoutError if it takes longer than ``deadline``:
    a test-side guard so that a client that forgets its own deadline cannot hang the test."""
    from twisted.internet import reactor
    return defer.ensureDeferred(func()).addTimeout(deadline, reactor)


def _txaioetcd_timers(reactor, client):
    """The reactor's timers that belong to ``client``'s calls (deadlines, retries). Not every timer of
    txaioetcd: a client another test left behind (a lease's keepalive, say) may add or drop one of its
    own at any moment."""
    transport = client._transport
    return {call for call in reactor.getDelayedCalls()
            if getattr(call.func, '__module__', '').startswith('txaioetcd')
            # gRPC's keepalive check lives as long as a connection does, not a call's timer
            and getattr(call.func, '__name__', '') != '_check_connections'
            and _owned_by(getattr(call.func, '__self__', None), client, transport)}


def _owned_by(owner, client, transport):
    return owner is not None and (owner is client or owner is transport or
                                  getattr(owner, '_transport', None) is transport or
                                  getattr(owner, '_client', None) is client)


# -- (a) a server that never answers


@pytest_twisted.ensureDeferred
async def test_get_against_silent_server_times_out(reactor, hang_server):
    async with connected(reactor, hang_server.url, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(errors.Timeout) as caught:
            await _within(10, lambda: client.get(b'some/key', timeout=0.5))
        elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0          # at the 0.5 s deadline: 1.5 s of margin for a loaded machine
    error = caught.value
    assert isinstance(error, errors.TransportError)
    assert error.request == "get of key b'some/key'"
    assert str(error).startswith("get of key b'some/key': no answer within 0.5 s from " + hang_server.url)
    assert hang_server.requests == ['KV/Range']


@pytest_twisted.ensureDeferred
async def test_set_against_silent_server_is_outcome_unknown(reactor, hang_server):
    async with connected(reactor, hang_server.url, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await _within(10, lambda: client.set(b'some/key', b'v', timeout=0.5))
        elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0          # at the 0.5 s deadline: 1.5 s of margin for a loaded machine
    error = caught.value
    assert error.request == "set of key b'some/key'"
    assert str(error).startswith("set of key b'some/key': no answer from " + hang_server.url)
    assert 'may or may not have been applied' in str(error)
    assert isinstance(error.cause, errors.Timeout)
    assert error.cause.request == "set of key b'some/key'"
    assert '0.5 s' in str(error.cause)
    assert hang_server.requests == ['KV/Put']


@pytest_twisted.ensureDeferred
async def test_deadline_drops_the_connection(reactor, hang_server):
    """A request whose deadline passed is abandoned, not left hanging: over HTTP/1.1 its connection
    is closed; over HTTP/2 its stream is reset (CANCEL) and the connection, shared by every call, stays."""
    async with connected(reactor, hang_server.url, timeout=30) as client:
        before = _txaioetcd_timers(reactor, client)
        gone, reset = hang_server.connection_gone(), hang_server.stream_reset()
        with pytest.raises(errors.Timeout):
            await client.get(b'k', timeout=0.3)
        await _abandoned(hang_server, gone, reset)
        assert _txaioetcd_timers(reactor, client) == before


async def _abandoned(server, gone, reset):
    """The server saw its one request abandoned: the connection closed (HTTP/1.1), or the request's
    stream reset and the connection kept (HTTP/2)."""
    if server.http2:
        await _within(2, lambda: reset)
        [connection] = server.connections
        assert connection.reader.resets == [1] and not connection.lost
    else:
        await _within(2, lambda: gone)
        assert [c.lost for c in server.connections] == [True]


@pytest_twisted.ensureDeferred
async def test_default_timeout_of_the_client_applies(reactor, hang_server):
    async with connected(reactor, hang_server.url, timeout=0.4) as client:
        started = time.monotonic()
        with pytest.raises(errors.Timeout) as caught:
            await _within(10, lambda: client.status())
        assert 0.35 <= time.monotonic() - started < 2.0     # at the client's 0.4 s: 1.6 s of margin
        assert caught.value.request == 'status'
        assert 'within 0.4 s' in str(caught.value)


# -- (b) nobody listening


@pytest_twisted.ensureDeferred
async def test_closed_port_is_connection_failed_fast(reactor, dead_url):
    async with connected(reactor, dead_url) as client:
        before = _txaioetcd_timers(reactor, client)
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailed) as caught:
            await _within(10, lambda: client.get(b'k'))
        # At once, not at the client's 5 s deadline (a refused connect takes no time; up to half the
        # deadline is margin for a loaded machine).
        assert time.monotonic() - started < client.timeout / 2
        error = caught.value
        assert error.request == "get of key b'k'"
        assert str(error).startswith(f"get of key b'k': cannot connect to {dead_url}")
        assert 'refused' in str(error).lower()

        # A write that could not be sent is not ambiguous: ConnectionFailed, not OutcomeUnknown.
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailed) as caught:
            await _within(10, lambda: client.set(b'k', b'v'))
        assert time.monotonic() - started < client.timeout / 2
        assert not isinstance(caught.value, errors.OutcomeUnknown)
        assert caught.value.request == "set of key b'k'"
        assert _txaioetcd_timers(reactor, client) == before


@pytest_twisted.ensureDeferred
async def test_every_endpoint_closed_names_them_all(reactor, dead_urls):
    urls = dead_urls(2)
    async with connected(reactor, endpoints=urls) as client:
        with pytest.raises(errors.ConnectionFailed) as caught:
            await _within(10, lambda: client.get(b'k'))
    message = str(caught.value)
    assert caught.value.request == "get of key b'k'"
    assert message.startswith("get of key b'k': no endpoint could be reached")
    assert urls[0] in message and urls[1] in message


# -- (c) a server that reads the request and hangs up


@pytest_twisted.ensureDeferred
async def test_get_when_server_hangs_up_is_connection_lost(reactor, hangup_server):
    async with connected(reactor, hangup_server.url) as client:
        started = time.monotonic()
        with pytest.raises(errors.ConnectionLost) as caught:
            await _within(10, lambda: client.get(b'k'))
        # At once, not at the client's 5 s deadline (half of it is margin for a loaded machine).
        assert time.monotonic() - started < client.timeout / 2
    error = caught.value
    assert error.request == "get of key b'k'"
    assert str(error).startswith(f"get of key b'k': connection to {hangup_server.url} lost")
    assert hangup_server.requests == ['KV/Range']


@pytest_twisted.ensureDeferred
async def test_set_when_server_hangs_up_is_outcome_unknown(reactor, hangup_server):
    async with connected(reactor, hangup_server.url) as client:
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await _within(10, lambda: client.set(b'k', b'v'))
        # A transaction with a write is just as ambiguous.
        with pytest.raises(errors.OutcomeUnknown) as caught_txn:
            await _within(10, lambda: client.submit(Transaction(success=[OpSet(b'k', b'v')])))
    error = caught.value
    assert error.request == "set of key b'k'"
    assert str(error).startswith(f"set of key b'k': connection to {hangup_server.url} lost after the "
                                 f"request was sent")
    assert isinstance(error.cause, errors.ConnectionLost)
    assert hangup_server.url in str(error.cause)
    assert caught_txn.value.request.startswith('transaction (')
    assert hangup_server.requests == ['KV/Put', 'KV/Txn']


# -- (d) failover between endpoints


@pytest_twisted.ensureDeferred
async def test_failover_past_a_dead_endpoint(reactor, etcd, dead_url, prefix):
    async with connected(reactor, endpoints=[dead_url, etcd.url]) as client:
        assert client.endpoint == dead_url
        written = await _within(10, lambda: client.set(prefix + b'k', b'v'))
        assert client.endpoint == etcd.url
        got = await client.get(prefix + b'k')
        assert got.kvs[0].value == b'v'
        assert got.kvs[0].mod_revision == written.revision
        assert client.endpoint == etcd.url


@pytest_twisted.ensureDeferred
async def test_read_fails_over_when_connection_is_lost(reactor, etcd, hangup_server, prefix):
    """A read whose connection drops is sent again to the next endpoint (it is idempotent)."""
    async with connected(reactor, endpoints=[hangup_server.url, etcd.url]) as client:
        got = await _within(10, lambda: client.get(prefix + b'k'))
        assert got.count == 0 and got.header.revision > 0
        assert client.endpoint == etcd.url
        assert hangup_server.requests == ['KV/Range']


@pytest_twisted.ensureDeferred
async def test_write_does_not_fail_over_after_it_was_sent(reactor, etcd, hangup_server, prefix):
    """A write whose connection drops after sending is ambiguous: it is not sent to another member."""
    async with connected(reactor, endpoints=[hangup_server.url, etcd.url]) as client:
        with pytest.raises(errors.OutcomeUnknown):
            await _within(10, lambda: client.set(prefix + b'k', b'v'))
        assert client.endpoint == hangup_server.url
        async with connected(reactor, etcd.url) as reader:
            assert (await reader.get(prefix + b'k')).count == 0


@pytest_twisted.ensureDeferred
async def test_silent_endpoint_is_passed_over_after_a_timeout(reactor, etcd, hang_server, prefix):
    """A member that accepts connections and never answers costs one call its deadline; after that,
    calls start at the next endpoint (the silent one is avoided for a while) and succeed."""
    async with connected(reactor, endpoints=[hang_server.url, etcd.url]) as client:
        started = time.monotonic()
        with pytest.raises(errors.Timeout) as caught:
            await _within(10, lambda: client.get(prefix + b'k', timeout=1))
        assert 0.95 <= time.monotonic() - started < 3      # at the 1 s deadline: 2 s of margin
        assert f'from {hang_server.url}' in str(caught.value)
        assert client.endpoint == etcd.url
        await client.set(prefix + b'k', b'v')
        assert (await client.get(prefix + b'k', timeout=1)).kvs[0].value == b'v'
        assert hang_server.requests == ['KV/Range']


# -- (e) a closed client


@pytest_twisted.ensureDeferred
async def test_calls_after_close_fail_with_client_closed(reactor, etcd, prefix):
    client = Client(reactor, url=etcd.url, timeout=5)
    await client.set(prefix + b'k', b'v')
    await client.close()
    calls = [
        (lambda: client.get(prefix + b'k'), f'get of key {prefix + b"k"!r}'),
        (lambda: client.set(prefix + b'k', b'w'), f'set of key {prefix + b"k"!r}'),
        (lambda: client.delete(prefix + b'k'), f'delete of key {prefix + b"k"!r}'),
        (lambda: client.status(), 'status'),
    ]
    for call, request in calls:
        with pytest.raises(errors.ClientClosed) as caught:
            await call()
        assert caught.value.request == request
        assert str(caught.value).startswith(request + ': ')
        assert 'closed' in str(caught.value)
    async with connected(reactor, etcd.url) as check:
        assert (await check.get(prefix + b'k')).kvs[0].value == b'v'


@pytest_twisted.ensureDeferred
async def test_close_fails_calls_in_flight_at_once(reactor, hang_server):
    """Closing the client must end the calls it has in flight at once, not after their deadlines."""
    client = Client(reactor, url=hang_server.url, timeout=30)
    before = _txaioetcd_timers(reactor, client)
    arrived = hang_server.request_arrived()
    read = client.get(b'r')
    await _within(5, lambda: arrived)
    arrived = hang_server.request_arrived()
    write = client.set(b'w', b'v')
    await _within(5, lambda: arrived)
    try:
        await client.close()
        with pytest.raises((errors.ClientClosed, errors.ConnectionLost)) as lost:
            await _within(2, lambda: read)
        with pytest.raises((errors.ClientClosed, errors.OutcomeUnknown)) as unknown:
            await _within(2, lambda: write)
        assert lost.value.request == "get of key b'r'"
        assert unknown.value.request == "set of key b'w'"
        assert not _txaioetcd_timers(reactor, client) - before
    finally:
        # Do not leave the calls' 30 s timers behind for the next tests.
        for d in (read, write):
            d.addErrback(lambda failure: None)
            d.cancel()


# -- (f) cancel


@pytest_twisted.ensureDeferred
async def test_cancel_of_a_sent_request(reactor, hang_server):
    async with connected(reactor, hang_server.url, timeout=30) as client:
        before = _txaioetcd_timers(reactor, client)
        arrived = hang_server.request_arrived()
        gone, reset = hang_server.connection_gone(), hang_server.stream_reset()
        d = client.get(b'k')
        await _within(5, lambda: arrived)
        # The deadline timer exists while the request is in flight ...
        assert len(_txaioetcd_timers(reactor, client) - before) == 1
        d.cancel()
        assert d.called                  # at once: cancel() itself ended the call, not some timer
        with pytest.raises(CancelledError):
            await _within(5, lambda: d)
        # ... and is gone with it; the request is abandoned.
        assert _txaioetcd_timers(reactor, client) == before
        await _abandoned(hang_server, gone, reset)


@pytest_twisted.ensureDeferred
async def test_cancel_before_the_connection_is_made(reactor, hang_server):
    """Cancelled while still waiting for a connection: nothing is sent, no timer is left, and the
    client goes on working."""
    async with connected(reactor, hang_server.url, timeout=30) as client:
        before = _txaioetcd_timers(reactor, client)
        d = client.set(b'k', b'v')
        d.cancel()
        with pytest.raises(CancelledError):
            await _within(5, lambda: d)
        assert _txaioetcd_timers(reactor, client) == before
        # Give the connection that was being made a moment: no request must arrive on it.
        await _sleep(reactor, 0.2)
        assert hang_server.requests == []


@pytest_twisted.ensureDeferred
async def test_cancel_of_one_call_leaves_others_alone(reactor, etcd, prefix):
    async with connected(reactor, etcd.url) as client:
        before = _txaioetcd_timers(reactor, client)
        await client.set(prefix + b'k', b'v')
        cancelled = client.get(prefix + b'k')
        kept = client.get(prefix + b'k')
        cancelled.cancel()
        with pytest.raises(CancelledError):
            await cancelled
        assert (await kept).kvs[0].value == b'v'
        assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
        assert _txaioetcd_timers(reactor, client) == before


def _sleep(reactor, seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
