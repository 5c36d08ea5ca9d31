"""The native gRPC transport: etcd's own protocol over HTTP/2, one connection per member.

Every call is a stream on the member's one connection (HTTP/2 with prior knowledge on plain TCP and
unix sockets, ALPN ``h2`` over TLS). Every watch of the client to that member shares one Watch stream
(create and cancel by watch id on the open stream), and every lease keepalive one LeaseKeepAlive
stream (a request per keepalive, its answer told apart by the lease id). Answers are protobuf (``_pb``), errors come as
``grpc-status``/``grpc-message`` and map onto the same error classes as the gateway's.

The failover rules are the shared ones (``_failover``). What HTTP/2 adds: a stream refused by the
server (RST_STREAM REFUSED_STREAM) or above a GOAWAY's last stream id was not processed and may go
out again anywhere, writes included; a deadline is sent as ``grpc-timeout`` and, when it passes
here, the stream is reset (CANCEL). A connection that carries streams but has been silent for 10 s
gets a PING (etcd allows one only while streams are open, at most every 5 s); no answer within 10 s
more, and the connection counts as lost.
"""

from __future__ import annotations

import struct
from urllib.parse import unquote

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from .._defer import Deferred, succeed
from .._version import __version__
from ..errors import (ClientClosed, ConnectionFailed, ConnectionLost, ProtocolError, Timeout, Unavailable,
                      Unsupported, server_error)
from ..rpc import LeaseKeepAlive
from . import ITransport
from ._endpoints import parse_endpoint
from ._failover import DETACHED_GRACE, FailoverCall, Members, detaches, with_request
from ._h2 import RST_CANCEL, RST_REFUSED_STREAM, H2Connection, Stream, header_block, literal
from ._pb import (decode, encode, keepalive_request, keepalive_response, path, watch_cancel, watch_create,
                  watch_response)

__all__ = ('GrpcTransport',)

_log = Logger()
_PREFIX = struct.Struct('>BI')          # gRPC message: compressed flag, length
_USER_AGENT = f'txaioetcd/{__version__}'.encode('ascii')
PING_AFTER = 10.0       # seconds of silence on a connection with open streams before a PING
PING_ANSWER = 10.0      # seconds a PING may go unanswered before the connection counts as dead


def _message(body: bytes) -> bytes:
    return _PREFIX.pack(0, len(body)) + body


_TIMEOUT_FIELD = literal(b'grpc-timeout', b'')[:-1]      # the field up to its value's length byte


def _grpc_timeout(seconds: float) -> bytes:
    # The header field grpc-timeout in milliseconds (at most 8 digits, the protocol says), as
    # ``literal`` would encode it: the name, then a value of fewer than 127 bytes after one length byte.
    value = b'%dm' % max(1, min(99_999_999, int(seconds * 1000)))
    return _TIMEOUT_FIELD + bytes((len(value),)) + value


def _status_of(fields) -> tuple[int | None, str]:
    status, message = None, ''
    for name, value in fields:
        if name == b'grpc-status':
            status = int(value)
        elif name == b'grpc-message':
            message = unquote(value.decode('utf-8', 'replace'))
    return status, message


class _Messages:
    """gRPC length-prefixed messages out of a stream's DATA, however the frames split them."""

    __slots__ = ('buffer',)

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list:
        buffer = self.buffer
        buffer += data
        found, position = [], 0
        while len(buffer) - position >= 5:
            compressed, length = _PREFIX.unpack_from(buffer, position)
            if compressed:
                raise ProtocolError('gRPC: a compressed message, though none was asked for')
            end = position + 5 + length
            if end > len(buffer):
                break
            found.append(bytes(buffer[position + 5:end]))
            position = end
        del buffer[:position]
        return found


class _Member:
    """One endpoint: its HTTP/2 connection (made on first use, again after it was lost), the header
    blocks of its requests, and its Watch stream."""

    def __init__(self, transport: 'GrpcTransport', url: str):
        self.url = url
        self.endpoint = parse_endpoint(url)
        self.avoid_until = 0.0
        self._transport = transport
        reactor, connect_timeout, tls = transport._reactor, transport._connect_timeout, transport._tls
        self._connector = self.endpoint.connector(reactor, connect_timeout, tls, alpn=[b'h2'])
        self.connection = None
        self.draining = set()           # earlier connections still finishing their streams
        self.hub = None                 # the _WatchHub on ``connection``
        self.keepalives = None          # the _KeepAliveHub on ``connection``
        self._waiters = None            # Deferreds of callers while a connection is being made
        self._blocks = {}
        self._token = b''

    # -- the connection

    def connect(self) -> Deferred:
        """A Deferred firing with a usable connection (ConnectionFailed if none could be made)."""
        connection = self.connection
        if connection is not None and connection.usable:
            return succeed(connection)
        if self._transport._closed:
            raise ClientClosed(f'the client was closed (connection to {self.url})')
        waiter = Deferred()
        if self._waiters is None:
            self._waiters = [waiter]
            attempt = self._connector.connect(_ConnectionFactory(self))
            attempt.addCallbacks(self._connected, self._connect_failed)
        else:
            self._waiters.append(waiter)
        return waiter

    def _connected(self, connection: H2Connection) -> None:
        waiters, self._waiters = self._waiters or [], None
        if self._transport._closed:
            connection.shut(ClientClosed(f'the client was closed (connection to {self.url})'))
            error = ClientClosed(f'the client was closed (connection to {self.url})')
            for waiter in waiters:
                waiter.errback(error)
            return
        self._retire()
        self.connection = connection
        self._transport._watch_connections()
        for waiter in waiters:
            waiter.callback(connection)

    def _connect_failed(self, failure) -> None:
        waiters, self._waiters = self._waiters or [], None
        error = failure.value if isinstance(failure.value, ConnectionFailed) else \
            ConnectionFailed(f'cannot connect to {self.url}: {failure.getErrorMessage()}')
        for waiter in waiters:
            waiter.errback(error)

    def _retire(self) -> None:
        """The current connection takes no new streams (GOAWAY, or full): the ones it has finish on it
        (and it stays watched by the keepalive and closed with the client)."""
        connection, self.connection = self.connection, None
        self.hub = self.keepalives = None
        if connection is not None and not connection.closed:
            self.draining.add(connection)

    def connections(self) -> list:
        """Every open connection to this member: the current one and those draining."""
        current = [self.connection] if self.connection is not None else []
        return current + list(self.draining)

    def closed(self, connection: H2Connection, error: Exception) -> None:
        self.draining.discard(connection)
        if self.connection is connection:
            self.connection = None
            self.hub = self.keepalives = None

    def goaway(self, connection: H2Connection, last_stream_id: int, code: int, debug: bytes) -> None:
        """The server stops taking streams: those above ``last_stream_id`` were not processed."""
        _log.info('{url} sent GOAWAY (code {code}, last stream {last}): {debug}', url=self.url, code=code,
                  last=last_stream_id, debug=debug[:200])
        if self.connection is connection:
            self._retire()
        connection.refuse_above(last_stream_id)
        if not connection.open_streams:
            connection.shut(ConnectionLost(f'{self.url} sent GOAWAY'))

    def close(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            waiter.errback(error)
        for connection in self.connections():
            connection.shut(error)
        self.connection = None
        self.draining.clear()
        self.hub = self.keepalives = None

    # -- requests

    def block(self, rpc_name: str) -> bytes:
        """The header block of a call (without its grpc-timeout), made once per path and token."""
        block = self._blocks.get(rpc_name)
        if block is None:
            endpoint = self.endpoint
            fields = [(b':method', b'POST'), (b':scheme', b'https' if endpoint.secure else b'http'),
                      (b':path', path(rpc_name)), (b':authority', endpoint.host_header),
                      (b'content-type', b'application/grpc'), (b'te', b'trailers'),
                      (b'user-agent', _USER_AGENT)]
            if self._token:
                fields.append((b'token', self._token))
            if rpc_name == 'Watch/Watch':
                # A member cut off from the leader then ends its watches, so they move elsewhere.
                fields.append((b'hasleader', b'true'))
            block = self._blocks[rpc_name] = header_block(fields)
        return block

    def set_token(self, token: bytes) -> None:
        self._token = token
        self._blocks.clear()


class _ConnectionFactory(Factory):
    def __init__(self, member: _Member):
        self.member = member

    def buildProtocol(self, addr):
        return H2Connection(self.member, self.member._transport._reactor)


@implementer(ITransport)
class GrpcTransport(Members):
    """Talks to one or more etcd members over gRPC (HTTP/2), one connection per member."""

    def __init__(self, reactor, endpoints, connect_timeout: float = 5.0, tls=None):
        """``tls``: a TLSConfig for the https:// and unixs:// endpoints (None: the platform's CAs)."""
        self._connect_timeout = connect_timeout
        self._tls = tls
        self._pinger = None
        super().__init__(reactor, endpoints)

    def _make_member(self, url: str) -> _Member:
        return _Member(self, url)

    def set_token(self, token) -> None:
        raw = token.encode('ascii') if isinstance(token, str) else (token or b'')
        for member in self._members:
            member.set_token(raw)

    def call(self, op, timeout: float) -> Deferred:
        if type(op) is LeaseKeepAlive:
            return _KeepAlive(self, op).start(timeout)
        return _Call(self, op, _message(encode(op))).start(timeout)

    def watch(self, create, on_message, timeout: float) -> '_Watch':
        """A watch on the preferred member's Watch stream (opened there on first use)."""
        watch = _Watch(self, create, on_message, timeout)
        watch.start(self._members[self._preferred])
        return watch

    def close(self) -> Deferred:
        self._closed = True
        if self._pinger is not None and self._pinger.active():
            self._pinger.cancel()
        self._pinger = None
        error = ClientClosed(f'the client was closed (connections to {", ".join(self.endpoints)})')
        for member in self._members:
            member.close(error)
        return succeed(None)

    # -- keepalive pings

    def _watch_connections(self) -> None:
        if self._pinger is None and not self._closed:
            self._pinger = self._reactor.callLater(PING_AFTER / 2, self._check_connections)

    def _check_connections(self) -> None:
        self._pinger = None
        now = self._reactor.seconds()
        alive = False
        for member in self._members:
            for connection in member.connections():
                if connection.closed:
                    continue
                alive = True
                if not connection.open_streams:
                    continue
                silent = now - connection.last_received
                if connection.pings_unanswered:
                    if now - connection.pinged_at >= PING_ANSWER:
                        connection.shut(ConnectionLost(f'{member.url} did not answer a keepalive PING for '
                                                       f'{PING_ANSWER:g} s (silent for {silent:.0f} s)'))
                elif silent >= PING_AFTER:
                    connection.ping()
        if alive:
            self._watch_connections()


class _Call(FailoverCall, Stream):
    """One unary call: a stream on the member's connection - HEADERS, one message, and back the
    answer's headers, one message, trailers (or Trailers-Only for an error)."""

    __slots__ = ('_message', '_connection', 'stream_id', '_headers_seen', '_messages', '_answer',
                 '_reads_at_send', '_same_member_retries')

    def __init__(self, transport: GrpcTransport, op, message: bytes):
        super().__init__(transport, op)
        self._message = message
        self._connection = None
        self.stream_id = 0
        self._headers_seen = False
        self._messages = None
        self._answer = None
        self._reads_at_send = 0
        self._same_member_retries = 0

    # -- FailoverCall

    def _attempt(self, member: _Member) -> None:
        self._headers_seen = False
        self._messages = _Messages()
        self._answer = None
        self._when_connected(member.connect)

    def _stop_attempt(self) -> bool:
        self._stop_waiting()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            if self._sent and detaches(self._op):
                # Not cancelled in etcd (see DETACHED_GRACE): the answer, when it comes, is dropped.
                self._transport._reactor.callLater(DETACHED_GRACE, connection.reset, self.stream_id, RST_CANCEL)
            else:
                connection.reset(self.stream_id, RST_CANCEL)
        return self._sent

    def _send(self, connection: H2Connection) -> None:
        self._pending = None
        if self._done:
            return
        self._connection = connection
        self._reads_at_send = connection.reads
        left = self._timer.getTime() - self._transport._reactor.seconds()
        if detaches(self._op):
            left += DETACHED_GRACE      # nor does etcd's own deadline cancel it before the grace is over
        connection.request(self, self._member.block(self._op.rpc) + _grpc_timeout(left), self._message)
        self._sent = True

    # -- Stream

    def headers(self, fields: list, end_stream: bool) -> None:
        if self._done:
            return
        if not self._headers_seen:
            self._headers_seen = True
            status = next((value for name, value in fields if name == b':status'), b'')
            if status != b'200':
                self._refused_http(status, end_stream)
                self._connection = None
                return
            if not end_stream:
                return
        self._connection = None     # trailers (or Trailers-Only): the stream is over
        self._trailers(fields)

    def data(self, data: bytes, end_stream: bool) -> None:
        if self._done:
            return
        try:
            for message in self._messages.feed(data):
                if self._answer is None:
                    self._answer = message
        except ProtocolError as error:
            self._stop_attempt()
            self._finish_error(ProtocolError(f'{error.reason} (from {self._member.url})', self._describe))
            return
        if end_stream:
            self._connection = None
            self._finish_error(ProtocolError(f'{self._member.url} ended the stream without a grpc-status',
                                             self._describe))

    def reset(self, code: int) -> None:
        self._connection = None
        if self._done:
            return
        if code == RST_REFUSED_STREAM:
            # Refused before processing (or above a GOAWAY's last stream): safe to send anywhere, writes
            # included. The next member if there is one to try; else this one again, on a new
            # connection (a server that ends connections on purpose, at a maximum age, say), twice.
            refused = ConnectionLost(f'{self._member.url} did not process the request (stream refused)',
                                     self._describe)
            if self._tries >= len(self._transport._members) and self._same_member_retries < 2:
                self._same_member_retries += 1
                self._tries -= 1
                self._transport._reactor.callLater(0, self._retry_now)
            else:
                self._next_member(refused)
        else:
            self._lost_after_sending(ConnectionLost(f'{self._member.url} reset the stream (HTTP/2 error '
                                                    f'code {code})', self._describe))

    def lost(self, error: Exception) -> None:
        connection, self._connection = self._connection, None
        if self._done:
            return
        if isinstance(error, ClientClosed):
            self._finish_error(ClientClosed(error.reason, self._describe))
        elif (self._idempotent and self._sent and self._reads_at_send and self._same_member_retries < 2 and
              connection is not None and connection.reads == self._reads_at_send):
            # A connection the server had closed (e.g. it restarted) before our request reached it:
            # nothing came in since it was sent, so a read may go out again on a fresh connection to
            # the same member, on the next reactor turn (by then the closed one is forgotten).
            self._same_member_retries += 1
            self._tries -= 1
            self._transport._reactor.callLater(0, self._retry_now)
        elif isinstance(error, ConnectionFailed) or not self._sent:
            self._next_member(error)        # e.g. a failed TLS handshake: nothing was processed
        else:
            self._lost_after_sending(error)

    # -- answers

    def _trailers(self, fields: list) -> None:
        status, message = _status_of(fields)
        if status is None:
            self._finish_error(ProtocolError(f'{self._member.url} answered without a grpc-status',
                                             self._describe))
        elif status == 0:
            if self._answer is None:
                self._finish_error(ProtocolError(f'{self._member.url} answered OK without a message',
                                                 self._describe))
                return
            try:
                result = decode(self._op, self._answer)
            except Exception as error:      # protobuf's DecodeError and friends
                self._finish_error(ProtocolError(f'an answer from {self._member.url} that is not a '
                                                 f'{self._op.rpc} response: {error}', self._describe))
                return
            self._answered()
            self._finish(result)
        elif status == 12:
            self._finish_error(Unsupported(f'{self._member.url} does not implement {self._op.rpc}: '
                                           f'{message}', self._describe))
        elif status == 4 and self._idempotent:
            self._finish_error(Timeout(f'{self._member.url} gave up at the deadline: {message}',
                                       self._describe))
        else:
            refused = server_error(status, message, self._describe)
            if status == 4:             # the server's deadline passed: a write may have applied
                self._lost_after_sending(refused)
            elif isinstance(refused, Unavailable):
                self._unavailable(refused, message)
            else:
                self._finish_error(refused)

    def _refused_http(self, status: bytes, end_stream: bool) -> None:
        # Not gRPC at all (a proxy, or the gateway's port without gRPC): nothing was processed.
        if not end_stream and self._connection is not None:
            self._connection.reset(self.stream_id, RST_CANCEL)
        self._finish_error(ProtocolError(f'{self._member.url} answered HTTP {status.decode() or "?"} to a '
                                         f'gRPC request; is it an etcd v3 server?', self._describe))


class _Watch:
    """One watch on a member's Watch stream; ``done`` and ``cancel()`` as watch.py expects."""

    def __init__(self, transport: GrpcTransport, create, on_message, timeout: float):
        self._transport = transport
        self._create = create
        self._on_message = on_message
        self._timeout = timeout
        self._hub = None
        self.watch_id = 0
        self.created = False
        self.done = Deferred(lambda _: self._leave())
        self._timer = transport._reactor.callLater(timeout, self._expired)
        self._ended = False

    def start(self, member: _Member) -> None:
        try:
            d = member.connect()
        except ClientClosed as error:
            self._end(ClientClosed(error.reason, self._create.describe()))
            return
        d.addCallbacks(self._connected, self._failed, callbackArgs=(member,))

    def _connected(self, connection: H2Connection, member: _Member) -> None:
        if self._ended:
            return
        hub = member.hub
        if hub is None or hub.connection is not connection or hub.ended:
            hub = member.hub = _WatchHub(member, connection)
        self._hub = hub
        hub.add(self)

    def _failed(self, failure) -> None:
        if not self._ended:
            error = failure.value
            self._end(error if isinstance(error, (ConnectionFailed, ClientClosed)) else
                      ConnectionFailed(f'{error}', self._create.describe()))

    def message(self, response) -> None:
        if self._ended:
            return
        if response.created and not self.created:
            self.created = True
            self._stop_timer()
        if response.canceled:
            self._hub.forget(self.watch_id)
        self._on_message(response)
        if response.canceled and not self._ended:
            self._end(None)

    def cancel(self) -> None:
        """Stop the watch (a cancel request on the stream); ``done`` fires with None."""
        if not self._ended:
            self._leave()
            self._end(None)

    def _leave(self) -> None:
        if self._hub is not None:
            self._hub.cancel(self.watch_id)

    def _expired(self) -> None:
        self._timer = None
        if not self._ended and not self.created:
            self._leave()
            self._end(Timeout(f'the watch was not created within {self._timeout:g} s',
                              self._create.describe()))

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _end(self, error) -> None:
        if self._ended:
            return
        self._ended = True
        self._stop_timer()
        if self.done.called:
            return
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)


class _SharedStream(Stream):
    """A long-lived stream of a connection that many requests share, its messages told apart by an
    id in them: the Watch stream and the LeaseKeepAlive stream. When it ends, everything waiting on it
    hears why (``_end_all``)."""

    rpc = ''                # 'Watch/Watch'
    slot = ''               # the _Member attribute that holds the current one

    def __init__(self, member: _Member, connection: H2Connection):
        self._member = member
        self.connection = connection
        self._messages = _Messages()
        self._headers_seen = False
        self.ended = False
        connection.open(self, member.block(self.rpc))

    @property
    def _name(self) -> str:
        return f'the {self.rpc.split("/")[1]} stream'

    def _received(self, messages: list) -> None:
        raise NotImplementedError

    def _end_all(self, error: Exception) -> None:
        raise NotImplementedError

    # -- Stream

    def headers(self, fields: list, end_stream: bool) -> None:
        if not self._headers_seen:
            self._headers_seen = True
            status = next((value for name, value in fields if name == b':status'), b'')
            if status != b'200':
                self._fail(ProtocolError(f'{self._member.url} answered HTTP {status.decode() or "?"} to '
                                         f'{self._name}'))
                return
            if not end_stream:
                return
        status, message = _status_of(fields)
        self._fail(server_error(status, message, self._name) if status else
                   ConnectionLost(f'{self._member.url} ended {self._name}'))

    def data(self, data: bytes, end_stream: bool) -> None:
        try:
            self._received(self._messages.feed(data))
        except Exception as error:      # ProtocolError, or protobuf's DecodeError
            self._fail(error if isinstance(error, ProtocolError) else
                       ProtocolError(f'{self._member.url}: a message on {self._name} that does not parse: '
                                     f'{error}'))
            return
        if end_stream:
            self._fail(ConnectionLost(f'{self._member.url} ended {self._name}'))

    def reset(self, code: int) -> None:
        self._fail(ConnectionLost(f'{self._member.url} reset {self._name} (HTTP/2 error code {code})'))

    def lost(self, error: Exception) -> None:
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        if self.ended:
            return
        self.ended = True
        if getattr(self._member, self.slot) is self:
            setattr(self._member, self.slot, None)
        if not self.connection.closed:
            self.connection.reset(self.stream_id, RST_CANCEL)
        self._end_all(error)


class _WatchHub(_SharedStream):
    """The one Watch stream of a connection: it carries every watch of the client to that member,
    told apart by watch id (etcd 3.4 and later take the id the client chooses)."""

    rpc, slot = 'Watch/Watch', 'hub'

    def __init__(self, member: _Member, connection: H2Connection):
        self.watches: dict[int, _Watch] = {}
        self._next_id = 1
        super().__init__(member, connection)

    def add(self, watch: _Watch) -> None:
        watch.watch_id = self._next_id
        self._next_id += 1
        self.watches[watch.watch_id] = watch
        self.connection.send(self.stream_id, _message(watch_create(watch._create, watch.watch_id)))

    def forget(self, watch_id: int) -> None:
        self.watches.pop(watch_id, None)

    def cancel(self, watch_id: int) -> None:
        if self.watches.pop(watch_id, None) is not None and not self.ended and not self.connection.closed:
            self.connection.send(self.stream_id, _message(watch_cancel(watch_id)))

    def _received(self, messages: list) -> None:
        for raw in messages:
            response = watch_response(raw)
            watch = self.watches.get(response.watch_id)
            if watch is None and response.watch_id == -1:
                # A create etcd refused outright answers with id -1: it is the oldest not created.
                watch = next((w for w in self.watches.values() if not w.created), None)
            if watch is not None:
                watch.message(response)

    def _end_all(self, error: Exception) -> None:
        watches, self.watches = self.watches, {}
        for watch in watches.values():
            watch._end(error)


class _KeepAliveHub(_SharedStream):
    """The one LeaseKeepAlive stream of a connection: every keepalive of the client to that member.
    etcd answers each request in turn with the lease's id (TTL 0: the lease is gone); keepalives of one
    lease in flight at once are answered in the order sent."""

    rpc, slot = 'Lease/LeaseKeepAlive', 'keepalives'

    def __init__(self, member: _Member, connection: H2Connection):
        self.waiting: dict[int, list] = {}
        super().__init__(member, connection)

    def send(self, call: '_KeepAlive') -> None:
        lease_id = call._op.lease_id
        self.waiting.setdefault(lease_id, []).append(call)
        self.connection.send(self.stream_id, _message(keepalive_request(lease_id)))

    def forget(self, call: '_KeepAlive') -> None:
        calls = self.waiting.get(call._op.lease_id)
        if calls and call in calls:
            calls.remove(call)      # its answer, when it comes, goes to nobody

    def _received(self, messages: list) -> None:
        for kept in [keepalive_response(raw) for raw in messages]:
            calls = self.waiting.get(kept.lease_id)
            if calls:
                call = calls.pop(0)
                if not calls:
                    del self.waiting[kept.lease_id]
                call.kept(kept)

    def _end_all(self, error: Exception) -> None:
        waiting, self.waiting = self.waiting, {}
        for calls in waiting.values():
            for call in calls:
                call.lost(error)


class _KeepAlive(FailoverCall):
    """One lease keepalive: a request on the member's LeaseKeepAlive stream, answered there by lease
    id. Idempotent, so a keepalive whose stream or connection is lost goes to the next member."""

    __slots__ = ('_hub',)

    def __init__(self, transport: GrpcTransport, op):
        super().__init__(transport, op)
        self._hub = None

    def _attempt(self, member: _Member) -> None:
        self._when_connected(member.connect)

    def _send(self, connection: H2Connection) -> None:
        self._pending = None
        if self._done:
            return
        member = self._member
        hub = member.keepalives
        if hub is None or hub.connection is not connection or hub.ended:
            hub = member.keepalives = _KeepAliveHub(member, connection)
        self._hub = hub
        hub.send(self)
        self._sent = True

    def _stop_attempt(self) -> bool:
        self._stop_waiting()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.forget(self)
        return self._sent

    def kept(self, kept) -> None:
        self._hub = None
        if not self._done:
            self._answered()
            self._finish(kept)

    def lost(self, error: Exception) -> None:
        self._hub = None
        if self._done:
            return
        if isinstance(error, ClientClosed):
            self._finish_error(ClientClosed(error.reason, self._describe))
        elif isinstance(error, Unavailable):
            self._unavailable(error, error.reason)
        elif isinstance(error, (ConnectionLost, ProtocolError)):
            self._next_member(error)
        else:
            self._finish_error(with_request(error, self._describe))
