"""Election against a real etcd: candidates lead in turn, proclaim only while leading, hand over when
the leader resigns or dies, and observers follow every change of leader and value."""

from contextlib import AsyncExitStack

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater

from txaioetcd import Client, Header, KeySet, Lease
from txaioetcd.recipes.election import Election, NotLeader

from _loopback import connected, until


def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


_until = until


async def _standing(reactor, client, name, count):
    async def enough():
        return (await client.count(KeySet(name + b'/', prefix=True))) >= count
    await _until(reactor, enough, what=f'{count} candidates standing in {name!r}')


def _next(reactor, observer, timeout=5.0):
    """The observer's next value, or a failure after ``timeout`` s."""
    return observer.__anext__().addTimeout(timeout, reactor)


async def _nothing_more(reactor, observer, wait=0.3):
    following = observer.__anext__()
    await _sleep(reactor, wait)
    assert not following.called, f'unexpected value {following.result!r}'
    following.cancel()
    following.addErrback(lambda failure: failure.trap(CancelledError))


@pytest_twisted.ensureDeferred
async def test_three_candidates_take_turns(etcd, reactor, client, prefix):
    name = prefix + b'election'
    async with AsyncExitStack() as clients:
        one, two, three = [Election(await clients.enter_async_context(connected(reactor, etcd.url)), name)
                           for _ in range(3)]
        assert await Election(client, name).leader() is None
        await one.campaign(b'one')
        assert one.leading and await one.leader() == (one.key, b'one')

        observer = Election(client, name).observe()
        assert await _next(reactor, observer) == b'one'

        second = two.campaign(b'two')
        await _standing(reactor, client, name, 2)
        third = three.campaign(b'three')
        await _standing(reactor, client, name, 3)
        assert not second.called and not third.called and not two.leading

        await one.proclaim(b'one again')
        assert await _next(reactor, observer) == b'one again'
        assert await three.leader() == (one.key, b'one again')
        with pytest.raises(NotLeader, match=repr(name)):
            await two.proclaim(b'usurper')                    # still campaigning: not the leader
        await _nothing_more(reactor, observer)

        await one.resign()                                    # hands over to the next in line
        assert not one.leading and one.key is None
        await second.addTimeout(5, reactor)
        assert two.leading and not third.called
        assert await _next(reactor, observer) == b'two'
        assert await one.leader() == (two.key, b'two')

        await Lease(client, two.lease.lease_id, 1, Header(), keepalive=False).revoke()   # two "dies"
        await third.addTimeout(5, reactor)
        assert three.leading
        assert await _next(reactor, observer) == b'three'
        with pytest.raises(NotLeader, match='gone'):
            await two.proclaim(b'zombie')                     # etcd's compare catches the dead leader
        assert not two.leading
        assert await one.leader() == (three.key, b'three')

        await three.resign()
        await two.resign()                                    # already gone: harmless
        assert await one.leader() is None
        await _nothing_more(reactor, observer)                # no leader: nothing to tell
        observer.cancel()
        with pytest.raises(StopAsyncIteration):
            await _next(reactor, observer)
    assert await client.count(KeySet(name + b'/', prefix=True)) == 0


@pytest_twisted.ensureDeferred
async def test_observers_see_every_value_once_in_order(etcd, reactor, client, prefix):
    name = prefix + b'election'
    early = Election(client, name).observe()                  # before any candidate stands
    async with connected(reactor, etcd.url) as own:
        leader = Election(own, name)
        await leader.campaign(b'v0')
        for i in range(1, 6):
            await leader.proclaim(b'v%d' % i)
        late = Election(client, name).observe()               # starts from the current value
        assert await _next(reactor, late) == b'v5'
        await leader.proclaim(b'v6')
        assert await _next(reactor, late) == b'v6'
        assert [await _next(reactor, early) for _ in range(7)] == [b'v%d' % i for i in range(7)]
        await leader.resign()
    for observer in (early, late):
        observer.cancel()
        assert [value async for value in observer] == []


@pytest_twisted.ensureDeferred
async def test_dead_leader_hands_over_when_its_lease_expires(etcd, reactor, client, prefix):
    name = prefix + b'election'
    dying = Client(reactor, url=etcd.url)
    first = Election(dying, name, ttl=1)
    await first.campaign(b'first')
    async with connected(reactor, etcd.url) as own:
        second = Election(own, name)
        taking_over = second.campaign(b'second')
        await _standing(reactor, client, name, 2)
        await dying.close()                                   # no keepalives, no resign
        await taking_over.addTimeout(5, reactor)
        assert await second.leader() == (second.key, b'second')
        await second.resign()


@pytest_twisted.ensureDeferred
async def test_campaign_again_proclaims_and_resign_gives_up_a_campaign(etcd, reactor, client, prefix):
    name = prefix + b'election'
    leader = Election(client, name, ttl=5)
    await leader.campaign(b'a')
    key = leader.key
    await leader.campaign(b'b')                               # already leading: a proclaim
    assert leader.key == key and await leader.leader() == (key, b'b')
    async with connected(reactor, etcd.url) as own:
        waiting = Election(own, name)
        campaign = waiting.campaign(b'c')
        await _standing(reactor, client, name, 2)
        with pytest.raises(RuntimeError, match='already campaigns'):
            await waiting.campaign(b'd')
        await waiting.resign()                                # gives up the waiting campaign
        with pytest.raises(CancelledError):
            await campaign
        assert not waiting.leading
        assert [kv.key for kv in (await client.get(KeySet(name + b'/', prefix=True))).kvs] == [key]
    await leader.resign()
    with pytest.raises(NotLeader):
        await leader.proclaim(b'after resigning')
    with pytest.raises(TypeError, match='encode'):
        await leader.campaign('text')
    with pytest.raises(ValueError, match='empty'):
        Election(client, b'')
