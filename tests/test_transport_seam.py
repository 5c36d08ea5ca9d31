"""The seam between the client and its transport: everything the client uses is declared in
ITransport, requests are plain data, and composite calls pass one deadline down.

The client runs here on a real transport seen through ITransport only (any other attribute raises),
against a real etcd, through KV, transactions, watches, leases, locks, mirrors and maintenance.
"""

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txaioetcd import (Client, CommitOutcomeUnknown, Database, KeySet, OpGet, OpSet, OutcomeUnknown, Timeout,
                       Transaction, pmap, rpc)
from txaioetcd.recipes.mirror import Mirror
from txaioetcd.retry import Backoff, Deadline
from txaioetcd.transport import GatewayTransport, ITransport

from _loopback import within

DECLARED = set(ITransport.names(all=True))


@implementer(ITransport)
class OnlyDeclared:
    """A transport seen through ITransport alone: using anything it does not declare raises."""

    def __init__(self, inner):
        object.__setattr__(self, '_inner', inner)

    def __getattr__(self, name):
        if name not in DECLARED:
            raise AttributeError(f'the client used {name!r}, which ITransport does not declare')
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        if name not in DECLARED:
            raise AttributeError(f'the client set {name!r}, which ITransport does not declare')
        setattr(self._inner, name, value)


def test_the_interface_declares_what_the_client_uses():
    assert {'call', 'watch', 'endpoints', 'current_endpoint', 'connection', 'lazy', 'endpoint_failed',
            'add_endpoint', 'set_token', 'close'} <= DECLARED
    verifyObject(ITransport, GatewayTransport(None, ['http://127.0.0.1:1']))


@pytest_twisted.ensureDeferred
async def test_the_client_needs_nothing_but_the_interface(etcd, reactor, prefix):
    transport = OnlyDeclared(GatewayTransport(reactor, [etcd.url]))
    client = Client(reactor, transport=transport, lazy=True, timeout=10)
    try:
        seen, third = [], Deferred()

        def on_change(event):
            seen.append(event.key)
            if len(seen) == 3:
                third.callback(None)

        watching = client.watch(KeySet(prefix, prefix=True), on_change)
        await watching.ready()
        await client.set(prefix + b'a', b'1')
        await client.submit(Transaction(success=[OpSet(prefix + b'b', b'2'), OpGet(prefix + b'a')]))
        lease = await client.lease(5)
        await lease.refresh()
        await client.set(prefix + b'c', b'3', lease=lease)
        await within(reactor, third, 5, 'three events')
        assert seen == [prefix + b'a', prefix + b'b', prefix + b'c']
        assert await lease.keys() == [prefix + b'c']
        await lease.revoke()
        watching.cancel()
        lock = await client.lock(prefix + b'lock', timeout=5)
        await lock.release()
        mirror = Mirror(client, KeySet(prefix, prefix=True))
        await mirror.ready()
        assert list(mirror) == [prefix + b'a', prefix + b'b']
        mirror.close()
        assert (await client.status()).version.startswith('3.')
        assert client.state == 'connected' and client.endpoint == etcd.url
        await client.compact((await client.status()).header.revision)
    finally:
        await client.close()


def test_requests_are_plain_data():
    create = rpc.WatchCreate(KeySet(b'p', prefix=True), start_revision=5, prev_kv=True)
    assert (create.rpc, create.idempotent, create.describe()) == ('Watch/Watch', True, "watch of prefix b'p'")
    grant = rpc.LeaseGrant(10)
    assert (grant.rpc, grant.idempotent, grant.ttl, grant.describe()) == (
        'Lease/LeaseGrant', False, 10, 'grant of a 10 s lease')
    assert 'secret' not in repr(rpc.Authenticate('alice', 'secret'))
    get = OpGet(b'k', revision=3, keys_only=True)
    assert (get.keyset.key, get.revision, get.keys_only, get.limit) == (b'k', 3, True, 0)
    with pytest.raises(AttributeError):
        get.request      # no wire format in an op


def test_backoff_grows_caps_and_jitters():
    policy = Backoff(0.1, 1.0)
    for attempt, limit in ((0, 0.1), (1, 0.2), (3, 0.8), (4, 1.0), (1000, 1.0)):
        pauses = [policy.pause(attempt) for _ in range(50)]
        assert all(limit / 2 <= pause <= limit for pause in pauses), (attempt, pauses)
    assert Backoff(0.1, 1.0, jitter=1.0).pause(2) == pytest.approx(0.4)
    assert all(0 <= Backoff(0.1, 1.0, jitter=0.0).pause(5) <= 1.0 for _ in range(20))
    with pytest.raises(ValueError):
        Backoff(1.0, 0.5)


def test_deadline_gives_each_request_what_is_left(reactor):
    class Clock:
        now = 100.0

        def seconds(self):
            return self.now
    clock = Clock()
    deadline = Deadline(clock, 5.0)
    assert deadline.bound(10.0) == 5.0 and deadline.bound(2.0) == 2.0 and not deadline.expired
    clock.now = 104.0
    assert deadline.remaining() == pytest.approx(1.0) and deadline.bound(10.0) == pytest.approx(1.0)
    clock.now = 106.0
    assert deadline.remaining() == 0.0 and deadline.expired
    assert Deadline(clock, None).bound(7.0) == 7.0 and Deadline(clock, None).remaining() is None


@pytest_twisted.ensureDeferred
async def test_db_run_timeout_bounds_all_attempts(client, reactor, prefix):
    db = Database(client, prefix=prefix)
    counter = pmap.MapStringOid(1)
    attempts = []

    async def always_conflicts(txn):
        attempts.append(1)
        value = await counter[txn, 'n'] or 0
        await client.set(prefix + counter.encode_key('n'), b'\0' * 8)     # another writer, every time
        counter[txn, 'n'] = value + 1

    started = reactor.seconds()
    with pytest.raises((Timeout, CommitOutcomeUnknown)) as raised:
        await db.run(always_conflicts, retries=1000, backoff=0.05, max_backoff=0.05, timeout=0.5)
    assert 1 < len(attempts) < 1000 and reactor.seconds() - started < 5
    if isinstance(raised.value, CommitOutcomeUnknown):
        # The deadline passed while the last commit was on its way: its outcome is honestly unknown
        # (a commit is not even sent with under 20 ms left, but a loaded machine can take longer).
        lost = raised.value.cause
        assert isinstance(lost, OutcomeUnknown) and isinstance(lost.cause, Timeout), repr(lost)
    else:
        assert str(raised.value).startswith('db.run: no attempt committed within 0.5 s')
        # The last attempt conflicted, its read got the last of the deadline and ran out, or too
        # little was left to send its commit.
        assert any(why in str(raised.value) for why in ('conflict', 'no answer within', 'too little to commit'))


@pytest_twisted.ensureDeferred
async def test_mirror_start_timeout_ends_the_mirror(reactor, dead_url_client):
    mirror = Mirror(dead_url_client, KeySet(b'x', prefix=True), timeout=0.5)
    with pytest.raises(Timeout, match='did not load and start watching within 0.5 s'):
        await within(reactor, mirror.ready(), 10, 'the mirror to give up')
    with pytest.raises(Timeout):
        await mirror.done
    assert mirror.state == 'closed'


@pytest.fixture
def dead_url_client(reactor):
    """A lazy client whose endpoint refuses connections (a port held bound, never listening)."""
    import socket
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    client = Client(reactor, url=f'http://127.0.0.1:{sock.getsockname()[1]}', lazy=True, timeout=5)
    yield client
    client.close()
    sock.close()
