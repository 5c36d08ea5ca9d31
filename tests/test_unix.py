"""An etcd member listening on a unix socket: get, set, txn and watch over ``unix://``.

etcd (3.5) accepts unix listen URLs only as ``unix://name:port`` and creates the socket file
``name:port`` in its working directory; LocalEtcd(unix_socket=True) runs it in a directory of its
own and gives the full path as ``unix_url``.
"""

import os
import stat
import time

import pytest
import pytest_twisted
from txaioetcd import Client, CompValue, OpGet, OpSet, Transaction
from txaioetcd.errors import ConnectionFailed

from _loopback import until, within


@pytest.fixture(scope='module')
def unix_etcd(etcd_factory):
    return etcd_factory(unix_socket=True)


@pytest.fixture
def unix_client(unix_etcd, reactor):
    client = Client(reactor, url=unix_etcd.unix_url, timeout=10)
    yield client
    client.close()


def test_the_socket_exists(unix_etcd):
    assert unix_etcd.unix_url.startswith('unix:///')
    path = unix_etcd.unix_url[len('unix://'):]
    assert stat.S_ISSOCK(os.stat(path).st_mode)


@pytest_twisted.ensureDeferred
async def test_get_set_txn_watch(unix_client, reactor, prefix):
    seen = []
    watching = unix_client.watch(prefix + b'w', seen.append)
    await within(reactor, watching.ready(), 10, 'the watch to be created')
    try:
        await unix_client.set(prefix + b'k', b'v')
        assert (await unix_client.get(prefix + b'k')).kvs[0].value == b'v'
        result = await unix_client.submit(Transaction(
            compare=[CompValue(prefix + b'k', '==', b'v')],
            success=[OpSet(prefix + b'k', b'v2'), OpGet(prefix + b'k')]))
        assert result.responses[1].kvs[0].value == b'v2'
        await unix_client.set(prefix + b'w', b'event')
        await until(reactor, lambda: seen, 10, 'the watch event')
        assert seen[0].key == prefix + b'w' and seen[0].kv.value == b'event'
    finally:
        watching.cancel()


@pytest_twisted.ensureDeferred
async def test_same_data_as_over_tcp(unix_etcd, unix_client, reactor, prefix):
    tcp = Client(reactor, url=unix_etcd.url, timeout=10)
    try:
        await tcp.set(prefix + b'shared', b'1')
        assert (await unix_client.get(prefix + b'shared')).kvs[0].value == b'1'
    finally:
        tcp.close()


@pytest_twisted.ensureDeferred
async def test_missing_socket_is_connection_failed(reactor, tmp_path, prefix):
    client = Client(reactor, url=f'unix://{tmp_path}/no-such.sock', timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            await client.get(prefix + b'k')
        assert time.monotonic() - started < 5      # at once, not at the 10 s timeout (half is margin)
    finally:
        client.close()
