"""Lock against a real etcd: mutual exclusion across clients, timeouts that leave nothing behind, dead
holders, first-come-first-served order, and a predecessor deleted between a waiter's read and watch."""

import time
from contextlib import AsyncExitStack

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater

from txaioetcd import Client, Header, KeySet, Lease
from txaioetcd import LockTimeout, Timeout
from txaioetcd.recipes import _queue
from txaioetcd.recipes.lock import Lock

from _loopback import connected, until


def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


async def _keys(client, name):
    return [kv.key for kv in (await client.get(KeySet(name + b'/', prefix=True))).kvs]


_until = until


async def _queued(reactor, client, name, count):
    async def enough():
        return len(await _keys(client, name)) >= count
    await _until(reactor, enough, what=f'{count} keys queued under {name!r}')


def _revoke_from_outside(client, lease_id):
    """Revoke a lease through another client, as an operator (or etcd's expiry) would."""
    return Lease(client, lease_id, 1, Header(), keepalive=False).revoke()


@pytest_twisted.ensureDeferred
async def test_counter_under_lock_is_exact(etcd, reactor, client, prefix):
    name, counter = prefix + b'lock', prefix + b'counter'
    await client.set(counter, b'0')
    inside = []
    most_inside = []

    async def contender(own_client):
        for _ in range(5):
            async with Lock(own_client, name):
                inside.append(1)
                most_inside.append(len(inside))
                value = int((await own_client.get(counter)).kvs[0].value)
                await _sleep(reactor, 0.005)      # read-modify-write with room for a race
                await own_client.set(counter, b'%d' % (value + 1))
                inside.pop()

    async with AsyncExitStack() as clients:
        own = [await clients.enter_async_context(connected(reactor, etcd.url)) for _ in range(10)]
        started = time.monotonic()
        runs = [Deferred.fromCoroutine(contender(c)) for c in own]
        for run in runs:
            await run
    assert int((await client.get(counter)).kvs[0].value) == 50
    assert max(most_inside) == 1
    assert await _keys(client, name) == []
    assert time.monotonic() - started < 60


@pytest_twisted.ensureDeferred
async def test_acquire_timeout_raises_and_leaves_nothing(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    before = set(await client.leases())
    holder = await Lock(client, name).acquire()
    assert holder.held and await _keys(client, name) == [holder.key]
    async with connected(reactor, etcd.url) as other:
        waiter = Lock(other, name)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as raised:
            await waiter.acquire(timeout=0.5)
        elapsed = time.monotonic() - started
        # Not before the timeout; after it, only the clean-up (a delete and a revoke): a generous bound
        # for a loaded machine, far below the 10 s the holder keeps the lock.
        assert 0.45 <= elapsed < 5
        assert repr(name) in str(raised.value) and '0.5 s' in str(raised.value)
        assert not waiter.held and waiter.lease is None and waiter.key is None
        assert await _keys(client, name) == [holder.key]
        assert set(await client.leases()) - before == {holder.lease.lease_id}
        await holder.release()
        assert not holder.held and await _keys(client, name) == []
        await waiter.acquire(timeout=5)         # the failed attempt does not stand in the way
        assert waiter.held
        await waiter.release()
    assert set(await client.leases()) - before == set()


@pytest_twisted.ensureDeferred
async def test_revoked_holder_frees_the_lock_and_knows_it_lost(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    async with connected(reactor, etcd.url) as holder_client, connected(reactor, etcd.url) as waiter_client:
        holder = await Lock(holder_client, name, ttl=3).acquire()
        waiter = Lock(waiter_client, name)
        waiting = waiter.acquire(timeout=10)
        await _queued(reactor, client, name, 2)
        assert not waiting.called
        await _revoke_from_outside(client, holder.lease.lease_id)     # the holder "dies"
        await waiting
        assert waiter.held
        # The holder's next keepalive (every ttl/3 s) learns that its lease is gone.
        lost = holder.lease.expired
        await _until(reactor, lambda: lost.called, timeout=5, what='the holder noticing')
        assert not holder.held
        await holder.release()                  # harmless for a lost lock
        assert await _keys(client, name) == [waiter.key]
        await waiter.release()


@pytest_twisted.ensureDeferred
async def test_holder_that_stops_keeping_its_lease_alive_hands_over(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    async with connected(reactor, etcd.url) as waiter_client:
        holder_client = Client(reactor, url=etcd.url)
        await Lock(holder_client, name, ttl=1).acquire()
        waiter = Lock(waiter_client, name)
        waiting = waiter.acquire(timeout=10)
        await _queued(reactor, client, name, 2)
        started = time.monotonic()
        await holder_client.close()             # a crashed holder: no more keepalives, no release
        await waiting
        assert waiter.held and time.monotonic() - started < 5
        await waiter.release()


@pytest_twisted.ensureDeferred
async def test_waiters_are_served_in_create_revision_order(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    served = []
    async with AsyncExitStack() as clients:
        holder = await Lock(await clients.enter_async_context(connected(reactor, etcd.url)), name).acquire()
        waiters, runs = [], []

        async def wait_then_release(index, waiter):
            await waiter.acquire(timeout=10)
            served.append(index)
            await waiter.release()

        for index in range(4):
            waiter = Lock(await clients.enter_async_context(connected(reactor, etcd.url)), name)
            runs.append(Deferred.fromCoroutine(wait_then_release(index, waiter)))
            waiters.append(waiter)
            await _queued(reactor, client, name, index + 2)
        queue = (await client.get(KeySet(name + b'/', prefix=True), sort_target='create')).kvs
        assert [kv.key for kv in queue] == [holder.key] + [w.key for w in waiters]
        assert [kv.create_revision for kv in queue] == sorted(kv.create_revision for kv in queue)
        await holder.release()
        for run in runs:
            await run
    assert served == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_predecessor_deleted_between_read_and_watch(etcd, reactor, client, prefix, monkeypatch):
    """The waiter reads the queue, sees the holder ahead, and only then starts its watch; the holder
    releases in between. Watching from "now" would miss that delete and hang; the lock must not."""
    name = prefix + b'lock'
    holder = await Lock(client, name).acquire()
    holder_key = holder.key
    original = _queue.Place._deleted
    seen = []

    async def release_first(place, key, start_revision):
        if not seen:
            seen.append((key, start_revision))
            await holder.release()                            # the delete lands before the watch
            assert (await client.get(key)).kvs == []
        return await original(place, key, start_revision)

    monkeypatch.setattr(_queue.Place, '_deleted', release_first)
    async with connected(reactor, etcd.url) as other:
        waiter = Lock(other, name)
        await waiter.acquire(timeout=5)                       # LockTimeout here would mean it hung
        assert waiter.held
        assert [key for key, _ in seen] == [holder_key] and await _keys(client, name) == [waiter.key]
        await waiter.release()


@pytest_twisted.ensureDeferred
async def test_hand_over_races_repeatedly(etcd, reactor, prefix):
    """A releases while B is anywhere in its acquire (joining, reading, creating its watch)."""
    name = prefix + b'lock'
    async with connected(reactor, etcd.url) as a_client, connected(reactor, etcd.url) as b_client:
        for round_ in range(25):
            a = await Lock(a_client, name).acquire(timeout=5)
            b = Lock(b_client, name)
            b_waiting = b.acquire(timeout=5)
            await _sleep(reactor, 0.001 * (round_ % 5))       # vary where B is when A lets go
            await a.release()
            await b_waiting
            assert b.held
            await b.release()
        assert await _keys(a_client, name) == []


@pytest_twisted.ensureDeferred
async def test_async_with_and_misuse(reactor, client, prefix):
    name = prefix + b'lock'
    async with client.lock(name, ttl=5) as held:
        assert isinstance(held, Lock) and held.held and held.ttl == 5
        assert held.key.startswith(name + b'/') and held.key == name + b'/%x' % held.lease.lease_id
        with pytest.raises(RuntimeError, match='already'):
            await held.acquire()
    assert not held.held and await _keys(client, name) == []
    await held.release()                                      # nothing to release: no error
    with pytest.raises(TypeError, match='encode'):
        Lock(client, 'name')
    with pytest.raises(ValueError, match='empty'):
        Lock(client, b'')
    with pytest.raises(ValueError, match='ttl'):
        Lock(client, name, ttl=0)
    with pytest.raises(ValueError, match='timeout'):
        await Lock(client, name).acquire(timeout=-1)


@pytest_twisted.ensureDeferred
async def test_release_gives_up_a_waiting_acquire(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    holder = await Lock(client, name).acquire()
    async with connected(reactor, etcd.url) as other:
        waiter = Lock(other, name)
        waiting = waiter.acquire()
        await _queued(reactor, client, name, 2)
        await waiter.release()                                # returns once the attempt cleaned up
        with pytest.raises(CancelledError):
            await waiting
        assert not waiter.held and await _keys(client, name) == [holder.key]
    await holder.release()


@pytest_twisted.ensureDeferred
async def test_cancelling_twice_does_not_cut_the_cleanup_short(etcd, reactor, client, prefix):
    name = prefix + b'lock'
    before = set(await client.leases())
    holder = await Lock(client, name).acquire()
    async with connected(reactor, etcd.url) as other:
        waiter = Lock(other, name)
        waiting = waiter.acquire(timeout=10)
        await _queued(reactor, client, name, 2)
        waiting.cancel()                      # the attempt starts to leave the queue...
        await waiter.release()                # ...and is cancelled again meanwhile
        with pytest.raises(CancelledError):
            await waiting
        assert await _keys(client, name) == [holder.key]
        assert set(await client.leases()) - before == {holder.lease.lease_id}
    await holder.release()
