"""TCP proxies for the peer traffic of an ``EtcdCluster``: the links between members, under control.

Each member advertises its proxy's address to the others, so every peer connection to member ``d``
arrives at proxy ``d``, which forwards it to ``d``'s real peer port. A proxy must know which member a
connection comes from - etcd's raft transport carries messages both ways over connections dialled by
either side - so it asks the kernel: the dialling socket is the row of ``/proc/net/tcp`` (or
``tcp6``) whose local and remote addresses are the connection's two ends (both: Linux shares an
ephemeral port among connections to different places, and closed connections linger there in
TIME_WAIT, with no inode), and its inode is among the open files of one member's process. Linux
only, like the etcd the harness runs.

Per ordered pair of members (source, destination) a link passes, is cut (its connections are closed
at once and new ones right after they are accepted) or is delayed (bytes both ways are held that
long). A connection whose source is no member passes, unless its destination is cut off from every
other member.

One thread serves every proxy of a cluster with a ``selectors`` loop; the cluster's methods, called
from the test's thread, change the rules under a lock, wake the loop and wait until it applied them
(the connections of a link cut are reset when ``partition`` returns).
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque

__all__ = ('PeerProxies', 'socket_owner')

_CHUNK = 65536
_HIGH_WATER = 4 * 1024 * 1024     # unsent bytes one way before its source is read no more
_APPLY_TIMEOUT = 5.0              # how long a rule change waits for the loop to carry it out


def _proc_address(host: str, port: int) -> str:
    """An address as /proc/net/tcp{,6} shows it: the raw address bytes, each 32-bit word printed as
    a number in host order, in hex; then the port."""
    packed = socket.inet_pton(socket.AF_INET6 if ':' in host else socket.AF_INET, host)
    if sys.byteorder == 'little':
        packed = b''.join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
    return f'{packed.hex().upper()}:{port:04X}'


def _socket_inode(local: tuple, remote: tuple) -> str | None:
    """The inode of the open socket whose ends are ``local`` and ``remote`` (host, port), if any."""
    table = 'tcp6' if ':' in local[0] else 'tcp'
    wanted = (_proc_address(*local[:2]), _proc_address(*remote[:2]))
    try:
        with open(f'/proc/net/{table}') as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if (fields[1], fields[2]) == wanted and fields[9] != '0':    # 0: no socket holds it
                    return fields[9]
    except OSError:
        return None
    return None


def socket_owner(local: tuple, remote: tuple, pids: dict) -> object | None:
    """Which of ``pids`` (name -> PID or None) holds the socket of the connection from ``local`` to
    ``remote`` (host, port each, as the dialler sees them) → the name, or None (another process, or
    the socket is gone already)."""
    inode = _socket_inode(local, remote)
    if inode is None:
        return None
    target = f'socket:[{inode}]'
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            descriptors = os.listdir(f'/proc/{pid}/fd')
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f'/proc/{pid}/fd/{descriptor}') == target:
                    return name
            except OSError:
                continue
    return None


class _Pipe:
    """One proxied connection: the member that dialled (``source``) and the one dialled (``target``)."""

    def __init__(self, downstream, upstream, source, target):
        self.sides = (downstream, upstream)
        self.source = source
        self.target = target
        # Bytes read from one side, waiting to go out of the other: (release time, bytes).
        self.queued = {downstream: deque(), upstream: deque()}
        self.queued_bytes = {downstream: 0, upstream: 0}
        self.interest = {downstream: 0, upstream: 0}     # the selector events registered per side
        self.closed = False

    def other(self, side):
        return self.sides[1] if side is self.sides[0] else self.sides[0]


class PeerProxies:
    """Proxies on ``host`` for members whose real peer ports are ``targets`` (index -> port).
    ``pids()`` tells the members' current PIDs (index -> PID or None). ``ports`` are the proxies'."""

    def __init__(self, host: str, targets: dict, pids):
        self._host = host
        self._targets = dict(targets)
        self._pids = pids
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)
        self._version = self._applied_version = 0      # of the rules: set, carried out by the loop
        self._cut: set[tuple[int, int]] = set()
        self._alone: set[int] = set()                  # members cut off from every other one
        self._delay: dict[tuple[int, int], float] = {}
        self._drop_all = False
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, ('wake', None))
        self._pipes: set[_Pipe] = set()
        self.unidentified = 0           # connections whose source was no member
        self.ports = {}
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        for index in self._targets:
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, 0))
            listener.listen(64)
            listener.setblocking(False)
            self.ports[index] = listener.getsockname()[1]
            self._selector.register(listener, selectors.EVENT_READ, ('listen', index))
        self._running = True
        self._thread = threading.Thread(target=self._serve, name='txaioetcd-peer-proxies', daemon=True)
        self._thread.start()

    # -- control (any thread)

    def set_rules(self, cut=(), delay=None) -> None:
        """Cut the ordered pairs in ``cut``; delay the pairs in ``delay`` (pair -> seconds). Replaces
        every earlier rule; returns once the connections of the pairs cut are reset."""
        cut = set(cut)
        members = list(self._targets)
        alone = {d for d in members if len(members) > 1 and all((s, d) in cut for s in members if s != d)}
        self._change(_cut=cut, _alone=alone, _delay=dict(delay or {}))

    def drop_connections(self) -> None:
        """Reset every proxied connection once; returns when that is done."""
        self._change(_drop_all=True)

    def _change(self, **rules) -> None:
        with self._lock:
            for name, value in rules.items():
                setattr(self, name, value)
            self._version += 1
            wanted = self._version
        self._wake()
        with self._applied:
            applied = self._applied.wait_for(
                lambda: self._applied_version >= wanted or not self._thread.is_alive(), _APPLY_TIMEOUT)
        if not applied:
            raise RuntimeError(f'the peer proxies did not apply new rules within {_APPLY_TIMEOUT} s')

    def close(self, timeout: float = 5.0) -> None:
        self._running = False
        self._wake()
        self._thread.join(timeout)

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b'x')
        except OSError:
            pass

    # -- the loop (its own thread)

    def _serve(self) -> None:
        try:
            while self._running:
                for key, mask in self._selector.select(self._next_timeout()):
                    kind, data = key.data
                    if kind == 'wake':
                        self._drain_wakeups()
                    elif kind == 'listen':
                        self._accept(key.fileobj, data)
                    elif mask & selectors.EVENT_READ:
                        self._read(key.fileobj, data)
                    if kind == 'pipe' and mask & selectors.EVENT_WRITE and not data.closed:
                        self._flush(data)
                self._apply_rules()
                for pipe in list(self._pipes):
                    self._flush(pipe)
        finally:
            for pipe in list(self._pipes):
                self._close(pipe)
            for key in list(self._selector.get_map().values()):
                key.fileobj.close()
            self._selector.close()
            self._wake_writer.close()
            with self._applied:
                self._applied.notify_all()

    def _next_timeout(self) -> float:
        soonest = None
        now = time.monotonic()
        for pipe in self._pipes:
            for queue in pipe.queued.values():
                if queue and (soonest is None or queue[0][0] < soonest):
                    soonest = queue[0][0]
        return 0.5 if soonest is None else max(0.0, min(0.5, soonest - now))

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _accept(self, listener, target) -> None:
        try:
            downstream, address = listener.accept()
        except OSError:
            return
        source = socket_owner(address, listener.getsockname(), self._pids())
        if source is None:
            self.unidentified += 1
        with self._lock:
            cut = (source, target) in self._cut or (source is None and target in self._alone)
        if cut:
            downstream.close()
            return
        try:
            upstream = socket.create_connection((self._host, self._targets[target]), timeout=1.0)
        except OSError:
            downstream.close()      # the member is down: the dialler sees a refused connection
            return
        for side in (downstream, upstream):
            side.setblocking(False)
            side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(downstream, upstream, source, target)
        self._pipes.add(pipe)
        self._update_interest(pipe)

    def _read(self, side, pipe: _Pipe) -> None:
        if pipe.closed:
            return
        try:
            data = side.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if not data:
            self._close(pipe)
            return
        with self._lock:
            delay = self._delay.get((pipe.source, pipe.target), 0.0)
        out = pipe.other(side)
        pipe.queued[out].append((time.monotonic() + delay, data))
        pipe.queued_bytes[out] += len(data)
        self._update_interest(pipe)

    def _flush(self, pipe: _Pipe) -> None:
        if pipe.closed:
            return
        now = time.monotonic()
        for out, queue in pipe.queued.items():
            while queue and queue[0][0] <= now:
                release, data = queue[0]
                try:
                    sent = out.send(data)
                except BlockingIOError:
                    break
                except OSError:
                    self._close(pipe)
                    return
                pipe.queued_bytes[out] -= sent
                if sent < len(data):
                    queue[0] = (release, data[sent:])
                    break
                queue.popleft()
        self._update_interest(pipe)

    def _update_interest(self, pipe: _Pipe) -> None:
        """Read a side while the bytes it sent are not piling up; write it while bytes due wait."""
        now = time.monotonic()
        for side in pipe.sides:
            wanted = selectors.EVENT_READ if pipe.queued_bytes[pipe.other(side)] < _HIGH_WATER else 0
            queue = pipe.queued[side]
            if queue and queue[0][0] <= now:
                wanted |= selectors.EVENT_WRITE
            current = pipe.interest.get(side, 0)
            if wanted == current:
                continue
            if not current:
                self._selector.register(side, wanted, ('pipe', pipe))
            elif not wanted:
                self._selector.unregister(side)
            else:
                self._selector.modify(side, wanted, ('pipe', pipe))
            pipe.interest[side] = wanted

    def _apply_rules(self) -> None:
        with self._lock:
            cut, alone, drop, version = set(self._cut), set(self._alone), self._drop_all, self._version
            self._drop_all = False
        for pipe in list(self._pipes):
            if drop or (pipe.source, pipe.target) in cut or (pipe.source is None and pipe.target in alone):
                self._close(pipe)
        with self._applied:
            self._applied_version = version
            self._applied.notify_all()

    def _close(self, pipe: _Pipe) -> None:
        if pipe.closed:
            return
        pipe.closed = True
        self._pipes.discard(pipe)
        for side in pipe.sides:
            if pipe.interest[side]:
                self._selector.unregister(side)
            try:
                # RST rather than FIN: a cut link fails at once, as a dropped route would in the end.
                side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            except OSError:
                pass
            side.close()
