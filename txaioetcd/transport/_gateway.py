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
from twisted.internet.defer import CancelledError, Deferred, succeed
from zope.interface import implementer

from ..retry import READ_RETRY
from ..errors import (ClientClosed, ConnectionFailed, ConnectionLost, NoLeader, OutcomeUnknown,
                      ProtocolError, ServerError, Timeout, TLSError, TransportError, Unavailable,
                      Unsupported, server_error)
from . import ITransport
from ._endpoints import parse_endpoint
from ._http import ConnectionPool, Receiver
from ._json import PATHS, decode, encode, watch_request, watch_response
from ._state import ConnectionState
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
class GatewayTransport:
    """Talks to one or more etcd members through their JSON gateway.

    ``lazy`` (set by the client): a request that finds no endpoint to connect to waits and tries
    again, with growing jittered pauses, until its deadline - instead of failing at once.
    """

    lazy = False
    AVOID_SECONDS = 3.0     # how long a member that failed is passed over when a call starts

    def __init__(self, reactor, endpoints, pool_size: int = 32, connect_timeout: float = 5.0, tls=None):
        """``tls``: a TLSConfig for the https:// and unixs:// endpoints (None: the platform's CAs)."""
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError('GatewayTransport needs at least one endpoint URL')
        self._reactor = reactor
        self._member_options = (pool_size, connect_timeout, tls)
        self._members = [_Member(reactor, url, pool_size, connect_timeout, tls) for url in endpoints]
        self._preferred = 0
        self._closed = False
        self.connection = ConnectionState()

    @property
    def endpoints(self) -> list[str]:
        return [member.url for member in self._members]

    @property
    def current_endpoint(self) -> str:
        return self._members[self._preferred].url

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

    def endpoint_failed(self, error: Exception) -> None:
        """A stream on the preferred endpoint broke for a transport reason: prefer the next one."""
        if isinstance(error, (ConnectionFailed, ConnectionLost, Timeout)) and len(self._members) > 1:
            self._avoid(self._members[self._preferred])
            self._preferred = self._start_index()

    def add_endpoint(self, url: str) -> bool:
        """Talk to one more member (auto-sync found it) → whether it was new."""
        if url in self.endpoints or self._closed:
            return False
        self._members.append(_Member(self._reactor, url, *self._member_options))
        return True

    def _avoid(self, member: _Member) -> None:
        if len(self._members) > 1:
            member.avoid_until = self._reactor.seconds() + self.AVOID_SECONDS

    def _start_index(self) -> int:
        """Where a call starts: the preferred member, unless it failed lately and another did not."""
        now = self._reactor.seconds()
        count = len(self._members)
        for step in range(count):
            index = (self._preferred + step) % count
            if self._members[index].avoid_until <= now:
                return index
        return self._preferred

    def _moved_on(self, index: int) -> None:
        # Prefer the member that just answered, so later calls skip the dead one.
        self._preferred = index

    def close(self) -> Deferred:
        self._closed = True
        for member in self._members:
            member.pool.close()
        return succeed(None)


class _Call(Receiver):
    """One unary call: tries members in turn until one answers, bounded by the deadline."""

    __slots__ = ('_transport', '_op', '_rpc', '_body', '_describe', '_idempotent', '_result', '_timer',
                 '_index', '_tries', '_member', '_pending', '_connection', '_sent', '_status',
                 '_content_type', '_chunks', '_errors', '_done', '_reused', '_stale_retries',
                 '_prefix_index', '_waits', '_retry', '_reached', '_failures')

    def __init__(self, transport: GatewayTransport, op, body: bytes):
        self._transport = transport
        self._op = op
        self._rpc = PATHS[op.rpc]
        self._body = body
        self._describe = op.describe()
        self._idempotent = op.idempotent
        self._index = transport._start_index()
        self._tries = 0
        self._member = None
        self._pending = None        # Deferred of a connection being acquired
        self._connection = None     # connection carrying our request
        self._sent = False
        self._status = 0
        self._content_type = b''
        self._chunks = []
        self._errors = []
        self._done = False
        self._timer = None
        self._reused = False
        self._stale_retries = 0
        self._prefix_index = 0
        self._waits = 0
        self._retry = None
        self._reached = False
        self._failures = []

    def start(self, timeout: float) -> Deferred:
        self._result = Deferred(self._cancelled)
        if self._transport._closed:
            self._finish_error(ClientClosed('the client is closed', self._describe))
            return self._result
        self._timer = self._transport._reactor.callLater(timeout, self._expired, timeout)
        self._try()
        return self._result

    # -- attempts

    def _try(self) -> None:
        members = self._transport._members
        self._member = members[self._index % len(members)]
        self._tries += 1
        pending = self._pending = self._member.pool.acquire()
        pending.addCallbacks(self._send, self._acquire_failed)

    def _next_member(self, error: Exception) -> None:
        """Try the next member, or give up when every member had its turn."""
        self._errors.append(f'{self._member.url}: {error.reason if hasattr(error, "reason") else error}')
        self._failures.append(error)
        if isinstance(error, (ConnectionFailed, ConnectionLost, Unavailable)):
            self._transport._avoid(self._member)
        if not isinstance(error, ConnectionFailed):
            self._reached = True        # some member is up: worth waiting for it (or an election)
        if self._tries >= len(self._transport._members):
            if isinstance(error, (ConnectionFailed, ConnectionLost)):
                self._transport.connection.down()
            retryable = not isinstance(error, TLSError)    # a certificate does not fix itself
            waits = retryable and (
                (isinstance(error, ConnectionFailed) and self._transport.lazy) or
                (self._idempotent and self._reached and len(self._transport._members) > 1 and
                 isinstance(error, (ConnectionFailed, ConnectionLost, Unavailable))))
            if waits:
                # Nothing was sent (or it is safe to send again): a lazy client waits for an endpoint
                # to come up, and a read to a cluster waits out an election or a restart - with
                # growing, jittered pauses, until the deadline says no.
                self._waits += 1
                self._tries = 0
                self._index += 1
                self._sent = False
                self._status = 0
                self._chunks = []
                pause = READ_RETRY.pause(self._waits)
                self._retry = self._transport._reactor.callLater(pause, self._retry_now)
                return
            if isinstance(error, ConnectionFailed) and len(self._errors) > 1:
                # Keep a specific class (e.g. CertificateUntrusted) when every endpoint failed alike.
                kind = type(error) if all(isinstance(e, type(error)) for e in self._failures) \
                    else ConnectionFailed
                error = kind('no endpoint could be reached (' + '; '.join(self._errors) + ')')
            self._finish_error(_with_request(error, self._describe))
            return
        self._index += 1
        self._sent = False
        self._status = 0
        self._chunks = []
        self._try()

    def _retry_now(self) -> None:
        if not self._done:
            self._try()

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

    def _acquire_failed(self, failure) -> None:
        self._pending = None
        if self._done:
            return
        failure.trap(ConnectionFailed, ClientClosed)
        if isinstance(failure.value, ClientClosed):
            self._finish_error(ClientClosed(failure.value.reason, self._describe))
            return
        self._next_member(failure.value)

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
            member = self._member
            if not member.prefix_confirmed:
                member.prefix_confirmed = True
            if self._index != self._transport._preferred:
                self._transport._moved_on(self._index % len(self._transport._members))
            self._transport.connection.up()
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
                    self._chunks = []
                    self._sent = False
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
            if self._idempotent or isinstance(refused, NoLeader):
                # A read may go anywhere; "no leader" is refused before etcd looks at the request.
                self._next_member(refused)
                return
            # Any other "unavailable" came after the request went on to etcd (the gateway lost its
            # connection to the server, the proposal timed out, the leader changed): it may have
            # been applied.
            self._finish_error(OutcomeUnknown(
                f'{member.url} answered "{message}" after taking the request; it may or may not '
                f'have been applied - read the key back to find out', self._describe, refused))
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
            self._chunks = []
            self._transport._reactor.callLater(0, self._retry_now)
            return
        if self._idempotent or not self._sent:
            self._next_member(reason)
        elif isinstance(reason, ConnectionLost):
            self._finish_error(OutcomeUnknown(
                f'connection to {self._member.url} lost after the request was sent; it may or may '
                f'not have been applied - read the key back to find out', self._describe, reason))
        else:
            self._finish_error(_with_request(reason, self._describe))

    # -- endings

    def _expired(self, timeout: float) -> None:
        self._timer = None
        if self._done:
            return
        sent = self._connection is not None
        self._abandon()
        if sent:
            # A member that took a request and stayed silent until the deadline: later calls start
            # elsewhere for a while (a hung member must not keep the client pinned).
            transport = self._transport
            transport._avoid(self._member)
            if transport._members[transport._preferred] is self._member:
                transport._preferred = transport._start_index()
        if sent and not self._idempotent:
            self._finish_error(OutcomeUnknown(
                f'no answer from {self._member.url} within {timeout:g} s after the request was sent; '
                f'it may or may not have been applied - read the key back to find out',
                self._describe, Timeout(f'deadline of {timeout:g} s passed', self._describe)))
        else:
            tried = f' (earlier: {"; ".join(self._errors[-3:])})' if self._errors else ''
            self._finish_error(Timeout(f'no answer within {timeout:g} s from {self._member.url}'
                                       f'{tried}', self._describe))

    def _abandon(self) -> None:
        """Stop the attempt in progress: drop a connection mid-request, or leave the pool's queue."""
        self._done = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.addErrback(lambda failure: failure.trap(CancelledError))
            pending.cancel()

    def _cancelled(self, result: Deferred) -> None:
        if not self._done:
            self._abandon()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(self, result) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._result.callback(result)

    def _finish_error(self, error: Exception) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._result.errback(error)


def _with_request(error: Exception, describe: str) -> Exception:
    """The same kind of error, naming the request it belongs to."""
    if isinstance(error, (TransportError, ServerError)) and error.request is None:
        return type(error)(error.reason, describe)
    return error
