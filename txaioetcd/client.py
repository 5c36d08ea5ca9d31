"""The Client: one object per etcd cluster, composed of the service mixins (kv, maintenance, ...).

Every call returns a Deferred: ``await`` it inside coroutines run with ``Deferred.fromCoroutine`` /
``ensureDeferred``, or ``yield`` it under ``inlineCallbacks``.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from zope.interface.verify import verifyObject

from .errors import ClientClosed
from .kv import KV
from .lease import LeaseService
from .maintenance import Maintenance
from .watch import Watch
from .ops import Op
from .transport import GatewayTransport, ITransport

__all__ = ('Client',)


class Client(KV, Maintenance, Watch, LeaseService):
    """An etcd v3 client.

    ``Client(reactor, url='http://127.0.0.1:2379')`` or ``Client(reactor, endpoints=[url, ...])``;
    ``timeout`` is the default deadline in seconds of every call (each call takes ``timeout=`` too);
    ``pool_size`` bounds the connections per endpoint (requests beyond it queue); ``transport`` replaces
    the JSON-gateway transport with another ITransport.
    """

    def __init__(self, reactor, url: str | None = None, *, endpoints=None, timeout: float = 10.0,
                 pool_size: int = 32, connect_timeout: float = 5.0, transport=None):
        if transport is None:
            if url is not None and endpoints is not None:
                raise ValueError('Client: give url or endpoints, not both')
            if url is None and not endpoints:
                raise ValueError('Client: give url=\'http://host:2379\' or endpoints=[...]')
            transport = GatewayTransport(reactor, [url] if url is not None else list(endpoints),
                                         pool_size=pool_size, connect_timeout=connect_timeout)
        verifyObject(ITransport, transport)
        if not (timeout and timeout > 0):
            raise ValueError(f'Client: timeout must be a positive number of seconds, not {timeout!r}')
        self._reactor = reactor
        self._transport = transport
        self.timeout = timeout
        self._closed = False

    def __repr__(self):
        return f'Client(endpoints={self.endpoints!r})'

    @property
    def endpoints(self) -> list[str]:
        return list(self._transport.endpoints)

    @property
    def endpoint(self) -> str:
        """The endpoint calls currently go to."""
        return getattr(self._transport, 'current_endpoint', self.endpoints[0])

    def _call(self, rpc: str, request: dict, describe: str, idempotent: bool,
              timeout: float | None) -> Deferred:
        if self._closed:
            return fail(ClientClosed('the client is closed; create a new one', describe))
        return self._transport.call(rpc, request, describe, idempotent,
                                    self.timeout if timeout is None else timeout)

    def _stream(self, rpc: str, request, describe: str, on_message):
        if self._closed:
            raise ClientClosed('the client is closed; create a new one', describe)
        return self._transport.stream(rpc, request, describe, on_message, self.timeout)

    def _transport_broken(self, error: Exception) -> None:
        self._transport.endpoint_failed(error)

    def _do(self, op: Op, timeout: float | None) -> Deferred:
        d = self._call(op.rpc, op.request(), op.describe(), op.idempotent, timeout)
        d.addCallback(op.parse)
        return d

    def close(self) -> Deferred:
        """Close every connection; later calls fail with ClientClosed."""
        self._closed = True
        return self._transport.close()
