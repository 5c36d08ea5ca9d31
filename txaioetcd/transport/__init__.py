"""Transports carry requests to etcd and bring back answers; nothing above this package knows how.

A request is a proto3-JSON dict (bytes as base64, 64-bit integers as numbers or strings) addressed by
its gateway RPC name (``'kv/range'``); the answer is the response message as a dict. That form is the
JSON gateway's own and maps one to one onto protobuf messages, so a native gRPC transport can be
added behind the same interface.
"""

from zope.interface import Attribute, Interface

__all__ = ('ITransport', 'GatewayTransport')


class ITransport(Interface):
    """Sends etcd v3 requests and returns their answers."""

    endpoints = Attribute('The endpoint URLs this transport may talk to, in order of preference.')

    def call(rpc, request, describe, idempotent, timeout):
        """Send one unary request; return a Deferred firing with the response dict.

        ``rpc``: e.g. ``'kv/put'``; ``describe``: text naming the operation and key for errors;
        ``idempotent``: whether the request may be sent again (to another endpoint) after its fate
        became unknown; ``timeout``: seconds until the Deferred fails with Timeout (or, for a
        non-idempotent request already sent, OutcomeUnknown). Errors are txaioetcd.errors classes.
        """

    def stream(rpc, request, describe, on_message, timeout):
        """Start a server-streaming call (watch, lease keepalive) on a connection of its own; return
        an object with ``.done`` (a Deferred firing None when the stream ends, or failing) and
        ``.cancel()``. ``request`` is one request dict or a list sent in order; ``on_message`` gets
        each response dict in order; ``timeout`` bounds the time until the stream starts answering."""

    def endpoint_failed(error):
        """A stream broke with ``error``: a hint to move streams and calls to another endpoint."""

    def add_endpoint(url):
        """Talk to one more member from now on (auto-sync found it) → whether it was new."""

    def set_token(token):
        """Send ``token`` (str or None) as the auth token on every following request."""

    def close():
        """Close every connection; return a Deferred that fires when done."""


from ._gateway import GatewayTransport  # noqa: E402  (the interface must exist first)
