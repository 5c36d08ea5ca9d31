"""Helpers for tests that talk to servers on 127.0.0.1: clients closed after use, and the HTTP/1.1
request framing the small fake servers and proxies written in the tests need."""

import os
from contextlib import asynccontextmanager
from typing import NamedTuple

from txaioetcd import Client


@asynccontextmanager
async def connected(reactor, url=None, *, endpoints=None, timeout=5, transport=None):
    """``async with connected(reactor, url) as client:`` a Client, closed (and awaited) afterwards."""
    if endpoints is None:
        client = Client(reactor, url=url, timeout=timeout, transport=transport)
    else:
        client = Client(reactor, endpoints=endpoints, timeout=timeout, transport=transport)
    try:
        yield client
    finally:
        await client.close()


def transport_in_use() -> str:
    """The transport a Client made without ``transport=`` uses here: 'gateway' or 'grpc'."""
    from txaioetcd.client import DEFAULT_TRANSPORT
    return os.environ.get('TXAIOETCD_TRANSPORT') or DEFAULT_TRANSPORT


class HttpRequest(NamedTuple):
    """One complete HTTP request as it arrived: ``head`` (up to, without, the blank line), ``body``
    (Content-Length bytes) and ``raw`` (all of it, to forward as it was)."""

    head: bytes
    body: bytes
    raw: bytes

    @property
    def request_line(self) -> str:
        """``'POST /v3/kv/range HTTP/1.1'``"""
        return self.head.split(b'\r\n', 1)[0].decode('ascii')

    @property
    def path(self) -> bytes:
        return self.head.split(b' ')[1]


def split_http_requests(buffer: bytes) -> tuple[list[HttpRequest], bytes]:
    """The complete requests at the front of ``buffer`` (in order), and what is left after them."""
    requests = []
    while True:
        head_end = buffer.find(b'\r\n\r\n')
        if head_end < 0:
            break
        head = buffer[:head_end]
        length = 0
        for line in head.split(b'\r\n')[1:]:
            name, _, value = line.partition(b':')
            if name.strip().lower() == b'content-length':
                length = int(value)
        end = head_end + 4 + length
        if len(buffer) < end:
            break
        raw, buffer = buffer[:end], buffer[end:]
        requests.append(HttpRequest(head, raw[head_end + 4:], raw))
    return requests, buffer


async def within(reactor, d, timeout, what):
    """The result of Deferred ``d`` (raised if it failed), or AssertionError after ``timeout`` s.

    ``d`` itself is neither cancelled nor changed (cancelling a watch's ``done`` would end the
    watch), except that a failure it ends with is taken over here, not left unhandled.
    """
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    result = Deferred()

    def expired():
        if not result.called:
            result.errback(AssertionError(f'waited {timeout} s for {what}'))
    timer = reactor.callLater(timeout, expired)

    def settled(value):
        if timer.active():
            timer.cancel()
        if not result.called:
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value)
        return None if isinstance(value, Failure) else value
    d.addBoth(settled)
    return await result


def sleep(reactor, seconds: float):
    """A Deferred that fires after ``seconds`` (the reactor keeps running meanwhile)."""
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)


async def until(reactor, condition, timeout: float = 5.0, what='condition', interval: float = 0.02):
    """Poll ``condition()`` - a bool, or a Deferred or coroutine of one - every ``interval`` s until it
    holds; AssertionError after ``timeout`` s. ``what`` (text, or a function giving it) names what was
    awaited."""
    import time

    from twisted.internet.defer import maybeDeferred

    deadline = time.monotonic() + timeout
    while not await maybeDeferred(condition):
        if time.monotonic() >= deadline:
            raise AssertionError(f'waited {timeout} s for {what() if callable(what) else what}')
        await sleep(reactor, interval)


# -- what a client sends, on either transport

class Request(NamedTuple):
    """One request as a proxy or fake server sees it, whichever transport sent it: ``rpc``
    (``'KV/Range'``), ``body`` (the request as etcd's JSON gateway spells it: a gRPC request's protobuf
    message is turned into that JSON), ``raw`` (the bytes that completed it, to forward) and
    ``stream_id`` (its HTTP/2 stream; 0 over HTTP/1.1). On a gRPC Watch stream, every create or cancel
    message is a request of its own."""

    rpc: str
    body: bytes
    raw: bytes
    stream_id: int = 0


_H2_PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'


def _gateway_rpcs():
    from txaioetcd.transport._json import PATHS
    return {path: rpc for rpc, path in PATHS.items()}


class RequestReader:
    """Splits the bytes a client sends into requests: HTTP/1.1 to the gateway, or HTTP/2 (gRPC with
    prior knowledge). ``feed(data)`` gives ``(raw, request or None)`` pieces in order, together
    exactly the bytes consumed (what is not a request - the HTTP/2 preface, SETTINGS, PINGs, window
    updates, a HEADERS frame whose message is still to come - comes as ``(raw, None)``), so that a
    proxy can forward everything and act on a request. ``resets`` lists the stream ids the client
    reset (RST_STREAM), ``http2`` tells which protocol it is (None until the first bytes)."""

    def __init__(self):
        self.http2 = None
        self.resets = []
        self._buffer = b''
        self._streams = {}              # stream id -> [rpc, gRPC bytes so far]
        self._decoder = None

    def feed(self, data: bytes) -> list:
        self._buffer += data
        if self.http2 is None:
            if len(self._buffer) < len(_H2_PREFACE) and _H2_PREFACE.startswith(self._buffer):
                return []
            self.http2 = self._buffer.startswith(_H2_PREFACE)
            if self.http2:
                from hpack import Decoder
                self._decoder = Decoder()
                preface, self._buffer = self._buffer[:len(_H2_PREFACE)], self._buffer[len(_H2_PREFACE):]
                return [(preface, None)] + self._frames()
        return self._frames() if self.http2 else self._http1()

    def _http1(self) -> list:
        requests, self._buffer = split_http_requests(self._buffer)
        rpcs = _gateway_rpcs()
        pieces = []
        for request in requests:
            route = request.path.decode('ascii').split('/', 2)[-1]      # below /v3/ (or /v3beta/ ...)
            pieces.append((request.raw, Request(rpcs.get(route, route), request.body, request.raw)))
        return pieces

    def _frames(self) -> list:
        pieces = []
        buffer = self._buffer
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], 'big')
            if len(buffer) < 9 + length:
                break
            kind, flags, stream_id = buffer[3], buffer[4], int.from_bytes(buffer[5:9], 'big') & 0x7FFFFFFF
            raw, payload, buffer = buffer[:9 + length], buffer[9:9 + length], buffer[9 + length:]
            pieces.extend(self._frame(kind, flags, stream_id, payload, raw))
        self._buffer = buffer
        return pieces

    def _frame(self, kind, flags, stream_id, payload, raw) -> list:
        if kind == 1:                                   # HEADERS (the client sends END_HEADERS)
            fields = dict(self._decoder.decode(payload, raw=True))
            self._streams[stream_id] = [fields[b':path'].decode('ascii').split('.', 1)[1], b'']
            return [(raw, None)]
        if kind == 3:                                   # RST_STREAM
            self.resets.append(stream_id)
            self._streams.pop(stream_id, None)
            return [(raw, None)]
        if kind != 0 or stream_id not in self._streams:     # not DATA of a stream we know
            return [(raw, None)]
        stream = self._streams[stream_id]
        stream[1] += payload
        messages = []
        while len(stream[1]) >= 5 and len(stream[1]) >= 5 + int.from_bytes(stream[1][1:5], 'big'):
            end = 5 + int.from_bytes(stream[1][1:5], 'big')
            messages.append(stream[1][5:end])
            stream[1] = stream[1][end:]
        if flags & 0x1:
            del self._streams[stream_id]
        if not messages:
            return [(raw, None)]
        pieces = [(b'', Request(stream[0], _as_gateway_json(stream[0], message), b'', stream_id))
                  for message in messages]
        # The frame's bytes go with its last message: forwarding them completes the lot.
        pieces[-1] = (raw, pieces[-1][1]._replace(raw=raw))
        return pieces


def _as_gateway_json(rpc: str, message: bytes) -> bytes:
    from google.protobuf import json_format

    from txaioetcd.transport import _pb
    from txaioetcd.transport._proto import message as message_class
    name = 'WatchRequest' if rpc == 'Watch/Watch' else _pb._MESSAGES[rpc][0]
    parsed = message_class(name).FromString(message)
    return json_format.MessageToJson(parsed, preserving_proto_field_name=True, indent=None).encode('utf-8')


class ResponseReader:
    """Follows what a server sends back: ``feed(data)`` gives the ids of the streams whose answer
    ended in ``data`` (HTTP/2: END_STREAM on the stream), or ``[0]`` for any data over HTTP/1.1 (one
    request at a time on a connection: whatever comes next is its answer)."""

    def __init__(self, http2: bool):
        self.http2 = http2
        self._buffer = b''

    def feed(self, data: bytes) -> list:
        if not self.http2:
            return [0] if data else []
        self._buffer += data
        ended = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], 'big')
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            stream_id = int.from_bytes(self._buffer[5:9], 'big') & 0x7FFFFFFF
            if kind in (0, 1) and flags & 0x1:
                ended.append(stream_id)
            elif kind == 3:
                ended.append(stream_id)
            self._buffer = self._buffer[9 + length:]
        return ended
