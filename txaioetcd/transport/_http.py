"""A lean HTTP/1.1 client for etcd's JSON gateway: keep-alive connections and a pool per endpoint.

Why not twisted.web.client.Agent: every call of this library is one small POST with a JSON body to one
of a few hosts, and the client's CPU per call is the limit under load. Agent builds Headers objects,
producers and a BodyProtocol per request; this module writes the request in one ``write`` and parses
the status line, three headers and the body (Content-Length or chunked) itself. benchmarks/http_layer.py
measures both; docs/performance.md has the figures.

One request at a time per connection (no pipelining): a slow answer then delays nobody else.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.protocol import Factory, Protocol

from .._defer import Deferred, fail, succeed
from ..errors import ClientClosed, ConnectionFailed, ConnectionLost, ProtocolError

__all__ = ('Receiver', 'HTTPConnection', 'ConnectionPool')

_HEAD_END = b'\r\n\r\n'
_MAX_HEAD = 64 * 1024


class Receiver:
    """Gets one response: ``head`` once, ``data`` per body piece, then ``end`` or ``fail`` once."""

    __slots__ = ()

    def head(self, status: int, content_type: bytes) -> None:
        pass

    def data(self, chunk: bytes) -> None:
        pass

    def end(self) -> None:
        pass

    def fail(self, reason: Exception) -> None:
        pass


class HTTPConnection(Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self, pool: 'ConnectionPool'):
        self._pool = pool
        self._buffer = b''
        self._receiver: Receiver | None = None
        self._state = 'idle'      # idle | head | length | chunk-size | chunk-data | chunk-trailer
        self._remaining = 0
        self._keep_alive = True
        self.closed = False
        self.requests = 0         # requests sent so far: > 0 means this connection is being reused

    @property
    def receiver(self) -> Receiver | None:
        """Whom the response in progress goes to (None between requests)."""
        return self._receiver

    # -- sending

    def send(self, head: bytes, body: bytes, receiver: Receiver) -> None:
        """Write one request (``head`` ends with the blank line) and route its response to ``receiver``."""
        self._receiver = receiver
        self._state = 'head'
        self.requests += 1
        self.transport.write(head + body)

    def abort(self) -> None:
        """Drop the connection at once (deadline passed, or the caller cancelled)."""
        self._receiver = None
        if not self.closed:
            self.transport.abortConnection()

    def shut(self, error: Exception) -> None:
        """Drop the connection and fail the request it carries with ``error`` (the client closed)."""
        receiver, self._receiver = self._receiver, None
        if not self.closed:
            self.transport.abortConnection()
        if receiver is not None:
            receiver.fail(error)

    # -- receiving

    def dataReceived(self, data: bytes) -> None:
        if self._receiver is None:
            # Bytes nobody asked for: the connection is out of step, so it cannot be reused.
            self.transport.abortConnection()
            return
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as error:
            receiver, self._receiver = self._receiver, None
            self.transport.abortConnection()
            if receiver is not None:
                receiver.fail(error)

    def _parse(self) -> None:
        while self._receiver is not None and self._buffer:
            state = self._state
            if state == 'length':
                take = self._buffer[:self._remaining]
                self._buffer = self._buffer[len(take):]
                self._remaining -= len(take)
                self._receiver.data(take)
                if self._remaining == 0:
                    self._finish()
            elif state == 'head':
                end = self._buffer.find(_HEAD_END)
                if end < 0:
                    if len(self._buffer) > _MAX_HEAD:
                        raise ProtocolError('HTTP response head larger than 64 KiB')
                    return
                head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
                self._start(head)
            elif state == 'chunk-size':
                end = self._buffer.find(b'\r\n')
                if end < 0:
                    return
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                try:
                    size = int(line.split(b';', 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f'bad chunk size line {line[:40]!r}') from None
                if size == 0:
                    self._state = 'chunk-trailer'
                else:
                    self._remaining = size
                    self._state = 'chunk-data'
            elif state == 'chunk-data':
                if self._remaining == 0:
                    if len(self._buffer) < 2:
                        return
                    if self._buffer[:2] != b'\r\n':
                        raise ProtocolError('chunk not followed by CRLF')
                    self._buffer = self._buffer[2:]
                    self._state = 'chunk-size'
                    continue
                take = self._buffer[:self._remaining]
                self._buffer = self._buffer[len(take):]
                self._remaining -= len(take)
                self._receiver.data(take)
            elif state == 'chunk-trailer':
                end = self._buffer.find(b'\r\n')
                if end < 0:
                    return
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                if not line:
                    self._finish()
            else:
                raise ProtocolError(f'unexpected bytes from server in state {state}')

    def _start(self, head: bytes) -> None:
        lines = head.split(b'\r\n')
        status_line = lines[0].split(b' ', 2)
        if len(status_line) < 2 or not status_line[0].startswith(b'HTTP/1.'):
            raise ProtocolError(f'not an HTTP/1.x response: {lines[0][:60]!r}')
        try:
            status = int(status_line[1])
        except ValueError:
            raise ProtocolError(f'bad HTTP status line {lines[0][:60]!r}') from None
        length = None
        chunked = False
        content_type = b''
        self._keep_alive = not status_line[0].endswith(b'1.0')
        for line in lines[1:]:
            name, _, value = line.partition(b':')
            name = name.strip().lower()
            if name == b'content-length':
                length = int(value.strip())
            elif name == b'transfer-encoding':
                chunked = b'chunked' in value.lower()
            elif name == b'content-type':
                content_type = value.strip()
            elif name == b'connection':
                self._keep_alive = value.strip().lower() != b'close'
        self._receiver.head(status, content_type)
        if chunked:
            self._state = 'chunk-size'
        elif length is not None:
            self._remaining = length
            self._state = 'length'
            if length == 0:
                self._finish()
        else:
            raise ProtocolError('response without Content-Length or chunked encoding')

    def _finish(self) -> None:
        receiver, self._receiver = self._receiver, None
        self._state = 'idle'
        if self._buffer or not self._keep_alive:
            self.transport.loseConnection()
        else:
            self._pool._released(self)
        receiver.end()

    def connectionLost(self, reason) -> None:
        self.closed = True
        self._pool._lost(self)
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.fail(ConnectionLost(f'connection to {self._pool.name} lost '
                                         f'({reason.getErrorMessage()})'))


class _DedicatedOwner:
    """Stands in for the pool as the owner of a dedicated connection: it never goes back to the pool."""

    def __init__(self, pool: 'ConnectionPool'):
        self.pool = pool
        self.name = pool.name

    def _released(self, connection) -> None:
        pass        # a finished stream's connection is closed by its owner, not reused

    def _lost(self, connection) -> None:
        self.pool._streams.discard(connection)


class _Factory(Factory):
    def __init__(self, pool):
        self.pool = pool

    def buildProtocol(self, addr):
        return HTTPConnection(self.pool)


class ConnectionPool:
    """Up to ``size`` keep-alive connections to one endpoint; callers queue when all are busy."""

    def __init__(self, reactor, endpoint, name: str, size: int = 32):
        self._reactor = reactor
        self._endpoint = endpoint           # an IStreamClientEndpoint
        self.name = name
        self.size = size
        self._idle: list[HTTPConnection] = []
        self._busy: set = set()
        self._connecting = 0
        self._waiters: deque[Deferred] = deque()
        self._streams: set = set()          # dedicated connections of long-lived streams (watches)
        self._factory = _Factory(self)
        self._closed = False

    def acquire(self) -> Deferred:
        """A Deferred firing with an idle connection that now belongs to the caller until released."""
        if self._idle:
            connection = self._idle.pop()
            self._busy.add(connection)
            return succeed(connection)
        if self._closed:
            return fail(ClientClosed(f'the client was closed (connections to {self.name})'))
        waiter = Deferred(self._cancel_waiter)
        self._waiters.append(waiter)
        if len(self._busy) + self._connecting < self.size:
            self._connect()
        return waiter

    def open_dedicated(self) -> Deferred:
        """A new connection outside the pool's count, for one long-lived stream: a watch must not take
        a pooled connection away from requests for hours. ``release_dedicated`` closes it."""
        if self._closed:
            return fail(ClientClosed(f'the client was closed (connections to {self.name})'))
        d = self._endpoint.connect(_Factory(_DedicatedOwner(self)))

        def opened(connection):
            if self._closed:
                connection.transport.loseConnection()
                raise ClientClosed(f'the client was closed (connections to {self.name})')
            self._streams.add(connection)
            return connection

        def failed(failure):
            raise ConnectionFailed(f'cannot connect to {self.name}: {failure.getErrorMessage()}')
        return d.addCallbacks(opened, failed)

    def release_dedicated(self, connection) -> None:
        self._streams.discard(connection)
        connection.abort()

    def _cancel_waiter(self, waiter: Deferred) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _connect(self) -> None:
        self._connecting += 1
        d = self._endpoint.connect(self._factory)
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: HTTPConnection) -> None:
        self._connecting -= 1
        if self._closed:
            connection.transport.loseConnection()
            return
        self._released(connection)

    def _connect_failed(self, failure) -> None:
        self._connecting -= 1
        # Every waiter that no connection will serve fails now; nothing was sent for them.
        surplus = len(self._waiters) - (len(self._busy) + self._connecting)
        error = ConnectionFailed(f'cannot connect to {self.name}: {failure.getErrorMessage()}')
        while surplus > 0 and self._waiters:
            self._waiters.popleft().errback(error)
            surplus -= 1

    def _released(self, connection: HTTPConnection) -> None:
        self._busy.discard(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            self._busy.add(connection)
            waiter.callback(connection)
            return
        self._idle.append(connection)

    def _lost(self, connection: HTTPConnection) -> None:
        self._busy.discard(connection)
        try:
            self._idle.remove(connection)
        except ValueError:
            pass
        if self._waiters and not self._closed and len(self._busy) + self._connecting < self.size:
            self._connect()

    def close(self) -> None:
        """Close every connection, failing the requests they carry and every waiter."""
        self._closed = True
        error = ClientClosed(f'the client was closed (connections to {self.name})')
        while self._waiters:
            self._waiters.popleft().errback(error)
        for connection in self._idle + list(self._busy) + list(self._streams):
            connection.shut(error)
        self._streams.clear()
        self._idle.clear()
        self._busy.clear()
