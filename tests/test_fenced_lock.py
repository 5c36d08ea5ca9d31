"""Fenced writes against a real etcd: a lock's (or a leader's) fence holds only while its key still
exists as created, so a holder that lost the lock - its lease expired while it was paused - cannot
write; without the fence it can, and its write lands inside the next holder's tenure."""

import base64
import json
import urllib.request

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from txaioetcd import CompCreated, Database, Failed, Header, KeySet, Lease, OpSet, Transaction, pmap
from txaioetcd.errors import LockLost, NotLeader, ReadOnlyTransaction, TransactionConflict
from txaioetcd.recipes.election import Election
from txaioetcd.recipes.lock import Lock
from txaioetcd.testing import stall_reactor

from _loopback import connected


def _key_exists(url, key):
    """Blocking, over etcd's own HTTP gateway: usable while the reactor is stalled."""
    body = json.dumps({'key': base64.b64encode(key).decode(), 'keys_only': True}).encode()
    request = urllib.request.Request(f'{url}/v3/kv/range', data=body,
                                     headers={'Content-Type': 'application/json'})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as answer:
        return bool(json.loads(answer.read()).get('kvs'))


def _revoke_from_outside(client, lease_id):
    return Lease(client, lease_id, 1, Header(), keepalive=False).revoke()


def _notes():
    return pmap.MapStringString(1, name='notes')


async def _value(client, key):
    found = await client.get(key)
    return found.kvs[0].value if found.kvs else None


@pytest_twisted.ensureDeferred
async def test_fence_and_revision_while_held(reactor, client, prefix):
    lock = await client.lock(prefix + b'lock', ttl=5)
    try:
        fence = lock.fence
        assert isinstance(fence, CompCreated)
        assert fence.keyset.key == lock.key and fence.operand == lock.revision > 0
        await client.submit(Transaction(compare=[fence], success=[OpSet(prefix + b'x', b'1')]))
        assert await _value(client, prefix + b'x') == b'1'
    finally:
        await lock.release()
    assert lock.revision is None
    with pytest.raises(LockLost, match=r"fence of lock .*does not hold the lock"):
        lock.fence


@pytest_twisted.ensureDeferred
async def test_tokens_grow_from_holder_to_holder(reactor, client, prefix):
    tokens = []
    for _ in range(3):
        lock = await client.lock(prefix + b'lock', ttl=5)
        tokens.append(lock.revision)
        await lock.release()
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


@pytest_twisted.ensureDeferred
async def test_guarded_commit_while_held(reactor, client, prefix):
    db = Database(client, prefix=prefix)
    notes = _notes()
    async with client.lock(prefix + b'lock', ttl=5) as lock:
        async with db.begin(write=True, guard=lock) as txn:
            notes[txn, 'a'] = 'written under the lock'
        assert await db.run(lambda txn: notes.__setitem__((txn, 'b'), 'by run'), guard=lock) is None
    async with db.begin() as txn:
        assert await notes[txn, 'a'] == 'written under the lock'
        assert await notes[txn, 'b'] == 'by run'


@pytest_twisted.ensureDeferred
async def test_lost_lock_refuses_the_guarded_commit_and_writes_nothing(etcd, reactor, client, prefix):
    db = Database(client, prefix=prefix)
    notes = _notes()
    lock = await client.lock(prefix + b'lock', ttl=30)
    async with connected(reactor, etcd.url) as operator:
        txn = db.begin(write=True, guard=lock)
        notes[txn, 'a'] = 'must not land'
        await _revoke_from_outside(operator, lock.lease.lease_id)   # the key goes with the lease
        assert lock.held                                            # and this holder has not heard yet
        with pytest.raises(LockLost, match=r"lock .*is not held any more: its key .*nothing was written"):
            await txn.commit()
        assert txn.state == 'aborted'
        # db.run does not take a lost lock for a conflict: one attempt, no retries.
        attempts = []

        def write(txn):
            attempts.append(1)
            notes[txn, 'b'] = 'must not land either'
        with pytest.raises(LockLost):
            await db.run(write, guard=lock)
        assert len(attempts) == 1
    async with db.begin() as txn:
        assert await notes[txn, 'a'] is None and await notes[txn, 'b'] is None
    await lock.release()


@pytest_twisted.ensureDeferred
async def test_lock_lost_wins_over_a_conflict(etcd, reactor, client, prefix):
    db = Database(client, prefix=prefix)
    notes = _notes()
    lock = await client.lock(prefix + b'lock', ttl=30)
    async with connected(reactor, etcd.url) as other:
        txn = db.begin(write=True, guard=lock)
        assert await notes[txn, 'a'] is None
        notes[txn, 'a'] = 'mine'
        await Database(other, prefix=prefix).run(lambda t: notes.__setitem__((t, 'a'), 'theirs'))
        await _revoke_from_outside(other, lock.lease.lease_id)
        # Both compares fail; retrying would not help, so the lost lock is what is reported.
        with pytest.raises(LockLost):
            await txn.commit()
    await lock.release()


@pytest_twisted.ensureDeferred
async def test_guard_misuse(reactor, client, prefix):
    db = Database(client, prefix=prefix)
    lock = await client.lock(prefix + b'lock', ttl=5)
    with pytest.raises(ValueError, match='write=True'):
        db.begin(guard=lock)
    with pytest.raises(TypeError, match='Lock or an Election'):
        db.begin(write=True, guard=object())
    with pytest.raises(ReadOnlyTransaction):
        Database(client, prefix=prefix, readonly=True).begin(write=True, guard=lock)
    await lock.release()
    # A released lock is known lost: refused before anything is sent.
    txn = db.begin(write=True, guard=lock)
    _notes()[txn, 'a'] = 'x'
    with pytest.raises(LockLost, match='acquire it first'):
        await txn.commit()


@pytest_twisted.ensureDeferred
async def test_paused_holder_cannot_write_with_the_fence(etcd, reactor, client, prefix):
    """The Jepsen scenario: the holder stalls (a GC pause) past its lease; etcd expires the lease and
    the next contender takes the lock. Woken up, the first holder still believes it holds the lock."""
    name = prefix + b'lock'
    db = Database(client, prefix=prefix)
    notes = _notes()
    async with connected(reactor, etcd.url) as second_client:
        first = await client.lock(name, ttl=1)
        second = Lock(second_client, name, ttl=30)
        second_gets_it = second.acquire(timeout=30)
        txn = db.begin(write=True, guard=first)
        notes[txn, 'owner'] = 'first'
        stall_reactor(until=lambda: not _key_exists(etcd.url, first.key), timeout=20)
        assert first.held                      # it cannot know: nothing ran while it was stalled
        with pytest.raises(LockLost):
            await txn.commit()
        await second_gets_it
        async with Database(second_client, prefix=prefix).begin(write=True, guard=second) as txn2:
            notes[txn2, 'owner'] = 'second'
        await second.release()
    async with db.begin() as txn:
        assert await notes[txn, 'owner'] == 'second'
    await first.release()


@pytest_twisted.ensureDeferred
async def test_paused_holder_without_the_fence_writes_inside_the_next_tenure(etcd, reactor, client, prefix):
    """The same pause without the fence: the stale holder's write lands after etcd deleted its key,
    that is, while the lock belongs to the next holder - mutual exclusion is gone."""
    name, target = prefix + b'lock', prefix + b'target'
    async with connected(reactor, etcd.url) as second_client:
        first = await client.lock(name, ttl=1)
        created = first.revision
        second = Lock(second_client, name, ttl=30)
        second_gets_it = second.acquire(timeout=30)
        stall_reactor(until=lambda: not _key_exists(etcd.url, first.key), timeout=20)
        assert first.held
        stale = await client.submit(Transaction(success=[OpSet(target, b'first')]))
        await second_gets_it
        assert await _deleted_at(client, first.key, created) < stale.header.revision
        await second.release()
    await first.release()


async def _deleted_at(client, key, since):
    """The revision at which etcd deleted ``key`` (a watch from ``since``, bounded in time)."""
    deleted = Deferred()

    def on_event(event):
        if event.type == 'DELETE' and not deleted.called:
            deleted.callback(event.kv.mod_revision)
    watching = client.watch(key, on_event, start_revision=since)
    try:
        return await deleted.addTimeout(10, client.reactor)
    finally:
        watching.cancel()


@pytest_twisted.ensureDeferred
async def test_election_fence(etcd, reactor, client, prefix):
    db = Database(client, prefix=prefix)
    notes = _notes()
    alice = Election(client, prefix + b'election', ttl=5)
    await alice.campaign(b'alice')
    fence = alice.fence
    assert fence.operand == alice.revision
    async with db.begin(write=True, guard=alice) as txn:
        notes[txn, 'leader'] = 'alice'
    await alice.resign()
    with pytest.raises(NotLeader, match='does not lead'):
        alice.fence
    assert alice.revision is None
    # A fence taken while leading fails in etcd once the leadership is gone.
    with pytest.raises(Failed):
        await client.submit(Transaction(compare=[fence], success=[OpSet(prefix + b'x', b'late')]))
    bob = Election(client, prefix + b'election', ttl=30)
    await bob.campaign(b'bob')
    async with connected(reactor, etcd.url) as operator:
        txn = db.begin(write=True, guard=bob)
        notes[txn, 'leader'] = 'bob'
        await _revoke_from_outside(operator, bob.lease.lease_id)
        with pytest.raises(NotLeader, match="election .*is not held any more"):
            await txn.commit()
    assert await _value(client, prefix + b'x') is None
    async with db.begin() as txn:
        assert await notes[txn, 'leader'] == 'alice'
    assert isinstance(NotLeader('x'), LockLost) and not isinstance(NotLeader('x'), TransactionConflict)
    await bob.resign()
    assert not (await client.get(KeySet(prefix + b'election/', prefix=True))).kvs
