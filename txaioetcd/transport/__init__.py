"""Transports carry requests to etcd and bring back answers; nothing above this package knows how.

A request is an Op value of plain data (``txaioetcd.ops``, ``txaioetcd.rpc``); the transport encodes
it for the wire, sends it, and builds the typed result (``txaioetcd.results``). A watch is a logical
stream of ``WatchResponse`` messages that the transport may carry on a connection of its own (the
JSON gateway) or multiplex with others. Errors are ``txaioetcd.errors`` classes, mapped from etcd's
gRPC status code and message.
"""

from zope.interface import Attribute, Interface

__all__ = ('ITransport', 'GatewayTransport', 'GrpcTransport', 'make_transport')


class ITransport(Interface):
    """Sends etcd v3 requests and returns their results. Everything the client uses of a transport
    is declared here."""

    endpoints = Attribute('The endpoint URLs this transport may talk to, in order of preference.')
    current_endpoint = Attribute('The endpoint URL calls currently go to first.')
    connection = Attribute('The ConnectionState (transport._state): connecting / connected / '
                           'disconnected, with listeners.')
    lazy = Attribute('Set by the client: when True, a request that finds no endpoint to connect to '
                     'waits (within its deadline) and tries again instead of failing at once.')

    def call(op, timeout):
        """Send one request (an Op); return a Deferred firing with its typed result.

        ``op.idempotent`` says whether it may be sent again (to another endpoint) after its fate became
        unknown; ``timeout``: seconds until the Deferred fails with Timeout (or, for a non-idempotent
        request already sent, OutcomeUnknown). ``op.describe()`` names it in errors.
        """

    def watch(create, on_message, timeout):
        """Start one watch (an rpc.WatchCreate); return an object with ``.done`` (a Deferred firing
        None when the stream ends, or failing) and ``.cancel()``. ``on_message`` gets each
        WatchResponse of this watch in order; ``timeout`` bounds the time until it starts answering."""

    def endpoint_failed(error):
        """A watch broke with ``error``: a hint to move watches and calls to another endpoint."""

    def add_endpoint(url):
        """Talk to one more member from now on (auto-sync found it) → whether it was new."""

    def set_token(token):
        """Send ``token`` (str or None) as the auth token on every following request."""

    def close():
        """Close every connection; return a Deferred that fires when done."""


from ._gateway import GatewayTransport  # noqa: E402  (the interface must exist first)


def __getattr__(name):
    # GrpcTransport is loaded on first use: protobuf and the message classes of etcd.proto cost an
    # import that a gateway-only program need not pay.
    if name == 'GrpcTransport':
        from ._grpc import GrpcTransport
        return GrpcTransport
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


KINDS = ('gateway', 'grpc')


def make_transport(kind: str, reactor, endpoints, *, pool_size: int, connect_timeout: float, tls):
    """The transport ``kind`` ('gateway' or 'grpc') for ``endpoints``."""
    if kind == 'grpc':
        from ._grpc import GrpcTransport
        return GrpcTransport(reactor, endpoints, connect_timeout=connect_timeout, tls=tls)
    if kind == 'gateway':
        return GatewayTransport(reactor, endpoints, pool_size=pool_size, connect_timeout=connect_timeout,
                                tls=tls)
    raise ValueError(f"transport must be 'gateway', 'grpc' or an ITransport, not {kind!r}")
