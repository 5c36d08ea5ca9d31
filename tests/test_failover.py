"""Several endpoints: a request that cannot reach one member goes to the next (3-member cluster).

Full fault handling (reconnect with backoff, health tracking) is its own issue; this checks that the
client core already moves on from a stopped member for reads and writes.
"""

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from txaioetcd import Client, KeySet
from txaioetcd.errors import ConnectionFailed

from _loopback import until

pytestmark = pytest.mark.cluster


@pytest_twisted.ensureDeferred
async def test_requests_move_to_the_next_member_when_one_is_stopped(cluster, reactor, prefix):
    client = Client(reactor, endpoints=cluster.endpoints, timeout=10)
    stopped = None
    try:
        await client.set(prefix + b'before', b'1')
        first = client.endpoint
        stopped = cluster.endpoints.index(first)
        cluster.stop_member(stopped)
        # stop_member blocks the reactor; let it see the closed connections, as it would in real
        # time. (A write racing a member's shutdown on a reused connection is reported as
        # OutcomeUnknown - tests/test_timeouts.py checks that case.)
        await deferLater(reactor, 0.2)

        written = await client.set(prefix + b'during', b'2')
        got = await client.get(KeySet(prefix, prefix=True))
        assert [kv.value for kv in got.kvs] == [b'1', b'2']
        assert written.revision <= got.header.revision
        assert client.endpoint != first
        status = await client.status()
        assert status.header.member_id != 0
        members = await client.members()
        assert len(members) == 3
    finally:
        if stopped is not None:
            cluster.start_member(stopped)
        client.close()


@pytest_twisted.ensureDeferred
async def test_every_member_unreachable_names_each_endpoint(reactor, prefix):
    import socket
    from contextlib import ExitStack

    # Ports nobody listens on: each socket stays bound (never listening) until the end, so connecting
    # is refused and no other process can start listening there meanwhile.
    held = ExitStack()
    ports = []
    for _ in range(2):
        s = held.enter_context(socket.socket())
        s.bind(('127.0.0.1', 0))
        ports.append(s.getsockname()[1])
    urls = [f'http://127.0.0.1:{port}' for port in ports]
    client = Client(reactor, endpoints=urls, timeout=5)
    try:
        with pytest.raises(ConnectionFailed) as caught:
            await client.set(prefix + b'k', b'v')
        message = str(caught.value)
        assert message.startswith(f"set of key {prefix + b'k'!r}")
        assert all(url in message for url in urls)
    finally:
        client.close()
        held.close()


@pytest_twisted.ensureDeferred
async def test_same_client_works_after_a_restart(reactor, prefix):
    from twisted.internet.defer import gatherResults
    from txaioetcd.testing import LocalEtcd

    with LocalEtcd() as server:         # stopped (by its PID) and removed however the test ends
        client = Client(reactor, url=server.url, timeout=5)
        try:
            # Several kept-alive connections, all of which the restart will close behind the client's
            # back.
            await gatherResults([client.set(prefix + b'%d' % i, b'v') for i in range(8)])
            server.stop()
            server.start()
            # stop/start blocked the reactor: the client has not yet seen its connections close. A
            # read goes out again on a fresh connection instead of failing.
            got = await client.get(KeySet(prefix, prefix=True))
            assert got.count == 8
            await client.set(prefix + b'after', b'restart')
            assert (await client.get(prefix + b'after')).kvs[0].value == b'restart'
        finally:
            client.close()


@pytest_twisted.ensureDeferred
async def test_writes_and_reads_under_load_while_the_member_in_use_and_then_the_leader_stop(cluster, reactor,
                                                                                          prefix):
    """A steady stream of puts and gets while first the member the client uses, then the leader, is
    stopped (from a thread: the reactor never blocks). Every acknowledged put is readable afterwards,
    reads succeed within their deadline, and a put whose answer was lost is reported as OutcomeUnknown
    - never as success or a clean failure."""
    from twisted.internet.threads import deferToThread

    from txaioetcd.errors import OutcomeUnknown

    client = Client(reactor, endpoints=cluster.endpoints, timeout=5)
    acked, unknown, other_errors, reads = [], [], [], []
    state = {'stop': False, 'n': 0}

    async def writer():
        while not state['stop']:
            key = prefix + b'%06d' % state['n']
            state['n'] += 1
            try:
                await client.set(key, b'v')
                acked.append(key)
            except OutcomeUnknown:
                unknown.append(key)
            except Exception as error:           # noqa: BLE001 - recorded and asserted below
                other_errors.append(error)

    async def reader():
        while not state['stop']:
            started = reactor.seconds()
            await client.get(prefix + b'000000')
            reads.append(reactor.seconds() - started)

    from twisted.internet.defer import ensureDeferred, gatherResults
    workers = [ensureDeferred(writer()) for _ in range(8)] + [ensureDeferred(reader()) for _ in range(2)]
    stopped = []
    try:
        await deferLater(reactor, 1.0, lambda: None)
        in_use = cluster.endpoints.index(client.endpoint)
        await deferToThread(cluster.stop_member, in_use)
        stopped.append(in_use)
        await deferLater(reactor, 2.0, lambda: None)
        await deferToThread(cluster.start_member, in_use)       # keep quorum: 2 of 3 running
        stopped.remove(in_use)
        leader = await deferToThread(cluster.leader)
        await deferToThread(cluster.stop_member, leader)
        stopped.append(leader)
        await deferLater(reactor, 2.0, lambda: None)
    finally:
        state['stop'] = True
        await gatherResults(workers)
        for index in stopped:
            await deferToThread(cluster.start_member, index)
    try:
        assert not other_errors, other_errors[:3]
        assert len(acked) > 100
        # Within the 5 s deadline (a read past it fails with Timeout instead); 0.5 s is for the reactor
        # turn that hands the answer over on a loaded machine.
        assert max(reads) < 5.5
        stored = await client.get(KeySet(prefix, prefix=True), keys_only=True)
        present = {kv.key for kv in stored.kvs}
        assert all(key in present for key in acked)  # no acknowledged write lost
        assert present <= set(acked) | set(unknown)  # nothing appeared that was neither
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_auto_sync_learns_the_members_and_fails_over_to_them(cluster, reactor, prefix):
    from twisted.internet.threads import deferToThread

    given = cluster.endpoints[0]
    client = Client(reactor, endpoints=[given], auto_sync=True, timeout=10)
    try:
        await until(reactor, lambda: len(client.endpoints) == 3, 10, 'auto_sync to learn the members')
        assert sorted(client.endpoints) == sorted(cluster.endpoints)
        await client.set(prefix + b'k', b'v')
        await deferToThread(cluster.stop_member, 0)
        try:
            assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
            await client.set(prefix + b'k2', b'v2')
            assert client.endpoint != given
        finally:
            await deferToThread(cluster.start_member, 0)
    finally:
        await client.close()
