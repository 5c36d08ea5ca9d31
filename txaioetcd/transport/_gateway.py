"""The JSON-gateway transport: etcd's gRPC gateway (``POST /v3/kv/range`` ...) over HTTP/1.1.

Each endpoint gets a connection pool and learns its API prefix on first use: requests go to ``/v3``;
Go's "404 page not found" (no handler for the path at all) before that prefix ever answered means the
server is older (``/v3beta`` in 3.3/3.4, ``/v3alpha`` in 3.2/3.3) and the same request is sent again
under the next prefix - a 404 means it was not processed, so that is safe even for writes. A route
missing under a prefix the server does serve answers "Not Found" instead, and is reported as
Unsupported without touching the prefix.

Calls stick to one endpoint (the first that works) and move to the next when it cannot be reached.
Moving on after a request was sent happens only for idempotent requests; a write whose answer is lost
fails with OutcomeUnknown instead, because it may have been applied.
"""

from __future__ import annotations

import ujson
from zope.interface import implementer

from .._defer import Deferred, succeed
from ..errors import (ClientClosed, ConnectionLost, ProtocolError, Unavailable, Unsupported,
                      server_error)
from . import ITransport
from ._endpoints import parse_endpoint
from ._failover import DETACHED_GRACE, FailoverCall, Members, detaches, with_request
from ._http import ConnectionPool, Receiver
from ._json import PATHS, decode, encode, watch_request, watch_response
from ._stream import Stream

__all__ = ('GatewayTransport',)

API_PREFIXES = (b'/v3', b'/v3beta', b'/v3alpha')


class _Member:
    """One endpoint: its connection pool and the API prefix it speaks."""

    def __init__(self, reactor, url: str, pool_size: int, connect_timeout: float, tls=None):
        self.endpoint = parse_endpoint(url)
        self.url = url
        self.pool = ConnectionPool(reactor, self.endpoint.connector(reactor, connect_timeout, tls), url,
                                   pool_size)
        self.prefix_index = 0
        self.prefix_confirmed = False
        self.avoid_until = 0.0       # reactor time until which calls start elsewhere
        self._heads: dict[str, bytes] = {}
        self._token = b''

    @property
    def prefix(self) -> bytes:
        return API_PREFIXES[self.prefix_index]

    def head(self, rpc: str, length: int) -> bytes:
        start = self._heads.get(rpc)
        if start is None:
            start = self._heads[rpc] = (b'POST ' + self.prefix + b'/' + rpc.encode('ascii') +
                                        b' HTTP/1.1\r\nHost: ' + self.endpoint.host_header +
                                        b'\r\nContent-Type: application/json\r\n' + self._token +
                                        b'Content-Length: ')
        return start + str(length).encode('ascii') + b'\r\n\r\n'

    def prefix_refused(self, index: int) -> bool:
        """The server has no handler under prefix number ``index``: move to the next older prefix
        (once, however many calls saw the same 404). False when no prefix is left to try."""
        if self.prefix_confirmed:
            return False
        if index == self.prefix_index:
            if self.prefix_index + 1 >= len(API_PREFIXES):
                return False
            self.prefix_index += 1
            self._heads.clear()
        return True

    def set_token(self, token: bytes) -> None:
        self._token = b'Authorization: ' + token + b'\r\n' if token else b''
        self._heads.clear()


@implementer(ITransport)
class GatewayTransport(Members):
    """Talks to one or more etcd members through their JSON gateway.

    ``lazy`` (set by the client): a request that finds no endpoint to connect to waits and tries
    again, with growing jittered pauses, until its deadline - instead of failing at once.
    """

    def __init__(self, reactor, endpoints, pool_size: int = 32, connect_timeout: float = 5.0, tls=None):
        """``tls``: a TLSConfig for the https:// and unixs:// endpoints (None: the platform's CAs)."""
        self._member_options = (pool_size, connect_timeout, tls)
        super().__init__(reactor, endpoints)

    def _make_member(self, url: str) -> _Member:
        return _Member(self._reactor, url, *self._member_options)

    def set_token(self, token) -> None:
        raw = token.encode('ascii') if isinstance(token, str) else (token or b'')
        for member in self._members:
            member.set_token(raw)

    def call(self, op, timeout: float) -> Deferred:
        body = ujson.dumps(encode(op), ensure_ascii=True, escape_forward_slashes=False).encode('ascii')
        return _Call(self, op, body).start(timeout)

    def watch(self, create, on_message, timeout: float) -> Stream:
        """One gateway stream per watch, on a connection of its own: the gateway reads no further
        requests from an open stream, so it cannot carry a second watch."""
        body = ujson.dumps(watch_request(create), ensure_ascii=True,
                           escape_forward_slashes=False).encode('ascii') + b'\n'
        stream = Stream(self._reactor, self._members[self._preferred], PATHS[create.rpc], body,
                        create.describe(), lambda message: on_message(watch_response(message)))
        stream.start(timeout)
        return stream

    def close(self) -> Deferred:
        self._closed = True
        for member in self._members:
            member.pool.close()
        return succeed(None)


class _Call(FailoverCall, Receiver):
    """One unary call over HTTP/1.1: a pooled connection per attempt."""

    __slots__ = ('_rpc', '_body', '_connection', '_status', '_content_type', '_chunks',
                 '_reused', '_stale_retries', '_prefix_index')

    def __init__(self, transport: GatewayTransport, op, body: bytes):
        super().__init__(transport, op)
        self._rpc = PATHS[op.rpc]
        self._body = body
        self._connection = None     # connection carrying our request
        self._status = 0
        self._content_type = b''
        self._chunks = []
        self._reused = False
        self._stale_retries = 0
        self._prefix_index = 0

    # -- FailoverCall

    def _attempt(self, member) -> None:
        self._status = 0
        self._chunks = []
        self._when_connected(member.pool.acquire)

    def _stop_attempt(self) -> bool:
        sent = self._connection is not None
        connection, self._connection = self._connection, None
        if connection is not None:
            if detaches(self._op):
                # Not cancelled in etcd (see DETACHED_GRACE): the connection reads the answer to its
                # end (this call ignores it, being done) and goes back to the pool.
                self._transport._reactor.callLater(DETACHED_GRACE, self._abort_if_still_waiting, connection)
            else:
                connection.abort()
        self._stop_waiting()
        return sent

    def _abort_if_still_waiting(self, connection) -> None:
        if connection.receiver is self:
            connection.abort()

    def _send(self, connection) -> None:
        self._pending = None
        if self._done:
            connection._pool._released(connection)
            return
        self._connection = connection
        self._sent = True
        self._reused = connection.requests > 0
        self._prefix_index = self._member.prefix_index
        connection.send(self._member.head(self._rpc, len(self._body)), self._body, self)

    # -- Receiver

    def head(self, status: int, content_type: bytes) -> None:
        self._status = status
        self._content_type = content_type

    def data(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def end(self) -> None:
        self._connection = None
        if self._done:
            return
        body = self._chunks[0] if len(self._chunks) == 1 else b''.join(self._chunks)
        if self._status == 200:
            try:
                result = decode(self._op, ujson.loads(body))
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                self._finish_error(ProtocolError(f'an answer from {self._member.url} that is not a '
                                                 f'{self._op.rpc} response ({error}): {body[:80]!r}',
                                                 self._describe))
                return
            self._member.prefix_confirmed = True
            self._answered()
            self._finish(result)
        else:
            self._server_refused(body)

    def _server_refused(self, body: bytes) -> None:
        member = self._member
        if not self._content_type.startswith(b'application/json'):
            if self._status == 404 and body.startswith(b'404 page not found'):
                # No handler for this path prefix at all: an older etcd (the request was not processed).
                if member.prefix_refused(self._prefix_index):
                    self._tries -= 1
                    self._try()
                    return
                if not member.prefix_confirmed:
                    self._finish_error(ProtocolError(
                        f'{member.url} offers none of the etcd v3 gateway prefixes '
                        f'{", ".join(p.decode() for p in API_PREFIXES)}; is it an etcd v3 server?',
                        self._describe))
                    return
            if self._status == 404:
                self._finish_error(Unsupported(
                    f'{member.url} has no gateway route {API_PREFIXES[self._prefix_index].decode()}/'
                    f'{self._rpc}', self._describe))
                return
            self._finish_error(ProtocolError(f'HTTP {self._status} from {member.url}: {body[:200]!r}',
                                             self._describe))
            return
        try:
            error = ujson.loads(body)
            code = int(error.get('code', 2))
            message = error.get('message') or error.get('error') or f'HTTP {self._status}'
        except (ValueError, AttributeError):
            self._finish_error(ProtocolError(f'HTTP {self._status} from {member.url}: {body[:200]!r}',
                                             self._describe))
            return
        refused = server_error(code, message, self._describe)
        if isinstance(refused, Unavailable):
            self._unavailable(refused, message)
            return
        self._finish_error(refused)

    def fail(self, reason: Exception) -> None:
        self._connection = None
        if self._done:
            return
        if isinstance(reason, ClientClosed):
            self._finish_error(ClientClosed(reason.reason, self._describe))
            return
        if self._idempotent and self._reused and self._status == 0 and self._stale_retries < 2:
            # A kept-alive connection the server had closed (e.g. it restarted) before our request
            # reached it: a read may simply go out again on a fresh connection to the same member.
            # Retry on the next reactor turn: by then the pool has seen its other dead connections.
            self._stale_retries += 1
            self._tries -= 1
            self._transport._reactor.callLater(0, self._retry_now)
            return
        if not self._sent:
            self._next_member(reason)
        elif isinstance(reason, ConnectionLost):
            self._lost_after_sending(reason)
        elif self._idempotent:
            self._next_member(reason)
        else:
            self._finish_error(with_request(reason, self._describe))
