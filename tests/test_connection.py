"""Connection styles against real etcd: eager and lazy clients, Client.connect, the state and its
hooks, and a client that keeps working across a server restart."""

import time

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from txaioetcd import Client, errors
from txaioetcd.testing import LocalEtcd


@pytest_twisted.ensureDeferred
async def test_lazy_client_created_before_etcd_serves_once_it_is_up(reactor, prefix):
    server = LocalEtcd()          # ports chosen, not started yet
    client = Client(reactor, url=server.url, lazy=True, timeout=20)
    changes = []
    client.on_state_change(lambda old, new: changes.append((old, new)))
    try:
        assert client.state == 'connecting'
        pending = client.set(prefix + b'k', b'v')
        await deferLater(reactor, 0.5, lambda: None)
        assert not pending.called          # waiting for an endpoint, not failed
        server.start()
        written = await pending
        assert written.revision > 0
        assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
        assert client.state == 'connected'
        assert changes[-1] == ('disconnected', 'connected')
    finally:
        await client.close()
        server.close()
    assert client.state == 'closed'


@pytest_twisted.ensureDeferred
async def test_eager_client_fails_fast_then_works_again_after_a_restart(reactor, etcd_factory, prefix):
    server = etcd_factory()
    client = Client(reactor, url=server.url, timeout=10)
    changes = []
    client.on_state_change(lambda old, new: changes.append(new))
    try:
        await client.set(prefix + b'k', b'1')
        assert client.state == 'connected'
        server.stop()
        await deferLater(reactor, 0.2, lambda: None)      # the reactor sees the connections close
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailed):
            await client.get(prefix + b'k')
        # Fast, not at the 10 s timeout (a refused connect takes no time; up to half the timeout is
        # margin for a loaded machine).
        assert time.monotonic() - started < client.timeout / 2
        assert client.state == 'disconnected'
        server.start()
        assert (await client.get(prefix + b'k')).kvs[0].value == b'1'
        await client.set(prefix + b'k', b'2')
        assert client.state == 'connected'
        assert changes == ['connected', 'disconnected', 'connected']
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_wait_until_connected_times_out_with_a_clear_error(reactor):
    import socket
    # A port nobody listens on: the socket stays bound (never listening) for the whole test, so
    # connecting is refused and no other process can start listening there meanwhile.
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{s.getsockname()[1]}'
        client = Client(reactor, url=url)
        try:
            started = time.monotonic()
            with pytest.raises(errors.Timeout) as caught:
                await client.wait_until_connected(timeout=0.6)
            assert 0.5 < time.monotonic() - started < 3      # at the 0.6 s timeout: 2.4 s of margin
            assert url in str(caught.value)
        finally:
            await client.close()


@pytest_twisted.ensureDeferred
async def test_connect_fires_with_a_connected_client(reactor, etcd):
    client = await Client.connect(reactor, etcd.url, timeout=5)
    try:
        assert client.state == 'connected'
        assert (await client.status()).version.startswith('3.')
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_closed_client_refuses_calls(reactor, etcd):
    client = Client(reactor, url=etcd.url)
    await client.close()
    assert client.state == 'closed'
    with pytest.raises(errors.ClientClosed):
        await client.get(b'k')
    with pytest.raises(errors.ClientClosed):
        await client.wait_until_connected(1)
