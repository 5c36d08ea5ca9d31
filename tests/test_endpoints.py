"""Endpoint URLs are parsed before anything connects: what is accepted, and a ValueError naming the
endpoint for everything else (both faces build their clients on this)."""

import pytest

from txaioetcd.transport._endpoints import parse_endpoint


@pytest.mark.parametrize('url, scheme, host, port', [
    ('http://127.0.0.1:2379', 'http', '127.0.0.1', 2379),
    ('http://localhost', 'http', 'localhost', 2379),
    ('https://etcd.example:2380/', 'https', 'etcd.example', 2380),
    ('http://[::1]:2379', 'http', '::1', 2379),
])
def test_accepted_tcp_endpoints(url, scheme, host, port):
    endpoint = parse_endpoint(url)
    assert (endpoint.url, endpoint.scheme, endpoint.host, endpoint.port) == (url, scheme, host, port)


def test_unix_endpoints_keep_their_path():
    assert parse_endpoint('unix:///run/etcd.sock').path == '/run/etcd.sock'
    assert parse_endpoint('unixs:///tmp/x/localhost:2379').path == '/tmp/x/localhost:2379'


@pytest.mark.parametrize('url, says', [
    ('ftp://127.0.0.1:2379', 'is not supported'),
    ('unix://', 'need a socket path'),
    ('http://:2379', 'has no host'),
    ('http://127.0.0.1:99999', 'invalid port'),
    ('http://127.0.0.1:2379/v3', 'a path is not allowed'),
    ('http://' + 'a' * 64 + '.example:2379', 'is not a valid host name'),
])
def test_refused_endpoints_name_the_url(url, says):
    with pytest.raises(ValueError, match=says) as refused:
        parse_endpoint(url)
    assert repr(url) in str(refused.value)


def test_an_endpoint_must_be_a_string():
    with pytest.raises(TypeError, match='URL string'):
        parse_endpoint(b'http://127.0.0.1:2379')
