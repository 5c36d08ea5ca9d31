"""API prefix detection of the JSON-gateway transport, against a real etcd behind a proxy written here.

etcd 3.3/3.4 serve the gateway under ``/v3beta`` (and 3.2/3.3 under ``/v3alpha``); the client first
tries ``/v3`` and moves to the next prefix on a plain-text 404. To see that for real, a small
twisted.web reverse proxy on 127.0.0.1 plays an old etcd: it answers ``404 page not found`` (Go's
``http.NotFound`` text, what etcd's mux says for an unknown path) under ``/v3/...`` and forwards
``/v3beta/...`` to the real etcd's ``/v3/...``. It records every path it was asked for.

Every client here uses the gateway transport, whichever one ``$TXAIOETCD_TRANSPORT`` picks: the
prefix is the gateway's alone (gRPC paths have none).
"""

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from txaioetcd import CompValue, KeySet, OpGet, OpSet, Success, Transaction, errors

from _loopback import connected

_GO_NOT_FOUND = b'404 page not found\n'


@implementer(IBodyProducer)
class _Bytes:
    """A body producer for bytes already in memory."""

    def __init__(self, body):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _Collect(Protocol):
    """Collects a response body; fires ``done`` with it (any end of the body counts as the end)."""

    def __init__(self, done):
        self.done = done
        self.chunks = []

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        self.done.callback(b''.join(self.chunks))


class _OldGateway(Resource):
    """Plays an etcd whose gateway lives under ``serve`` (forwarded to the real etcd's /v3), or
    under no prefix at all when ``serve`` is None."""

    isLeaf = True

    def __init__(self, reactor, upstream, serve=b'/v3beta/'):
        super().__init__()
        self.upstream = upstream.encode('ascii')
        self.serve = serve
        self.paths = []
        self.agent = Agent(reactor)

    def render_POST(self, request):
        path = request.path
        self.paths.append(path.decode('ascii'))
        if self.serve is None or not path.startswith(self.serve):
            request.setResponseCode(404)
            request.setHeader(b'content-type', b'text/plain; charset=utf-8')
            return _GO_NOT_FOUND
        body = request.content.read()
        target = self.upstream + b'/v3/' + path[len(self.serve):]
        d = self.agent.request(b'POST', target, Headers({b'content-type': [b'application/json']}),
                               _Bytes(body))
        d.addCallback(self._relay, request)
        d.addErrback(self._broken, request)
        return NOT_DONE_YET

    def _relay(self, response, request):
        d = defer.Deferred()
        response.deliverBody(_Collect(d))

        def write(data):
            request.setResponseCode(response.code)
            for value in response.headers.getRawHeaders(b'content-type', []):
                request.setHeader(b'content-type', value)
            request.setHeader(b'content-length', str(len(data)).encode('ascii'))
            request.write(data)
            request.finish()
        d.addCallback(write)
        return d

    def _broken(self, failure, request):
        request.setResponseCode(502)
        request.setHeader(b'content-type', b'text/plain')
        request.write(f'proxy failed: {failure.getErrorMessage()}'.encode())
        request.finish()


class _Proxy:
    def __init__(self, reactor, upstream, serve=b'/v3beta/'):
        self.resource = _OldGateway(reactor, upstream, serve)
        self.port = reactor.listenTCP(0, Site(self.resource), interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.port.getHost().port}'

    @property
    def paths(self):
        return self.resource.paths

    def stop(self):
        return self.port.stopListening()


@pytest.fixture
def proxy(reactor, etcd):
    p = _Proxy(reactor, etcd.url)
    yield p
    p.stop()


@pytest.fixture
def dead_proxy(reactor, etcd):
    p = _Proxy(reactor, etcd.url, serve=None)
    yield p
    p.stop()


@pytest_twisted.ensureDeferred
async def test_v3beta_server_is_detected_and_used(reactor, proxy, prefix):
    async with connected(reactor, proxy.url, transport='gateway') as client:
        written = await client.set(prefix + b'a', b'one')
        assert written.revision > 0
        got = await client.get(prefix + b'a')
        assert [(kv.key, kv.value) for kv in got.kvs] == [(prefix + b'a', b'one')]
        assert got.kvs[0].mod_revision == written.revision

        result = await client.submit(Transaction(
            compare=[CompValue(prefix + b'a', '==', b'one')],
            success=[OpSet(prefix + b'b', b'two'), OpGet(KeySet(prefix, prefix=True))]))
        assert isinstance(result, Success)
        assert [kv.key for kv in result.responses[1].kvs] == [prefix + b'a', prefix + b'b']

        deleted = await client.delete(KeySet(prefix, prefix=True))
        assert deleted.deleted == 2

    # One probe under /v3 (answered 404 and so not processed), everything else under /v3beta.
    assert proxy.paths == ['/v3/kv/put', '/v3beta/kv/put', '/v3beta/kv/range', '/v3beta/kv/txn',
                           '/v3beta/kv/deleterange']


@pytest_twisted.ensureDeferred
async def test_prefix_probe_of_a_write_applies_it_exactly_once(reactor, proxy, prefix):
    """The /v3 probe of a put is answered 404 and retried under /v3beta: the key has version 1."""
    async with connected(reactor, proxy.url, transport='gateway') as client:
        await client.set(prefix + b'k', b'v')
        got = await client.get(prefix + b'k')
        assert got.kvs[0].version == 1
        assert got.kvs[0].create_revision == got.kvs[0].mod_revision
    assert proxy.paths == ['/v3/kv/put', '/v3beta/kv/put', '/v3beta/kv/range']


@pytest_twisted.ensureDeferred
async def test_server_without_any_gateway_prefix_is_a_protocol_error(reactor, dead_proxy, prefix):
    async with connected(reactor, dead_proxy.url, transport='gateway') as client:
        with pytest.raises(errors.ProtocolError) as caught:
            await client.get(prefix + b'k')
    error = caught.value
    assert error.request == f'get of key {prefix + b"k"!r}'
    assert str(error).startswith(f'get of key {prefix + b"k"!r}: ')
    assert dead_proxy.url in str(error)
    for api in ('/v3', '/v3beta', '/v3alpha'):
        assert api in str(error)
    assert 'etcd v3' in str(error)
    assert dead_proxy.paths == ['/v3/kv/range', '/v3beta/kv/range', '/v3alpha/kv/range']


@pytest_twisted.ensureDeferred
async def test_unknown_route_after_prefix_confirmed_is_unsupported(reactor, etcd):
    """etcd 3.5's gateway has no /v3/maintenance/hashkv route (it answers a plain-text 404)."""
    async with connected(reactor, etcd.url, transport='gateway') as client:
        await _unknown_route_is_unsupported(client)


async def _unknown_route_is_unsupported(client):
    status = await client.status()          # confirms the /v3 prefix
    assert status.version
    with pytest.raises(errors.Unsupported) as caught:
        await client.hash_kv()
    error = caught.value
    assert error.request == 'hash_kv at revision 0'
    assert str(error).startswith('hash_kv at revision 0: ')
    assert '/v3/maintenance/hashkv' in str(error)
    # The client is still fine afterwards.
    again = await client.status()
    assert again.header.member_id == status.header.member_id


@pytest_twisted.ensureDeferred
async def test_unknown_route_behind_v3beta_is_unsupported(reactor, proxy):
    async with connected(reactor, proxy.url, transport='gateway') as client:
        status = await client.status()
        assert status.version
        with pytest.raises(errors.Unsupported) as caught:
            await client.hash_kv(7)
        assert caught.value.request == 'hash_kv at revision 7'
        assert '/v3beta/maintenance/hashkv' in str(caught.value)
        assert (await client.status()).header.cluster_id == status.header.cluster_id
    assert proxy.paths == ['/v3/maintenance/status', '/v3beta/maintenance/status',
                           '/v3beta/maintenance/hashkv', '/v3beta/maintenance/status']


@pytest_twisted.ensureDeferred
async def test_concurrent_first_calls_agree_on_the_prefix(reactor, proxy, prefix):
    """Several calls in flight before the prefix is known must all end up under /v3beta."""
    async with connected(reactor, proxy.url, transport='gateway') as client:
        results = await defer.DeferredList([defer.ensureDeferred(_get(client, prefix + b'%d' % i))
                                            for i in range(4)], consumeErrors=True)
        outcomes = [value if ok else f'{value.type.__name__}: {value.getErrorMessage()}'
                    for ok, value in results]
        assert outcomes == [0, 0, 0, 0]
        assert (await client.get(prefix + b'x')).count == 0


async def _get(client, key):
    return (await client.get(key)).count


@pytest_twisted.ensureDeferred
async def test_unknown_route_as_first_call_leaves_the_client_usable(reactor, etcd, prefix):
    async with connected(reactor, etcd.url, transport='gateway') as client:
        with pytest.raises(errors.Error) as caught:
            await client.hash_kv()
        assert caught.value.request == 'hash_kv at revision 0'
        assert isinstance(caught.value, errors.Unsupported), repr(caught.value)
        await client.set(prefix + b'k', b'v')
        assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
