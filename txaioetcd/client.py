"""The Client: one object per etcd cluster, composed of the service mixins (kv, maintenance, ...).

Every asynchronous call returns a Deferred: it runs whether awaited or not, can be cancelled, is
awaited inside coroutines run with ``Deferred.fromCoroutine`` / ``ensureDeferred`` and yielded under
``inlineCallbacks``. Iterators (``watch_events``) are ``async for``, scopes ``async with``.
"""

from __future__ import annotations

import os

from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from ._defer import Deferred, Scoped, fail, succeed
from .auth import Auth
from .errors import ClientClosed, ConnectionFailed, ConnectionLost, Timeout, Unauthenticated
from .kv import KV
from .lease import LeaseService
from .maintenance import Maintenance
from .watch import Watch
from .ops import Op
from .retry import CONNECT_RETRY, Deadline
from .rpc import MaintenanceStatus
from .transport import ITransport, make_transport

__all__ = ('Client',)

# Which transport a Client uses unless told (transport=, or $TXAIOETCD_TRANSPORT).
DEFAULT_TRANSPORT = 'grpc'


class Client(KV, Maintenance, Watch, LeaseService, Auth):
    """An etcd v3 client.

    ``Client(reactor, url='http://127.0.0.1:2379')`` or ``Client(reactor, endpoints=[url, ...])``;
    ``timeout`` is the default deadline in seconds of every call (each call takes ``timeout=`` too);
    ``pool_size`` bounds the gateway's connections per endpoint (requests beyond it queue; gRPC has
    one connection per member and needs no pool); ``username`` and
    ``password`` log in to an etcd with authentication on (renewing the token when etcd rejects it);
    ``lazy=True`` lets requests wait (within their timeout) for an endpoint to come up instead of
    failing at once with ConnectionFailed; ``auto_sync=True`` asks the cluster for its members at
    once and every ``sync_interval`` seconds and adds the client URLs it was not given (of the same
    scheme); ``transport`` is 'grpc' (etcd's native gRPC over HTTP/2, one connection per member),
    'gateway' (etcd's JSON gateway over HTTP/1.1, for deployments that only expose that) or an
    ITransport; by default ``$TXAIOETCD_TRANSPORT``, else gRPC.
    ``tls`` (a TLSConfig: ``ca_file``, ``cert_file``, ``key_file``, ``server_hostname``) configures the
    ``https://`` and ``unixs://`` endpoints: the CA to trust (default: the platform's), the client
    certificate for servers with ``--client-cert-auth``, the host name to verify (needs the ``tls``
    extra: ``pip install 'txaioetcd[tls]'``). See docs/connections.md.

    ``Client.connect(...)`` (same arguments) returns a Deferred that fires with the client once an
    endpoint answered. ``client.state`` is 'connecting', 'connected', 'disconnected' or 'closed'.
    """

    def __init__(self, reactor, url: str | None = None, *, endpoints=None, timeout: float = 10.0,
                 pool_size: int = 32, connect_timeout: float = 5.0, username: str | None = None,
                 password: str | None = None, lazy: bool = False, auto_sync: bool = False,
                 sync_interval: float = 30.0, transport=None, tls=None):
        if transport is None or isinstance(transport, str):
            if url is not None and endpoints is not None:
                raise ValueError('Client: give url or endpoints, not both')
            if url is None and not endpoints:
                raise ValueError('Client: give url=\'http://host:2379\' or endpoints=[...]')
            kind = transport or os.environ.get('TXAIOETCD_TRANSPORT') or DEFAULT_TRANSPORT
            transport = make_transport(kind, reactor, [url] if url is not None else list(endpoints),
                                       pool_size=pool_size, connect_timeout=connect_timeout, tls=tls)
        verifyObject(ITransport, transport)
        if lazy:
            transport.lazy = True
        if not (timeout and timeout > 0):
            raise ValueError(f'Client: timeout must be a positive number of seconds, not {timeout!r}')
        self._reactor = reactor
        self._transport = transport
        self.timeout = timeout
        self._closed = False
        if (username is None) != (password is None):
            raise ValueError('Client: give both username and password, or neither')
        self._credentials = (username, password) if username is not None else None
        self._token = ''
        self._login_waiters = None
        self._sync_interval = sync_interval
        self._sync_timer = reactor.callLater(0, self._sync) if auto_sync else None

    def __repr__(self):
        return f'Client(endpoints={self.endpoints!r})'

    @classmethod
    def connect(cls, reactor, url: str | None = None, *, timeout: float = 10.0, **options) -> Deferred:
        """A Client whose endpoints answered: fires with it, or fails (Timeout) after ``timeout``."""
        client = cls(reactor, url, timeout=timeout, **options)
        d = client.wait_until_connected(timeout)
        return d.addCallback(lambda _: client)

    @property
    def state(self) -> str:
        """'connecting' (nothing answered yet), 'connected', 'disconnected' (the last request found no
        endpoint) or 'closed'."""
        return 'closed' if self._closed else self._transport.connection.state

    def on_state_change(self, callback) -> None:
        """Call ``callback(old, new)`` whenever ``state`` changes."""
        self._transport.connection.listen(callback)

    def wait_until_connected(self, timeout: float | None = None) -> Deferred:
        """Fires once an endpoint answers (a status request, retried while none can be reached);
        fails with Timeout after ``timeout`` seconds (default: the client's)."""
        timeout = self.timeout if timeout is None else timeout
        if self.state == 'connected':
            return succeed(self)
        return Deferred.fromCoroutine(self._wait_until_connected(timeout))

    async def _wait_until_connected(self, timeout: float):
        deadline = Deadline(self._reactor, timeout)
        attempt = 0
        while True:
            if deadline.expired:
                raise Timeout(f'no endpoint answered within {timeout:g} s '
                              f'({", ".join(self.endpoints)})', 'wait until connected')
            try:
                await self._call(MaintenanceStatus(), deadline.remaining())
                return self
            except (ConnectionFailed, ConnectionLost):
                await deferLater(self._reactor, deadline.bound(CONNECT_RETRY.pause(attempt)), lambda: None)
                attempt += 1

    @property
    def reactor(self):
        """The Twisted reactor the client runs on."""
        return self._reactor

    @property
    def endpoints(self) -> list[str]:
        return list(self._transport.endpoints)

    @property
    def endpoint(self) -> str:
        """The endpoint calls currently go to."""
        return self._transport.current_endpoint

    def _call(self, op: Op, timeout: float | None) -> Deferred:
        """Run one request through the transport → its typed result (every service call ends here)."""
        if self._closed:
            return fail(ClientClosed('the client is closed; create a new one', op.describe()))
        timeout = self.timeout if timeout is None else timeout
        if self._credentials is None:
            return self._transport.call(op, timeout)
        return self._call_logged_in(op, timeout)

    def _call_logged_in(self, op: Op, timeout: float) -> Deferred:
        """A call with a token: log in first if needed, and once more if etcd rejects the token (a
        rejected token means the request was not processed, so sending it again is safe)."""
        transport = self._transport

        def send(_):
            return transport.call(op, timeout)

        def renew(failure):
            failure.trap(Unauthenticated)
            self._token = ''
            return self._login().addCallback(send)
        return self._ensure_login().addCallback(send).addErrback(renew)

    def _watch(self, create, on_message, timeout: float | None = None):
        """Start one watch stream (watch.py keeps it going) → the transport's stream handle."""
        if self._closed:
            raise ClientClosed('the client is closed; create a new one', create.describe())
        return self._transport.watch(create, on_message, self.timeout if timeout is None else timeout)

    def _transport_broken(self, error: Exception) -> None:
        if isinstance(error, Unauthenticated) and self._credentials is not None:
            self._token = ''        # the next stream (or call) logs in again first
        self._transport.endpoint_failed(error)

    def _sync(self) -> None:
        """Learn the cluster's members and talk to those not known yet (auto_sync)."""
        self._sync_timer = None
        if self._closed:
            return
        schemes = {endpoint.split('://', 1)[0] for endpoint in self.endpoints}

        def found(members):
            for member in members:
                for url in member.client_urls:
                    if url.split('://', 1)[0] in schemes:
                        self._transport.add_endpoint(url)

        def again(_):
            if not self._closed:
                self._sync_timer = self._reactor.callLater(self._sync_interval, self._sync)
        d = self.members()
        d.addCallbacks(found, lambda failure: None)     # unreachable now: the next sync tries again
        d.addBoth(again)

    def lock(self, name: bytes, *, ttl: int = 10, timeout: float | None = None) -> Scoped:
        """Acquire the distributed lock ``name`` → the held ``Lock`` (recipes.lock).

        ``lock = await client.lock(b'jobs', timeout=5)`` waits for it (``LockTimeout``, a
        ``Timeout``, after ``timeout`` seconds, leaving nothing behind); ``async with
        client.lock(b'jobs'):`` also releases it when the block ends. ``ttl`` is the holder's lease.
        """
        # Imported here: recipes build on the client, so the core does not import them when it loads.
        from .recipes.lock import Lock
        return Scoped(Lock(self, name, ttl).acquire(timeout))

    def election(self, name: bytes, *, ttl: int = 10):
        """A leader election named ``name``: ``await client.election(b'svc').campaign(b'me')``."""
        from .recipes.election import Election
        return Election(self, name, ttl)

    def close(self) -> Deferred:
        """Close every connection; later calls fail with ClientClosed."""
        self._closed = True
        if self._sync_timer is not None and self._sync_timer.active():
            self._sync_timer.cancel()
        self._sync_timer = None
        return self._transport.close()
