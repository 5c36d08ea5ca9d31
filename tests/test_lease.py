"""Leases against a real etcd: grant, inspect, attach keys, refresh, revoke, keep alive in the
background (also across a restart of etcd), and find out when a lease is lost.

Tests that stop etcd use a single-member etcd of the module's own (``own_etcd``); the others share
the session's etcd and keep apart by key prefix. Waits poll up to a deadline; the two "kept alive for
10 s" tests check their invariants all along those 10 s.
"""

import os
import random
import re
import signal
import time

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from txaioetcd import Client, KeySet, Lease, LeaseLost
from txaioetcd.errors import Error

from _loopback import connected, within, until


# -- helpers

def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


_until = until


_within = within


async def _value(client, key):
    got = await client.get(key)
    return got.kvs[0].value if got.kvs else None


async def _gone(client, lease):
    return await lease.remaining() == -1


def _absent(client, key):
    """A predicate for _until: ``key`` does not exist. (etcd forgets an expired lease a moment before
    the deletion of its keys is visible, so a test polls for both.)"""
    async def predicate():
        return await _value(client, key) is None
    return predicate


def _keepalive_timers(reactor, lease):
    return [call for call in reactor.getDelayedCalls()
            if getattr(call.func, '__self__', None) is lease]


def _no_keepalive_in_flight(reactor, lease):
    """A predicate for _until: the lease waits for its next keepalive (none is being sent)."""
    async def predicate():
        return any(call.getTime() - reactor.seconds() > 0.05 for call in _keepalive_timers(reactor, lease))
    return predicate


def _assert_lost_after_the_ttl(lease, reason, lost_after):
    """``reason`` says the lease was counted lost only once no keepalive had got through for longer than
    its TTL (the silence the client measured from the last keepalive that did), and ``lost_after`` (s
    from the moment etcd went away) is within the TTL plus retries plus margin for a loaded machine."""
    assert 'TTL' in str(reason)
    silent = re.search(r'no keepalive got through for ([0-9.]+) s', str(reason))
    assert silent, str(reason)
    assert lease.ttl <= float(silent.group(1)) < lease.ttl + 2.5, str(reason)     # (rounded to 0.1 s)
    assert lost_after < lease.ttl + 3.0


@pytest.fixture(scope='module')
def own_etcd(etcd_factory):
    """A single-member etcd of this module's own, stopped and started by the tests here."""
    return etcd_factory()


# -- grant, inspect, revoke

@pytest_twisted.ensureDeferred
async def test_grant_inspect_refresh_and_revoke(client, prefix):
    lease = await client.lease(30)
    assert isinstance(lease, Lease)
    assert lease.lease_id > 0 and lease.ttl == 30 and lease.state == 'alive'
    assert lease.header.revision > 0
    assert 28 <= await lease.remaining() <= 30
    assert await lease.keys() == []
    await client.set(prefix + b'a', b'1', lease=lease)
    await client.set(prefix + b'b', b'2', lease=lease.lease_id)
    await client.set(prefix + b'free', b'3')
    assert sorted(await lease.keys()) == [prefix + b'a', prefix + b'b']
    assert (await client.get(prefix + b'a')).kvs[0].lease == lease.lease_id
    assert (await client.get(prefix + b'free')).kvs[0].lease == 0
    assert lease.lease_id in await client.leases()
    assert await lease.refresh() == 30

    header = await lease.revoke()
    assert lease.state == 'revoked'
    assert header.revision > lease.header.revision
    got = await client.get(KeySet(prefix, prefix=True))
    assert [kv.key for kv in got.kvs] == [prefix + b'free']     # the lease's keys went with it
    assert await lease.remaining() == -1
    assert await lease.keys() == []
    assert lease.lease_id not in await client.leases()
    with pytest.raises(LeaseLost):
        await lease.refresh()
    assert await lease.revoke() is None            # revoking a lease that is gone is harmless
    assert not lease.expired.called                 # revoked on purpose: not "lost"


@pytest_twisted.ensureDeferred
async def test_lease_with_a_chosen_id_and_bad_ttls(client, prefix):
    chosen = random.getrandbits(40) + 1
    lease = await client.lease(20, lease_id=chosen, keepalive=False)
    try:
        assert lease.lease_id == chosen
        assert chosen in await client.leases()
        with pytest.raises(Error):
            await client.lease(20, lease_id=chosen, keepalive=False)   # the id is taken
    finally:
        await lease.revoke()
    for ttl in (0, -1, 1.5, '5', None):
        with pytest.raises(ValueError):
            client.lease(ttl)


@pytest_twisted.ensureDeferred
async def test_async_with_revokes_on_exit(client, prefix):
    async with await client.lease(5) as lease:
        await client.set(prefix + b'k', b'v', lease=lease)
        assert await _value(client, prefix + b'k') == b'v'
        assert lease.state == 'alive'
    assert lease.state == 'revoked'
    assert await _value(client, prefix + b'k') is None
    assert await lease.remaining() == -1
    assert _keepalive_timers(client._reactor, lease) == []

    # ... also when the block raises; the exception goes on.
    with pytest.raises(RuntimeError, match='inside'):
        async with await client.lease(5) as failing:
            await client.set(prefix + b'k2', b'v', lease=failing)
            raise RuntimeError('inside the block')
    assert failing.state == 'revoked'
    assert await _value(client, prefix + b'k2') is None


@pytest_twisted.ensureDeferred
async def test_lease_without_keepalive_expires_and_refresh_then_raises(client, reactor, prefix):
    lease = await client.lease(1, keepalive=False)
    await client.set(prefix + b'k', b'v', lease=lease)
    assert _keepalive_timers(reactor, lease) == []
    await _until(reactor, lambda: _gone(client, lease), 10, 'the lease to expire')
    await _until(reactor, _absent(client, prefix + b'k'), 5, 'its key to go')
    assert lease.keepalives == 0
    with pytest.raises(LeaseLost) as caught:
        await lease.refresh()
    assert 'does not exist' in str(caught.value)
    assert not lease.expired.called        # nobody was keeping it alive, so it was not "lost"


# -- keepalive

@pytest_twisted.ensureDeferred
async def test_keepalive_keeps_a_two_second_lease_for_ten_seconds(client, reactor, prefix):
    lease = await client.lease(2)
    try:
        await client.set(prefix + b'k', b'v', lease=lease)
        started = time.monotonic()
        while time.monotonic() - started < 10:
            assert await _value(client, prefix + b'k') == b'v'
            # The lease exists all along (-1 would be gone). Not ">= 1": etcd truncates what is left,
            # so that would hold only while every keepalive came within 1/3 s of its time.
            assert await lease.remaining() >= 0
            assert lease.state == 'alive'
            await _sleep(reactor, 0.5)
        assert await lease.keys() == [prefix + b'k']
        # One about every 2/3 s: 15 in these 10 s on time; at least two thirds of that on a loaded machine.
        assert lease.keepalives >= 10
        assert not lease.expired.called
    finally:
        await lease.revoke()
    assert _keepalive_timers(reactor, lease) == []


@pytest_twisted.ensureDeferred
async def test_keepalive_survives_a_restart_of_etcd(own_etcd, reactor, prefix):
    """etcd (3.5) keeps its leases across a restart and, once it leads again, gives each one a fresh
    TTL (plus an election timeout): a kept-alive lease goes on, its keys stay."""
    server = own_etcd
    async with connected(reactor, server.url) as client:
        lease = await client.lease(2)
        unattended = await client.lease(6, keepalive=False)     # shows what etcd itself does
        try:
            await client.set(prefix + b'k', b'v', lease=lease)
            await client.set(prefix + b'u', b'v', lease=unattended)
            started = time.monotonic()
            await _sleep(reactor, 1.5)
            before = lease.keepalives
            assert await unattended.remaining() <= 5
            server.stop()
            try:
                await _sleep(reactor, 0.4)          # keepalives fail meanwhile (it is down ~1 s in all)
                # start() blocks the reactor (~0.6 s) until etcd is healthy: do not let a keepalive be
                # in flight then, or its failure would be judged only afterwards, as if it had taken
                # that long (the client counts the lease lost when keepalives fail for over the TTL).
                await _until(reactor, _no_keepalive_in_flight(reactor, lease), 2, 'a keepalive pause')
            finally:
                server.start()
            # The restarted etcd renewed every lease: the unattended one has its whole TTL again.
            assert await unattended.remaining() >= 5
            restarted, after_restart = time.monotonic(), lease.keepalives
            assert after_restart >= before
            while time.monotonic() - started < 10:
                assert await _value(client, prefix + b'k') == b'v'
                assert lease.state == 'alive', lease.expired.result
                await _sleep(reactor, 0.5)
            assert await lease.keys() == [prefix + b'k']
            # Keepalives went on after the restart at about one every 2/3 s: at least half that rate,
            # as margin for a loaded machine (any slower than one per TTL and the lease would be lost).
            on_time = (time.monotonic() - restarted) / (lease.ttl / 3)
            kept_after = lease.keepalives - after_restart
            assert kept_after >= on_time / 2, (kept_after, on_time)
            assert not lease.expired.called
        finally:
            await lease.revoke()
            await unattended.revoke()


# -- lost leases

@pytest_twisted.ensureDeferred
async def test_lease_is_lost_when_keepalives_cannot_get_through(own_etcd, reactor, prefix):
    server = own_etcd
    async with connected(reactor, server.url) as client:
        lease = await client.lease(2)
        await client.set(prefix + b'k', b'v', lease=lease)
        calls = []
        lease.on_expired(lambda lost, reason: calls.append((lost, reason)))
        lease.on_expired(lambda lost, reason: 1 / 0)        # a failing callback does not stop the others
        lease.on_expired(lambda lost, reason: calls.append('third'))
        await _until(reactor, lambda: lease.keepalives >= 1, 5, 'a first keepalive')
        stopped = time.monotonic()
        server.stop()
        try:
            reason = await _within(reactor, lease.expired, 8, 'the lease to count as lost')
            lost_after = time.monotonic() - stopped
        finally:
            server.start()
        assert isinstance(reason, LeaseLost)
        _assert_lost_after_the_ttl(lease, reason, lost_after)
        assert lease.state == 'expired'
        assert calls == [(lease, reason), 'third']
        assert _keepalive_timers(reactor, lease) == []
        keepalives = lease.keepalives
        await _sleep(reactor, 1.0)
        assert lease.keepalives == keepalives       # no more keepalives for a lost lease
        # Nobody keeps it alive now: etcd lets it expire, and its key goes.
        await _until(reactor, lambda: _gone(client, lease), 10, 'etcd to expire the lease')
        await _until(reactor, _absent(client, prefix + b'k'), 5, 'its key to go')


@pytest_twisted.ensureDeferred
async def test_lease_is_lost_when_etcd_does_not_answer(own_etcd, reactor, prefix):
    """A frozen etcd (SIGSTOP) accepts connections but answers nothing: keepalives time out."""
    server = own_etcd
    async with connected(reactor, server.url) as client:
        lease = await client.lease(2)
        await client.set(prefix + b'k', b'v', lease=lease)
        calls = []
        lease.on_expired(lambda lost, reason: calls.append(reason))
        await _until(reactor, lambda: lease.keepalives >= 1, 5, 'a first keepalive')
        frozen = time.monotonic()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            reason = await _within(reactor, lease.expired, 8, 'the lease to count as lost')
            lost_after = time.monotonic() - frozen
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert isinstance(reason, LeaseLost)
        _assert_lost_after_the_ttl(lease, reason, lost_after)
        assert lease.state == 'expired'
        assert calls == [reason]
        await _until(reactor, lambda: _gone(client, lease), 10, 'etcd to expire the lease')
        await _until(reactor, _absent(client, prefix + b'k'), 5, 'its key to go')


@pytest_twisted.ensureDeferred
async def test_lease_is_lost_when_etcd_says_it_is_gone(client, etcd, reactor, prefix):
    lease = await client.lease(3)
    await client.set(prefix + b'k', b'v', lease=lease)
    calls = []
    lease.on_expired(lambda lost, reason: calls.append(reason))
    async with connected(reactor, etcd.url) as other:
        # Someone else revokes it (same id, another client).
        await Lease(other, lease.lease_id, lease.ttl, lease.header, keepalive=False).revoke()
    reason = await _within(reactor, lease.expired, 5, 'the next keepalive to find the lease gone')
    assert isinstance(reason, LeaseLost)
    assert 'does not exist' in str(reason)
    assert calls == [reason]
    assert lease.state == 'expired'
    assert await _value(client, prefix + b'k') is None


@pytest.mark.cluster
@pytest_twisted.ensureDeferred
async def test_keepalive_moves_on_when_the_member_it_talks_to_stops(cluster, reactor, prefix):
    """The member the client talks to - the leader, the harder case - stops: keepalives go to another
    member, a new leader is elected, the lease and its key stay."""
    leader = cluster.leader()
    endpoints = cluster.endpoints[leader:] + cluster.endpoints[:leader]
    async with connected(reactor, endpoints=endpoints) as client:
        lease = await client.lease(3)
        stopped = False
        try:
            await client.set(prefix + b'k', b'v', lease=lease)
            assert client.endpoint == cluster.endpoints[leader]
            cluster.stop_member(leader)
            stopped = True
            started = time.monotonic()
            while time.monotonic() - started < 6:
                assert lease.state == 'alive', lease.expired.result
                assert await _value(client, prefix + b'k') == b'v'
                await _sleep(reactor, 0.5)
            assert client.endpoint != cluster.endpoints[leader]
            assert await lease.keys() == [prefix + b'k']
        finally:
            if stopped:
                cluster.start_member(leader)
            await lease.revoke()


@pytest_twisted.ensureDeferred
async def test_closing_the_client_stops_keepalives_without_calling_the_lease_lost(etcd, reactor, prefix):
    client = Client(reactor, url=etcd.url, timeout=5)
    lease = await client.lease(1)
    await _until(reactor, lambda: lease.keepalives >= 1, 5, 'a first keepalive')
    await client.close()
    await _sleep(reactor, 1.0)
    assert _keepalive_timers(reactor, lease) == []
    assert not lease.expired.called
    async with connected(reactor, etcd.url) as other:
        watcher = Lease(other, lease.lease_id, lease.ttl, lease.header, keepalive=False)
        await _until(reactor, lambda: _gone(other, watcher), 10, 'etcd to expire the lease')
