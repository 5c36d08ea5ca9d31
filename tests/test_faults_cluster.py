"""The fault harness's own faults, against a real 3-member cluster: peer links through the harness's
proxies (which member dialled is told by the kernel), partitions and an isolated leader, latency,
dropped connections, SIGSTOPped members - and that the harness cleans up after all of them."""

import os
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted

from txaioetcd import KeySet
from txaioetcd.errors import Error
from txaioetcd.testing import EtcdCluster
from txaioetcd.testing._proxy import socket_owner

from _loopback import connected

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


@pytest.fixture(scope='module')
def proxied():
    with EtcdCluster(size=3, proxied=True) as cluster:
        yield cluster


@pytest.fixture
def cluster(proxied):
    yield proxied
    proxied.heal()
    for index in sorted(proxied.paused):
        proxied.resume_member(index)
    proxied.leader(timeout=30)
    proxied.wait_connected(timeout=30)      # the next test starts with every link up


def _new_leader(cluster, old, timeout=20.0):
    """Wait until a member other than ``old`` leads → its index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            leader = cluster.leader(timeout=1)
        except RuntimeError:
            continue
        if leader != old:
            return leader
        time.sleep(0.05)
    raise AssertionError(f'no member but m{old} became leader within {timeout} s')


async def _eventually(reactor, check, timeout=20.0):
    from twisted.internet.task import deferLater
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, f'not true within {timeout} s'
        await deferLater(reactor, 0.05, lambda: None)


def test_a_connection_is_attributed_to_the_process_that_dialled():
    listener = socket.create_server(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, '-c', f'import socket, sys; s = socket.create_connection('
                              f'("127.0.0.1", {port})); sys.stdin.read()'], stdin=subprocess.PIPE)
    try:
        listener.settimeout(10)
        from_child, address = listener.accept()
        mine = socket.create_connection(('127.0.0.1', port))
        from_me, my_address = listener.accept()
        here = listener.getsockname()
        assert socket_owner(address, here, {'child': child.pid, 'init': 1}) == 'child'
        assert socket_owner(my_address, here, {'child': child.pid}) is None
        for sock in (from_child, mine, from_me):
            sock.close()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        listener.close()


def test_every_peer_link_runs_through_the_proxies(cluster):
    cluster.leader()
    for member in cluster.members:
        assert member.advertised_peer_url != member.peer_url
    proxies = cluster._proxies
    wanted = {(a, b) for a in range(3) for b in range(3) if a != b}
    deadline = time.monotonic() + 10
    while True:     # members redial after earlier tests' faults: wait until every link is up again
        links = {(pipe.source, pipe.target) for pipe in list(proxies._pipes)}
        if wanted <= links or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= links and all(source in (0, 1, 2) for source, _ in links), links



def test_connections_sharing_a_local_port_are_told_apart():
    # Linux lets connections to different places share an ephemeral port: the owner is the socket
    # with both ends, not the first row with that local address.
    first, second = socket.create_server(('127.0.0.1', 0)), socket.create_server(('127.0.0.1', 0))
    mine = socket.socket()
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    mine.bind(('127.0.0.1', 0))
    shared = mine.getsockname()
    mine.connect(first.getsockname())
    child = subprocess.Popen([sys.executable, '-c', f'import socket, sys; s = socket.socket(); '
                              f's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind({shared!r}); '
                              f's.connect({second.getsockname()!r}); print("on", flush=True); sys.stdin.read()'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == 'on\n'
        pids = {'child': child.pid, 'me': os.getpid()}
        assert socket_owner(shared, second.getsockname(), pids) == 'child'
        assert socket_owner(shared, first.getsockname(), pids) == 'me'
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        for sock in (mine, first, second):
            sock.close()

@pytest_twisted.ensureDeferred
async def test_isolated_leader_is_replaced_and_catches_up_after_heal(reactor, cluster, prefix):
    old = cluster.leader()
    majority = [i for i in range(3) if i != old]
    cluster.isolate(old)
    _new_leader(cluster, old)
    async with connected(reactor, endpoints=[cluster.members[majority[0]].url]) as client:
        await client.set(prefix + b'k', b'written in the majority')
    async with connected(reactor, endpoints=[cluster.members[old].url], timeout=1.5) as isolated:
        started = time.monotonic()
        with pytest.raises(Error) as raised:
            await isolated.get(prefix + b'k')            # linearizable: needs a quorum it cannot reach
        assert time.monotonic() - started < 10
        print('an isolated member answers a linearizable read with', type(raised.value).__name__)
        cluster.heal()

        async def caught_up():
            try:
                found = await isolated.get(prefix + b'k', serializable=True)
            except Error:
                return False
            return bool(found.kvs) and found.kvs[0].value == b'written in the majority'
        await _eventually(reactor, caught_up)


@pytest_twisted.ensureDeferred
async def test_a_partitioned_follower_does_not_stop_the_majority(reactor, cluster, prefix):
    leader = cluster.leader()
    follower = (leader + 1) % 3
    cluster.partition([follower], [i for i in range(3) if i != follower])
    async with connected(reactor, endpoints=[cluster.members[leader].url]) as client:
        for i in range(5):
            await client.set(prefix + b'%d' % i, b'v')
        assert (await client.count(KeySet(prefix, prefix=True))) == 5


def _timed_put(cluster, key):
    from txaioetcd.embedded import _request_json
    import base64
    started = time.monotonic()
    _request_json(cluster.members[cluster.leader()].url + '/v3/kv/put', 10,
                  {'key': base64.b64encode(key).decode(), 'value': ''})
    return time.monotonic() - started


def test_delay_slows_every_write_by_a_quorum_round_trip(cluster, prefix):
    cluster.delay(0.2)
    delayed = min(_timed_put(cluster, prefix + b'd%d' % i) for i in range(3))
    cluster.heal()
    healed = min(_timed_put(cluster, prefix + b'h%d' % i) for i in range(3))
    assert delayed >= 0.2, delayed                  # to a follower and back: 2 x 0.2 s of delay, at least one
    assert healed < delayed


@pytest_twisted.ensureDeferred
async def test_dropped_connections_are_redialled(reactor, cluster, prefix):
    cluster.drop_connections()
    attempts = []
    async with connected(reactor, endpoints=cluster.endpoints, timeout=3) as client:
        async def written():
            # A write in flight while the links are reset may time out inside etcd: its outcome is
            # unknown, so each attempt writes a key of its own.
            key = prefix + b'after-drop-%d' % len(attempts)
            attempts.append(key)
            try:
                await client.set(key, b'ok')
            except Error:
                return False
            return (await client.get(key)).kvs[0].value == b'ok'
        await _eventually(reactor, written)
    assert len(attempts) <= 10


@pytest_twisted.ensureDeferred
async def test_paused_leader_is_replaced_and_rejoins(reactor, cluster, prefix):
    old = cluster.leader()
    cluster.pause_member(old)
    assert cluster.paused == {old} and cluster.members[old].running
    _new_leader(cluster, old)
    awake = [cluster.members[i].url for i in range(3) if i != old]
    async with connected(reactor, endpoints=awake, timeout=5) as client:
        await client.set(prefix + b'k', b'while m%d slept' % old)
    cluster.resume_member(old)
    assert cluster.paused == set()
    async with connected(reactor, endpoints=[cluster.members[old].url], timeout=5) as rejoined:
        async def has_it():
            try:
                found = await rejoined.get(prefix + b'k', serializable=True)
            except Error:
                return False
            return bool(found.kvs)
        await _eventually(reactor, has_it)


def test_faults_need_a_proxied_cluster_and_valid_members(cluster):
    plain = EtcdCluster(size=3)
    try:
        with pytest.raises(RuntimeError, match='proxied=True'):
            plain.isolate(0)
    finally:
        plain.close()
    with pytest.raises(ValueError, match='no member 5'):
        cluster.partition([5], [0, 1])


def test_closing_a_cluster_with_a_paused_member_leaves_no_process():
    with EtcdCluster(size=3, proxied=True) as cluster:
        cluster.pause_member(1)
        cluster.kill_member(2)
        pids = [member.pid for member in cluster.members[:2]]
        proxies = cluster._proxies
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not proxies._thread.is_alive()



def test_wait_connected_waits_for_the_members_to_dial_again():
    with EtcdCluster(size=3, proxied=True) as cluster:
        cluster.wait_connected()
        ids = [int(member.status()['header']['member_id']) for member in cluster.members]
        assert cluster.members[0].active_peers() == {ids[1], ids[2]}
        cluster.isolate(0)
        with pytest.raises(RuntimeError, match=r"not connected to every other one after 1.5 s: \{'m0'"):
            cluster.wait_connected(timeout=1.5)
        cluster.heal()
        cluster.wait_connected()
        assert all(len(member.active_peers()) == 2 for member in cluster.members)
