"""Server-streaming calls over the gateway (watch): one chunked HTTP response carrying one JSON
message per line, each wrapped as ``{"result": {...}}`` (or ``{"error": {...}}``).

A stream holds a connection of the endpoint's pool for as long as it runs. Messages are delivered
whole, whatever way the HTTP chunks split them.
"""

from __future__ import annotations

import ujson
from twisted.internet.defer import CancelledError

from .._defer import Deferred
from ..errors import ConnectionLost, ProtocolError, Timeout, server_error
from ._http import Receiver

__all__ = ('Stream',)


class Stream(Receiver):
    """One streaming call; ``done`` fires (None) when the server ends it or errbacks on failure."""

    __slots__ = ('_member', '_rpc', '_body', '_describe', '_on_message', '_reactor', 'done',
                 '_connection', '_pending', '_timer', '_status', '_buffer', '_error_body', '_ended')

    def __init__(self, reactor, member, rpc: str, body: bytes, describe: str, on_message):
        self._reactor = reactor
        self._member = member
        self._rpc = rpc
        self._body = body
        self._describe = describe
        self._on_message = on_message
        self._connection = None
        self._pending = None
        self._timer = None
        self._status = 0
        self._buffer = b''
        self._error_body = []
        self._ended = False
        self.done = Deferred(self._cancelled)

    def start(self, timeout: float) -> Deferred:
        """Connect and send; the stream must start answering within ``timeout`` seconds."""
        self._timer = self._reactor.callLater(timeout, self._expired, timeout)
        self._pending = self._member.pool.open_dedicated()
        self._pending.addCallbacks(self._send, self._acquire_failed)
        return self.done

    def _send(self, connection) -> None:
        self._pending = None
        if self._ended:
            self._member.pool.release_dedicated(connection)
            return
        self._connection = connection
        connection.send(self._member.head(self._rpc, len(self._body)), self._body, self)

    def _acquire_failed(self, failure) -> None:
        self._pending = None
        if not self._ended:
            self._end(failure.value)

    # -- Receiver

    def head(self, status: int, content_type: bytes) -> None:
        self._status = status
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data(self, chunk: bytes) -> None:
        if self._status != 200:
            self._error_body.append(chunk)
            return
        buffer = self._buffer + chunk if self._buffer else chunk
        *lines, self._buffer = buffer.split(b'\n')
        for line in lines:
            if self._ended:
                return
            if line.strip():
                self._deliver(line)

    def _deliver(self, line: bytes) -> None:
        try:
            message = ujson.loads(line)
        except ValueError:
            self._fail(ProtocolError(f'invalid JSON in stream from {self._member.url}: {line[:80]!r}',
                                     self._describe))
            return
        if 'error' in message and 'result' not in message:
            error = message['error']
            self._fail(server_error(int(error.get('grpc_code', error.get('code', 2))),
                                    error.get('message') or error.get('error') or 'stream error',
                                    self._describe))
            return
        self._on_message(message.get('result', message))

    def end(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._member.pool.release_dedicated(connection)
        if self._ended:
            return
        if self._status != 200:
            body = b''.join(self._error_body)
            try:
                error = ujson.loads(body)
                self._end(server_error(int(error.get('code', 2)), error.get('message') or
                                       error.get('error') or f'HTTP {self._status}', self._describe))
            except (ValueError, AttributeError):
                self._end(ProtocolError(f'HTTP {self._status} from {self._member.url}: {body[:200]!r}',
                                        self._describe))
            return
        if self._buffer.strip():
            self._deliver(self._buffer)
        if not self._ended:         # the last message may itself have ended the stream (an error)
            self._end(None)

    def fail(self, reason: Exception) -> None:
        self._connection = None
        if not self._ended:
            if isinstance(reason, ConnectionLost):
                reason = ConnectionLost(reason.reason, self._describe)
            self._end(reason)

    # -- endings

    def cancel(self) -> None:
        """Stop the stream; ``done`` fires with None."""
        if not self._ended:
            self._abandon()
            self._end(None)

    def _fail(self, error: Exception) -> None:
        self._abandon()
        self._end(error)

    def _expired(self, timeout: float) -> None:
        self._timer = None
        if not self._ended:
            self._fail(Timeout(f'stream did not start within {timeout:g} s at {self._member.url}',
                               self._describe))

    def _abandon(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._member.pool.release_dedicated(connection)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.addErrback(lambda failure: failure.trap(CancelledError))
            pending.cancel()

    def _cancelled(self, _) -> None:
        if not self._ended:
            self._abandon()
            self._ended = True
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _end(self, error) -> None:
        self._ended = True
        self._stop_timer()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)
