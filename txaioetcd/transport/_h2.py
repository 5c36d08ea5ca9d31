"""HTTP/2 for a client (RFC 9113), as lean as gRPC to etcd needs it: many streams on one connection.

What the frames need and nothing more: the preface and SETTINGS, HEADERS + CONTINUATION, DATA with
flow control both ways (large windows, so a 16 MiB range does not stall every 64 KiB), PING (etcd
pings on every call for its bandwidth estimator: each is answered), RST_STREAM, GOAWAY and
WINDOW_UPDATE. PRIORITY and PUSH_PROMISE are read and ignored (push is switched off).

Request headers are encoded without touching HPACK's dynamic table (static-table indices and
literals "without indexing"), so a request's header block can be built once per path and reused;
response headers are decoded with the ``hpack`` package, because etcd's encoder does use the table.

A ``Stream`` handler receives ``headers(list, end)``, ``data(bytes, end)``, ``reset(code)`` and
``lost(error)``; the connection's owner hears ``goaway(connection, last_stream_id, code, debug)``
and ``closed(connection, error)``. Any frame the protocol does not allow fails the whole connection with
ProtocolError.
"""

from __future__ import annotations

import struct

from hpack import Decoder
from hpack.exceptions import HPACKError
from twisted.internet.protocol import Protocol

from ..errors import ConnectionLost, ProtocolError

__all__ = ('H2Connection', 'Stream', 'header_block', 'literal', 'RST_CANCEL', 'RST_REFUSED_STREAM')

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 4, 5, 6

RST_NO_ERROR, RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 0x0, 0x1, 0x7, 0x8

# Our receive windows: a stream may have 16 MiB in flight, the connection 64 MiB.
STREAM_WINDOW = 16 * 1024 * 1024
CONNECTION_WINDOW = 64 * 1024 * 1024
DEFAULT_WINDOW = 65535
MAX_WINDOW = 2 ** 31 - 1
MAX_FRAME = 16384               # the largest frame we take (we announce no SETTINGS_MAX_FRAME_SIZE)
MAX_HEADER_LIST = 1024 * 1024   # what we announce as SETTINGS_MAX_HEADER_LIST_SIZE

_HEAD = struct.Struct('>I B I')         # length (24 bits, in the first 4 bytes with the type), flags, id
_SETTING = struct.Struct('>HI')
_U32 = struct.Struct('>I')
_GOAWAY = struct.Struct('>II')


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b'') -> bytes:
    return _HEAD.pack((len(payload) << 8) | kind, flags, stream_id) + payload


# -- HPACK, the encoding half: no dynamic table, so a block can be cached

def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data      # not Huffman-coded


# Static-table indices (RFC 7541, appendix A) of the names we send.
_STATIC_NAMES = {b':authority': 1, b':method': 2, b':path': 4, b':scheme': 6, b'content-type': 31,
                 b'user-agent': 58}
_STATIC_FIELDS = {(b':method', b'POST'): 3, (b':scheme', b'http'): 6, (b':scheme', b'https'): 7}


def literal(name: bytes, value: bytes) -> bytes:
    """One header field "literal without indexing" (or a static-table index when name and value are
    in it): the decoder's table is never touched."""
    index = _STATIC_FIELDS.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)
    index = _STATIC_NAMES.get(name)
    if index is not None:
        return _integer(index, 4, 0x00) + _string(value)
    return b'\x00' + _string(name) + _string(value)


def header_block(fields) -> bytes:
    """A header block of ``(name, value)`` pairs (bytes), reusable as it is."""
    return b''.join(literal(name, value) for name, value in fields)


class Stream:
    """What a stream tells its handler (the gRPC call or stream on it). Override what is needed."""

    __slots__ = ()
    stream_id = 0

    def headers(self, fields: list, end_stream: bool) -> None:
        pass

    def data(self, data: bytes, end_stream: bool) -> None:
        pass

    def reset(self, code: int) -> None:
        """The peer reset the stream (RST_STREAM with ``code``)."""

    def lost(self, error: Exception) -> None:
        """The connection ended before the stream did."""


class _Sending:
    """Data of one stream waiting for flow-control window."""

    __slots__ = ('window', 'queue', 'end')

    def __init__(self, window: int):
        self.window = window
        self.queue = []             # [bytearray, end_stream] pieces
        self.end = False


class H2Connection(Protocol):
    """One HTTP/2 connection of a client. ``owner`` hears ``goaway(...)`` and ``closed(...)``;
    ``open(handler, block, end_stream)`` starts a stream."""

    def __init__(self, owner, reactor):
        self.owner = owner
        self._reactor = reactor
        self._buffer = bytearray()
        self._decoder = Decoder()
        self._decoder.max_allowed_table_size = 65536
        self._decoder.max_header_list_size = MAX_HEADER_LIST
        self._decoded = {}                          # header block -> its fields, while the table holds
        self._streams: dict[int, Stream] = {}
        self._sending: dict[int, _Sending] = {}
        self._next_id = 1
        self._peer_window = DEFAULT_WINDOW          # our connection send window
        self._peer_initial = DEFAULT_WINDOW         # each new stream's send window
        self._peer_frame = 16384                    # the largest frame the peer takes
        self.max_streams = 2 ** 31                  # the peer's SETTINGS_MAX_CONCURRENT_STREAMS
        self._unacked_connection = 0                # bytes received, not yet given back
        self._unacked: dict[int, int] = {}
        self._continuing = None                     # (stream id, flags, block so far) of HEADERS
        self.goaway_id = None                       # last stream id of a GOAWAY received
        self.last_received = 0.0                    # reactor time of the last frame
        self.reads = 0                              # how many times bytes came in
        self.pings_unanswered = 0
        self.pinged_at = 0.0                        # reactor time of our last PING
        self.closed = False
        self._error = None
        self._checked = False                       # the TLS handshake's protocol (ALPN), once

    # -- life cycle

    def connectionMade(self) -> None:
        # No Nagle: a small request written while our ACK of the server's PING is unacknowledged
        # would otherwise wait for the server's delayed ACK (milliseconds per sequential call).
        no_delay = getattr(self.transport, 'setTcpNoDelay', None)
        if no_delay is not None:
            try:
                no_delay(True)
            except OSError:
                pass                # not a TCP socket (a unix socket)
        settings = b''.join(_SETTING.pack(key, value) for key, value in (
            (SETTINGS_ENABLE_PUSH, 0), (SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST)))
        self.transport.write(PREFACE + _frame(SETTINGS, 0, 0, settings) +
                             _frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW)))
        self.last_received = self._reactor.seconds()

    def shut(self, error: Exception) -> None:
        """End the connection because of ``error`` (given to every stream on it)."""
        if self._error is None:
            self._error = error
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        self.closed = True
        error = self._error or ConnectionLost(f'connection to {getattr(self.owner, "url", "the server")} lost '
                                              f'({reason.getErrorMessage()})')
        streams, self._streams = self._streams, {}
        self._sending.clear()
        for handler in streams.values():
            handler.lost(error)
        self.owner.closed(self, error)

    # -- streams

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def usable(self) -> bool:
        """Whether a new stream may start here (no GOAWAY, ids left, under the peer's limit)."""
        return (not self.closed and self.goaway_id is None and self._next_id < 2 ** 31 - 2 and
                len(self._streams) < self.max_streams)

    def open(self, handler: Stream, block: bytes, end_stream: bool = False) -> int:
        """Start a stream with header block ``block``; the handler hears what comes back."""
        stream_id = self._start(handler)
        self.transport.write(self._headers_frames(stream_id, block, END_STREAM if end_stream else 0))
        return stream_id

    def request(self, handler: Stream, block: bytes, data: bytes) -> int:
        """Start a stream that sends ``data`` and ends: a unary call, in one write when it fits."""
        stream_id = self._start(handler)
        headers = self._headers_frames(stream_id, block, 0)
        sending = self._sending[stream_id]
        if len(data) <= min(sending.window, self._peer_window, self._peer_frame):
            sending.end = True
            sending.window -= len(data)
            self._peer_window -= len(data)
            self.transport.write(headers + _frame(DATA, END_STREAM, stream_id, data))
        else:
            self.transport.write(headers)
            self.send(stream_id, data, end_stream=True)
        return stream_id

    def _start(self, handler: Stream) -> int:
        stream_id = self._next_id
        self._next_id += 2
        handler.stream_id = stream_id
        self._streams[stream_id] = handler
        self._sending[stream_id] = _Sending(self._peer_initial)
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send ``data`` on a stream, as flow control allows (the rest waits for window updates)."""
        sending = self._sending.get(stream_id)
        if sending is None or sending.end:
            return
        sending.end = end_stream
        if not sending.queue and len(data) <= min(sending.window, self._peer_window, self._peer_frame):
            # The common case, a small message with window to spare: one frame, no copies.
            sending.window -= len(data)
            self._peer_window -= len(data)
            self.transport.write(_frame(DATA, END_STREAM if end_stream else 0, stream_id, data))
            return
        sending.queue.append([bytearray(data), end_stream])
        self._flush(stream_id, sending)

    def reset(self, stream_id: int, code: int = RST_CANCEL) -> None:
        """Abandon a stream (RST_STREAM); its handler hears nothing more."""
        if self._streams.pop(stream_id, None) is not None and not self.closed:
            self._sending.pop(stream_id, None)
            self._unacked.pop(stream_id, None)
            self.transport.write(_frame(RST_STREAM, 0, stream_id, _U32.pack(code)))

    def refuse_above(self, last_stream_id: int) -> None:
        """After a GOAWAY: the streams above ``last_stream_id`` were not processed; their handlers
        hear a reset with REFUSED_STREAM (safe to send again elsewhere)."""
        for stream_id, handler in list(self._streams.items()):
            if stream_id > last_stream_id:
                self._finished(stream_id)
                handler.reset(RST_REFUSED_STREAM)

    def ping(self) -> None:
        self.pings_unanswered += 1
        self.pinged_at = self._reactor.seconds()
        self.transport.write(_frame(PING, 0, 0, b'txaioetc'))

    def _headers_frames(self, stream_id: int, block: bytes, flags: int) -> bytes:
        size = self._peer_frame
        if len(block) <= size:
            return _frame(HEADERS, flags | END_HEADERS, stream_id, block)
        pieces = [block[i:i + size] for i in range(0, len(block), size)]
        frames = [_frame(HEADERS, flags, stream_id, pieces[0])]
        frames += [_frame(CONTINUATION, END_HEADERS if i == len(pieces) - 1 else 0, stream_id, piece)
                   for i, piece in enumerate(pieces[1:], 1)]
        return b''.join(frames)

    def _flush(self, stream_id: int, sending: _Sending) -> None:
        frames = []
        while sending.queue:
            piece, end = sending.queue[0]
            room = min(sending.window, self._peer_window, self._peer_frame)
            if room <= 0 and piece:
                break
            chunk = bytes(piece[:room])
            del piece[:room]
            last = not piece
            if last:
                sending.queue.pop(0)
            sending.window -= len(chunk)
            self._peer_window -= len(chunk)
            frames.append(_frame(DATA, END_STREAM if last and end else 0, stream_id, chunk))
        if frames:
            self.transport.write(b''.join(frames))

    def _flush_all(self) -> None:
        for stream_id, sending in list(self._sending.items()):
            if sending.queue:
                self._flush(stream_id, sending)

    def _finished(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        self._unacked.pop(stream_id, None)

    # -- reading

    def dataReceived(self, data: bytes) -> None:
        if not self._checked:
            self._checked = True
            negotiated = getattr(self.transport, 'negotiatedProtocol', b'h2')
            if negotiated != b'h2':
                from ..errors import TLSError
                self.shut(TLSError(f'the server did not agree to HTTP/2 in the TLS handshake (ALPN '
                                   f'gave {negotiated!r}); gRPC needs it'))
                return
        buffer = self._buffer
        buffer += data
        self.reads += 1
        self.last_received = self._reactor.seconds()
        self.pings_unanswered = 0
        position, size = 0, len(buffer)
        try:
            while size - position >= 9:
                word, flags, stream_id = _HEAD.unpack_from(buffer, position)
                length, kind = word >> 8, word & 0xFF
                if length > MAX_FRAME:
                    raise ProtocolError(f'HTTP/2: a frame of {length} bytes, above the {MAX_FRAME} we take')
                end = position + 9 + length
                if end > size:
                    break
                payload = bytes(buffer[position + 9:end])
                position = end
                self._frame_received(kind, flags, stream_id & 0x7FFFFFFF, payload)
                if self.closed or self._error is not None:
                    return
        except ProtocolError as error:
            self.shut(error)
            return
        del buffer[:position]

    def _frame_received(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is not None and kind != CONTINUATION:
            raise ProtocolError(f'HTTP/2: a frame of type {kind} came in the middle of a header block')
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == PING:
            if len(payload) != 8 or stream_id:
                raise ProtocolError('HTTP/2: a PING frame must carry 8 bytes on stream 0')
            if not flags & ACK:
                self.transport.write(_frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            if len(payload) != 4 or not stream_id:
                raise ProtocolError('HTTP/2: a malformed RST_STREAM frame')
            handler = self._streams.get(stream_id)
            self._finished(stream_id)
            if handler is not None:
                handler.reset(_U32.unpack(payload)[0])
        elif kind == GOAWAY:
            if len(payload) < 8:
                raise ProtocolError('HTTP/2: a GOAWAY frame shorter than 8 bytes')
            last, code = _GOAWAY.unpack_from(payload)
            self.goaway_id = last & 0x7FFFFFFF
            self.owner.goaway(self, self.goaway_id, code, payload[8:])
        elif kind == PUSH_PROMISE:
            raise ProtocolError('HTTP/2: PUSH_PROMISE, though push was switched off')
        # PRIORITY and unknown frame types are ignored, as the protocol requires.

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError('HTTP/2: a DATA frame on stream 0')
        received = len(payload)
        if flags & PADDED:
            payload = _unpad(payload)
        self._unacked_connection += received
        if self._unacked_connection >= CONNECTION_WINDOW // 2:
            self.transport.write(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._unacked_connection)))
            self._unacked_connection = 0
        handler = self._streams.get(stream_id)
        if handler is None:
            return                  # a stream we reset: its data counts for the connection only
        end = bool(flags & END_STREAM)
        if not end:
            unacked = self._unacked.get(stream_id, 0) + received
            if unacked >= STREAM_WINDOW // 2:
                self.transport.write(_frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(unacked)))
                unacked = 0
            self._unacked[stream_id] = unacked
        else:
            self._finished(stream_id)
        handler.data(payload, end)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError('HTTP/2: a HEADERS frame on stream 0')
        if flags & PADDED:
            payload = _unpad(payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._header_block(stream_id, flags, payload)
        else:
            self._continuing = (stream_id, flags, bytearray(payload))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != stream_id:
            raise ProtocolError('HTTP/2: a CONTINUATION frame that continues no header block')
        _, first_flags, block = self._continuing
        block += payload
        if len(block) > MAX_HEADER_LIST:
            raise ProtocolError('HTTP/2: a header block of more than 1 MiB')
        if flags & END_HEADERS:
            self._continuing = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        fields = self._decoded.get(block)
        if fields is None:
            fields = self._decode(block)
        handler = self._streams.get(stream_id)
        if handler is None:
            return
        end = bool(flags & END_STREAM)
        if end:
            self._finished(stream_id)
        handler.headers(fields, end)

    def _decode(self, block: bytes) -> list:
        """Decode a header block (every block goes through here, a stream's or not: it keeps the
        table in step). After the first few calls etcd sends the same few blocks, made only of
        references to entries already in the dynamic table: as long as the table stays as it was,
        the same bytes mean the same fields, so such blocks are remembered and not decoded again."""
        table = self._decoder.header_table
        before = _table_state(table)
        try:
            fields = self._decoder.decode(block, raw=True)
        except (HPACKError, ValueError, IndexError) as error:
            raise ProtocolError(f'HTTP/2: a header block that does not decode: {error}') from None
        if _table_state(table) != before:
            self._decoded.clear()           # the table changed: what was remembered may mean else now
        elif len(self._decoded) < 64:
            self._decoded[block] = fields
        return fields

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id or len(payload) % 6:
            raise ProtocolError('HTTP/2: a malformed SETTINGS frame')
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError('HTTP/2: SETTINGS_INITIAL_WINDOW_SIZE above 2**31 - 1')
                change, self._peer_initial = value - self._peer_initial, value
                for sending in self._sending.values():
                    sending.window += change
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise ProtocolError(f'HTTP/2: SETTINGS_MAX_FRAME_SIZE {value} out of range')
                self._peer_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
        self.transport.write(_frame(SETTINGS, ACK, 0))
        self._flush_all()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError('HTTP/2: a WINDOW_UPDATE frame not of 4 bytes')
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            self._peer_window += increment
            if self._peer_window > MAX_WINDOW:
                raise ProtocolError('HTTP/2: a connection window above 2**31 - 1')
            self._flush_all()
            return
        sending = self._sending.get(stream_id)
        if sending is not None:
            sending.window += increment
            if sending.queue:
                self._flush(stream_id, sending)


def _table_state(table) -> tuple:
    # An insertion puts a new tuple at the front; eviction shortens; a size update changes maxsize.
    entries = table.dynamic_entries
    return len(entries), id(entries[0]) if entries else 0, table.maxsize


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ProtocolError('HTTP/2: a padded frame without its pad length')
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError('HTTP/2: more padding than frame')
    return payload[1:len(payload) - pad]
