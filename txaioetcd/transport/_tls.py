"""TLS for ``https://`` and ``unixs://`` endpoints: the configuration, the Twisted client endpoint and
the translation of OpenSSL's failures into `CertificateUntrusted` / `ClientCertificateRejected`.

Twisted's TLS (pyOpenSSL + service-identity, the ``tls`` extra) is imported only when a TLS endpoint is
built, so plain ``http://`` users need neither.

Why a protocol between TLS and the HTTP connection: Twisted's TLS endpoint reports the connection as
made as soon as TCP is up, so a failed handshake arrives later as a lost connection and would read
as ``ConnectionLost`` (for a write: ``OutcomeUnknown``). `_Handshake` sees the TLS failure first and
fails the request it carries with the specific error. A handshake failure means the server processed
nothing, so the error is a `ConnectionFailed` (safe to retry anywhere), even for writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from ..errors import CertificateUntrusted, ClientCertificateRejected, TLSError

__all__ = ('TLSConfig', 'TLSEndpoint', 'client_tls_options', 'tls_error')

_INSTALL = "TLS endpoints need pyOpenSSL and service-identity: pip install 'txaioetcd[tls]'"

# OpenSSL reason strings meaning the *server* refused our certificate (an alert it sent us): none
# sent though required (TLS 1.3 "certificate required"; TLS 1.2 servers say "handshake failure"
# or "bad certificate"), not signed by a CA it trusts, expired, and so on.
_REJECTED = ('alert certificate required', 'alert bad certificate', 'alert unknown ca',
             'alert certificate unknown', 'alert certificate expired', 'alert certificate revoked',
             'alert unsupported certificate', 'alert access denied')


@dataclass(frozen=True)
class TLSConfig:
    """How to talk TLS to etcd.

    ``ca_file``: PEM file of the CA certificate(s) that sign the server's certificate; None trusts the
    platform's store. ``cert_file`` / ``key_file``: our client certificate and its key (PEM) for
    servers started with ``--client-cert-auth``; the key may sit in ``cert_file``.
    ``server_hostname``: the name the server's certificate must carry; by default the endpoint's
    host, and ``localhost`` for ``unixs://`` endpoints. Hostname verification is always on.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None

    def __post_init__(self):
        if self.key_file is not None and self.cert_file is None:
            raise ValueError('TLSConfig: key_file needs cert_file (the client certificate)')


def _ssl():
    """twisted.internet.ssl, or ImportError saying what to install."""
    try:
        import OpenSSL  # noqa: F401
        import service_identity  # noqa: F401 - without it Twisted would not verify host names
        from twisted.internet import ssl
    except ImportError as error:
        raise ImportError(f'{_INSTALL} ({error})') from error
    return ssl


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, 'rb') as file:
            return file.read()
    except OSError as error:
        raise ValueError(f'TLSConfig: cannot read {what} {path!r}: {error.strerror}') from None


_PEM_CERT = re.compile(rb'-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----', re.S)


def client_tls_options(config: TLSConfig, hostname: str, alpn=None):
    """The Twisted client connection creator for ``config``, verifying ``hostname`` (or the
    configured ``server_hostname``); ``alpn`` lists the protocols to offer (e.g. ``[b'h2']``)."""
    ssl = _ssl()
    trust = None
    if config.ca_file is not None:
        pems = _PEM_CERT.findall(_read(config.ca_file, 'ca_file'))
        if not pems:
            raise ValueError(f'TLSConfig: ca_file {config.ca_file!r} holds no PEM certificate')
        trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(pem) for pem in pems])
    client = None
    if config.cert_file is not None:
        pem = _read(config.cert_file, 'cert_file')
        if config.key_file is not None:
            pem += b'\n' + _read(config.key_file, 'key_file')
        try:
            client = ssl.PrivateCertificate.loadPEM(pem)
        except Exception as error:  # OpenSSL's errors carry no useful type
            raise ValueError(f'TLSConfig: cannot load the client certificate and key: {error}') from None
    return ssl.optionsForClientTLS(config.server_hostname or hostname, trustRoot=trust,
                                   clientCertificate=client, acceptableProtocols=alpn)


def tls_error(reason: BaseException, where: str, hostname: str) -> TLSError | None:
    """The TLSError for an exception a TLS connection ended with, or None if it is not about TLS."""
    try:
        from OpenSSL.SSL import Error as OpenSSLError
        from service_identity import CertificateError, VerificationError
    except ImportError:
        return None
    if isinstance(reason, (VerificationError, CertificateError)):
        return CertificateUntrusted(f'the certificate of {where} is not valid for {hostname!r} '
                                    f'(set TLSConfig.server_hostname to the name it carries): {reason}')
    if not isinstance(reason, OpenSSLError):
        return None
    text = '; '.join(':'.join(str(part) for part in entry if part) if isinstance(entry, tuple)
                     else str(entry) for entry in (reason.args[0] if reason.args and
                                                   isinstance(reason.args[0], list) else reason.args))
    lowered = text.lower()
    if 'certificate verify failed' in lowered:
        return CertificateUntrusted(f'the certificate of {where} is not trusted ({text}); '
                                    f'give TLSConfig(ca_file=...) the CA that signed it')
    if any(needle in lowered for needle in _REJECTED):
        return ClientCertificateRejected(f'{where} refused our client certificate ({text}); give '
                                         f'TLSConfig(cert_file=..., key_file=...) one its CA signed')
    return TLSError(f'TLS with {where} failed: {text or type(reason).__name__}')


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """Sits between Twisted's TLS protocol and the HTTP connection (``app``): passes everything
    through, turns TLS failures into TLSErrors for the request in flight, and bounds the handshake."""

    def __init__(self, app, reactor, where: str, hostname: str, timeout: float):
        self.app = app
        self._reactor = reactor
        self._where = where
        self._hostname = hostname
        self._timeout = timeout
        self._timer = None
        self.done = False

    def makeConnection(self, transport) -> None:
        self.transport = transport
        self._timer = self._reactor.callLater(self._timeout, self._too_slow)
        self.app.makeConnection(transport)

    def handshakeCompleted(self) -> None:
        self._stop_timer()
        # Host name verification runs inside the handshake and may already have aborted it.
        if not self.transport.disconnecting:
            self.done = True

    def dataReceived(self, data: bytes) -> None:
        self.app.dataReceived(data)

    def connectionLost(self, reason) -> None:
        self._stop_timer()
        error = tls_error(reason.value, self._where, self._hostname)
        # After the handshake only the server's refusal of our certificate is still about TLS (TLS 1.3
        # sends it after the client finished); anything else is an ordinary lost connection.
        if error is None and not self.done:
            error = TLSError(f'the connection to {self._where} closed during the TLS handshake '
                             f'({reason.getErrorMessage()}); does it serve TLS?')
        if error is not None and (not self.done or isinstance(error, ClientCertificateRejected)):
            self.app.shut(error)
        self.app.connectionLost(reason)

    def _too_slow(self) -> None:
        self._timer = None
        self.app.shut(TLSError(f'the TLS handshake with {self._where} did not finish within '
                               f'{self._timeout:g} s'))

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _HandshakeFactory(Factory):
    def __init__(self, factory, reactor, where, hostname, timeout):
        self._factory = factory
        self._args = (reactor, where, hostname, timeout)

    def buildProtocol(self, addr):
        app = self._factory.buildProtocol(addr)
        return None if app is None else _Handshake(app, *self._args)


@implementer(IStreamClientEndpoint)
class TLSEndpoint:
    """An IStreamClientEndpoint: TLS over ``inner`` (TCP or a unix socket), connecting with
    ``creator``; ``connect`` fires with the application protocol, as a plain endpoint's does."""

    def __init__(self, reactor, inner, creator, where: str, hostname: str, handshake_timeout: float):
        self._reactor = reactor
        self._inner = inner
        self._creator = creator
        self._where = where
        self._hostname = hostname
        self._handshake_timeout = handshake_timeout

    def connect(self, factory):
        from twisted.protocols.tls import TLSMemoryBIOFactory
        wrapped = _HandshakeFactory(factory, self._reactor, self._where, self._hostname,
                                    self._handshake_timeout)
        tls = TLSMemoryBIOFactory(self._creator, True, wrapped, clock=self._reactor)   # not the global reactor
        return self._inner.connect(tls).addCallback(lambda protocol: protocol.wrappedProtocol.app)
