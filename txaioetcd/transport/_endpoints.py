"""Endpoint URLs → Twisted client endpoints: ``http://host:port``, ``https://host:port``,
``unix:///path/to/socket`` and ``unixs:///path/to/socket`` (TLS over a unix socket)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from twisted.internet.endpoints import (HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint,
                                        UNIXClientEndpoint)

__all__ = ('Endpoint', 'parse_endpoint')

_SCHEMES = ('http', 'https', 'unix', 'unixs')
_UNIX = ('unix', 'unixs')


@dataclass(frozen=True)
class Endpoint:
    """Where one etcd member listens for clients."""

    url: str
    scheme: str
    host: str
    port: int
    path: str = ''

    @property
    def secure(self) -> bool:
        return self.scheme in ('https', 'unixs')

    @property
    def host_header(self) -> bytes:
        if self.scheme in _UNIX:
            return b'localhost'
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'{host}:{self.port}'.encode('ascii')

    def connector(self, reactor, connect_timeout: float, tls=None, alpn=None):
        """The Twisted IStreamClientEndpoint that opens connections to this member; ``tls`` (a
        TLSConfig) for https/unixs, None meaning the platform's trusted CAs and no client certificate;
        ``alpn``: the protocols to offer in the TLS handshake."""
        inner = self._plain_connector(reactor, connect_timeout)
        if not self.secure:
            if tls is not None:
                # Silently sending in clear what was meant to be protected would be worse than failing.
                raise ValueError(f'endpoint {self.url!r}: tls= is given but the endpoint is not '
                                 f'https:// or unixs://')
            return inner
        from ._tls import TLSConfig, TLSEndpoint, client_tls_options
        tls = tls or TLSConfig()
        # etcd's certificates for unix sockets usually name localhost; TLSConfig.server_hostname overrides.
        hostname = tls.server_hostname or ('localhost' if self.scheme == 'unixs' else self.host)
        return TLSEndpoint(reactor, inner, client_tls_options(tls, hostname, alpn), self.url, hostname,
                           connect_timeout)

    def _plain_connector(self, reactor, connect_timeout: float):
        if self.scheme in _UNIX:
            return UNIXClientEndpoint(reactor, self.path, timeout=connect_timeout)
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return HostnameEndpoint(reactor, self.host.encode('idna'), self.port, timeout=connect_timeout)
        cls = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
        return cls(reactor, self.host, self.port, timeout=connect_timeout)


def parse_endpoint(url: str) -> Endpoint:
    """Parse an endpoint URL, or raise ValueError saying what is accepted."""
    if not isinstance(url, str):
        raise TypeError(f'endpoint must be a URL string, not {url!r}')
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f'endpoint {url!r}: scheme {parts.scheme!r} is not supported '
                         f'(use http://host:port, https://host:port, unix:///path/to/socket '
                         f'or unixs:///path/to/socket)')
    if scheme in _UNIX:
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise ValueError(f'endpoint {url!r}: unix endpoints need a socket path, e.g. unix:///run/etcd.sock')
        return Endpoint(url, scheme, '', 0, path)
    if not parts.hostname:
        raise ValueError(f'endpoint {url!r} has no host; expected {scheme}://host:port')
    try:
        port = parts.port or 2379
    except ValueError:
        raise ValueError(f'endpoint {url!r} has an invalid port') from None
    if parts.path not in ('', '/'):
        raise ValueError(f'endpoint {url!r}: a path is not allowed; the API prefix is detected')
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        try:
            parts.hostname.encode('idna')
        except UnicodeError as error:
            raise ValueError(f'endpoint {url!r}: {parts.hostname!r} is not a valid host name ({error})') from None
    return Endpoint(url, scheme, parts.hostname, port)
