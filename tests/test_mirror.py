"""Mirrors (txaioetcd.recipes.mirror) against real etcd: the copy always equals a fresh range read -
after thousands of random changes, across server restarts, and after history was compacted while the
mirror was cut off (a small TCP proxy written here does the cutting)."""

import random
import uuid
from urllib.parse import urlparse

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from txaioetcd import Database, KeySet, OpDel, OpSet, Transaction, pmap
from txaioetcd.errors import (ClientClosed, Compacted, ConnectionFailed, ConnectionLost, OutcomeUnknown,
                             Timeout, Unavailable)
from txaioetcd.recipes.mirror import Mirror
from txaioetcd.recipes.paths import PathCache, children, delete_prefix

from _loopback import connected, until


# -- helpers

def _until(reactor, predicate, timeout=15.0):
    return until(reactor, predicate, timeout)


async def _fresh(client, keyset):
    """The range as a fresh read sees it: {key: KeyValue}."""
    result = await client.get(keyset)
    assert not result.more
    return {kv.key: kv for kv in result.kvs}


def _copy(mirror):
    return {key: mirror.kv(key) for key in mirror}


async def _retrying(reactor, call, *args, **kwargs):
    """A write, again while the server restarts (a lost answer just means: write it again)."""
    for attempt in range(100):
        try:
            return await call(*args, **kwargs)
        except (OutcomeUnknown, ConnectionLost, ConnectionFailed, Timeout, Unavailable):
            await deferLater(reactor, 0.05)
    raise AssertionError('the server did not come back')


def _random_op(rng, prefix, names):
    key = prefix + rng.choice(names)
    roll = rng.random()
    if roll < 0.6:
        return 'set', key, rng.randbytes(rng.randrange(0, 200))
    if roll < 0.9:
        return 'delete', key, None
    # A transaction: several keys changed at one revision.
    keys = sorted({prefix + rng.choice(names) for _ in range(4)})
    ops = [OpSet(k, rng.randbytes(8)) if rng.random() < 0.7 else OpDel(k) for k in keys]
    return 'txn', ops, None


async def _run_ops(reactor, client, ops):
    async def one(kind, target, value):
        if kind == 'set':
            return await _retrying(reactor, client.set, target, value)
        if kind == 'delete':
            return await _retrying(reactor, client.delete, target)
        return await _retrying(reactor, client.submit, Transaction(success=target))
    await defer.gatherResults([defer.ensureDeferred(one(*op)) for op in ops], consumeErrors=True)


# -- reading

@pytest_twisted.ensureDeferred
async def test_mirror_reads_like_a_mapping(client, reactor, prefix):
    for name in (b'b', b'a', b'c/1', b'c/2'):
        await client.set(prefix + name, b'value of ' + name)
    await client.set(prefix[:-1], b'not in the range')
    mirror = Mirror(client, KeySet(prefix, prefix=True), page_size=2)
    try:
        assert await mirror.ready() is mirror
        assert len(mirror) == 4
        assert list(mirror) == [prefix + n for n in (b'a', b'b', b'c/1', b'c/2')]
        assert mirror[prefix + b'a'] == b'value of a'
        assert mirror.get(prefix + b'zz') is None and mirror.get(prefix + b'zz', b'-') == b'-'
        assert prefix + b'b' in mirror and prefix + b'zz' not in mirror
        with pytest.raises(KeyError):
            mirror[prefix + b'zz']
        with pytest.raises(TypeError):
            mirror.get('a str key')
        assert mirror.items(prefix + b'c/') == [(prefix + b'c/1', b'value of c/1'),
                                                (prefix + b'c/2', b'value of c/2')]
        assert mirror.keys(prefix + b'x') == []
        kv = mirror.kv(prefix + b'b')
        fresh = await _fresh(client, KeySet(prefix, prefix=True))
        assert kv == fresh[prefix + b'b']
        assert mirror.kv(prefix + b'zz') is None
        assert mirror.revision == (await client.get(prefix + b'a')).header.revision

        written = await client.set(prefix + b'aa', b'new')
        gone = await client.delete(prefix + b'b')
        await mirror.wait_for(gone.header.revision, timeout=10)
        assert mirror.revision == gone.header.revision > written.revision
        assert list(mirror) == [prefix + n for n in (b'a', b'aa', b'c/1', b'c/2')]
        assert _copy(mirror) == await _fresh(client, KeySet(prefix, prefix=True))
    finally:
        mirror.close()
    assert await mirror.done is None


@pytest_twisted.ensureDeferred
async def test_callbacks_fire_in_order_with_the_previous_value(client, reactor, prefix):
    first, second, seen = [], [], []

    def broken(event):
        raise RuntimeError('a callback that fails does not stop the others')

    mirror = Mirror(client, KeySet(prefix, prefix=True), first.append)
    mirror.subscribe(broken)
    mirror.subscribe(second.append)
    mirror.subscribe(lambda event: seen.append(mirror.get(event.key)))
    await mirror.ready()
    try:
        expected = []
        for i in range(10):
            key = prefix + b'k%d' % (i % 3)
            await client.set(key, b'v%d' % i)
            expected.append(('PUT', key, b'v%d' % i))
        await client.submit(Transaction(success=[OpSet(prefix + b'k0', b't0'), OpDel(prefix + b'k1'),
                                                 OpSet(prefix + b'k9', b't9')]))
        expected += [('PUT', prefix + b'k0', b't0'), ('DELETE', prefix + b'k1', b''),
                     ('PUT', prefix + b'k9', b't9')]
        last = await client.delete(prefix + b'k2')
        expected.append(('DELETE', prefix + b'k2', b''))
        await mirror.wait_for(last.header.revision, timeout=10)

        assert [(e.type, e.key, e.kv.value) for e in first] == expected
        assert second == first
        revisions = [e.revision for e in first]
        assert revisions == sorted(revisions) and revisions[-4] == revisions[-3] == revisions[-2]
        # prev_kv comes from the copy: the value before each change.
        assert first[0].prev_kv is None and first[3].prev_kv.value == b'v0'
        assert first[11].prev_kv.value == b'v7' and first[11].prev_kv.key == prefix + b'k1'
        # Callbacks run after the change was applied.
        assert seen == [value if kind == 'PUT' else None for kind, _, value in expected]
        mirror.unsubscribe(second.append)
        await mirror.wait_for((await client.set(prefix + b'k0', b'late')).revision, timeout=10)
        assert len(first) == len(second) + 1
    finally:
        mirror.close()


@pytest_twisted.ensureDeferred
async def test_close_stops_following(client, reactor, prefix):
    mirror = Mirror(client, KeySet(prefix, prefix=True))
    await mirror.ready()
    await mirror.wait_for((await client.set(prefix + b'a', b'1')).revision, timeout=10)
    mirror.close()
    assert await mirror.done is None and mirror.state == 'closed'
    await client.set(prefix + b'b', b'2')
    await deferLater(reactor, 0.2)
    assert list(mirror) == [prefix + b'a']           # still readable, no longer updated
    with pytest.raises(ClientClosed):
        await mirror.wait_for(10 ** 9)

    loading = Mirror(client, KeySet(prefix, prefix=True))
    ready = loading.ready()
    loading.close()                                   # before the snapshot arrived
    with pytest.raises(ClientClosed):
        await ready
    assert await loading.done is None


# -- random changes, restarts and compaction

@pytest_twisted.ensureDeferred
async def test_mirror_equals_a_fresh_read_after_random_changes_and_restarts(etcd_factory, reactor):
    server = etcd_factory()
    rng = random.Random(20240611)
    prefix = b'random/'
    names = [b'%03d' % i for i in range(400)]
    keyset = KeySet(prefix, prefix=True)
    async with connected(reactor, server.url, timeout=5) as writer, \
            connected(reactor, server.url, timeout=5) as reader:
        await _run_ops(reactor, writer, [('set', prefix + n, b'initial') for n in names[::2]])
        resynced = []
        mirror = Mirror(reader, keyset, on_resync=resynced.append, page_size=50)
        await mirror.ready()
        try:
            for part in range(3):
                if part:                           # restart the server, then write on
                    server.stop()
                    await deferLater(reactor, 0.2)
                    server.start()
                for _ in range(50):                # 3 x 50 x 34 = 5,100 changes
                    await _run_ops(reactor, writer, [_random_op(rng, prefix, names) for _ in range(34)])
                mark = await _retrying(reactor, writer.set, b'random/~mark', b'%d' % part)
                await mirror.wait_for(mark.revision, timeout=20)
                assert _copy(mirror) == await _fresh(writer, keyset)
            assert mirror.resyncs == 0 and resynced == [] and mirror.state == 'following'
            assert len(mirror) > 50
        finally:
            mirror.close()


class _Front(protocol.Protocol):
    def __init__(self, proxy):
        self.proxy = proxy
        self.back = None
        self.queue = []

    def connectionMade(self):
        if self.proxy.cut_off:
            self.transport.abortConnection()
            return
        self.proxy.fronts.add(self)
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.host, self.proxy.port)
        connectProtocol(endpoint, _Back(self)).addCallbacks(self._connected,
                                                            lambda _: self.transport.abortConnection())

    def _connected(self, back):
        self.back = back
        for chunk in self.queue:
            back.transport.write(chunk)
        self.queue = []

    def dataReceived(self, data):
        if self.back is None:
            self.queue.append(data)
        else:
            self.back.transport.write(data)

    def connectionLost(self, reason):
        self.proxy.fronts.discard(self)
        if self.back is not None:
            self.back.transport.abortConnection()


class _Back(protocol.Protocol):
    def __init__(self, front):
        self.front = front

    def dataReceived(self, data):
        self.front.transport.write(data)

    def connectionLost(self, reason):
        self.front.transport.loseConnection()


class _CutProxy(protocol.Factory):
    """A TCP proxy in front of etcd; ``cut()`` drops every connection and hangs up on new ones until
    ``mend()``: what a network partition looks like to the client behind it."""

    def __init__(self, reactor, target_url):
        target = urlparse(target_url)
        self.reactor, self.host, self.port = reactor, target.hostname, target.port
        self.cut_off = False
        self.fronts = set()
        self.listening = reactor.listenTCP(0, self, interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.listening.getHost().port}'

    def buildProtocol(self, addr):
        return _Front(self)

    def cut(self):
        self.cut_off = True
        for front in list(self.fronts):
            front.transport.abortConnection()

    def mend(self):
        self.cut_off = False

    async def close(self):
        self.cut()
        await self.listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_resync_after_history_was_compacted_while_cut_off(etcd_factory, reactor):
    server = etcd_factory()
    proxy = _CutProxy(reactor, server.url)
    prefix = b'resync/'
    keyset = KeySet(prefix, prefix=True)
    names = [b'k%02d' % i for i in range(50)]
    events, resynced = [], []
    try:
        async with connected(reactor, server.url, timeout=5) as direct, \
                connected(reactor, proxy.url, timeout=5) as behind_proxy:
            for name in names:
                await direct.set(prefix + name, b'old ' + name)
            mirror = Mirror(behind_proxy, keyset, events.append, on_resync=resynced.append)
            await mirror.ready()
            await mirror.wait_for((await direct.set(prefix + b'k49', b'seen')).revision, timeout=10)
            before = _copy(mirror)
            events.clear()

            proxy.cut()
            await deferLater(reactor, 0.3)
            for name in names[:10]:
                await direct.set(prefix + name, b'new ' + name)
            for name in names[10:20]:
                await direct.delete(prefix + name)
            for i in range(5):
                await direct.set(prefix + b'n%d' % i, b'added')
            await direct.set(prefix + b'k20', b'new k20')
            await direct.set(prefix + b'k20', b'old k20')            # same value, newer revision
            last = await direct.set(b'elsewhere', b'not mirrored')
            await direct.compact(last.revision, physical=True)
            assert mirror.resyncs == 0 and len(mirror) == 50          # stale, still readable

            proxy.mend()
            await _until(reactor, lambda: mirror.resyncs == 1)
            assert len(resynced) == 1 and isinstance(resynced[0], Compacted)
            assert resynced[0].compact_revision == last.revision
            assert mirror.revision >= last.revision
            assert _copy(mirror) == await _fresh(direct, keyset)

            # One synthetic event per difference, in key order, with the values before.
            changed = sorted([prefix + n for n in names[:10] + [b'k20']] +
                             [prefix + b'n%d' % i for i in range(5)] + [prefix + n for n in names[10:20]])
            assert [e.key for e in events] == changed
            for event in events:
                assert event.prev_kv == before.get(event.key)
                if event.type == 'PUT':
                    assert event.kv == mirror.kv(event.key)
                else:
                    assert event.key not in mirror and event.kv.mod_revision == mirror.revision
            assert {e.key for e in events if e.type == 'DELETE'} == {prefix + n for n in names[10:20]}

            # And it follows again.
            written = await direct.set(prefix + b'after', b'1')
            await mirror.wait_for(written.revision, timeout=10)
            assert events[-1].key == prefix + b'after' and mirror.resyncs == 1
            mirror.close()
            await mirror.done
    finally:
        await proxy.close()


# -- tables and indexes

class User:
    def __init__(self, oid, name, email):
        self.oid, self.name, self.email = oid, name, email

    def marshal(self):
        return {'oid': self.oid.bytes, 'name': self.name, 'email': self.email}

    @staticmethod
    def parse(data):
        return User(uuid.UUID(bytes=data['oid']), data['name'], data['email'])


def _users():
    users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse, name='users')
    users.attach_index('by_email', pmap.MapStringUuid(2, name='by_email'), lambda u: u.email)
    users.attach_index('by_name', pmap.MapStringUuidUuid(3, name='by_name'), lambda u: u.name,
                       unique=False)
    return users


@pytest_twisted.ensureDeferred
async def test_table_mirror_gives_decoded_objects(client, reactor, prefix):
    users = _users()
    db = Database(client, prefix=prefix)
    await client.set(prefix[:-1] + b'\x00\x01outside', b'x')      # not under the db prefix
    people = [User(uuid.UUID(int=i + 1), name, f'{name}{i}@example.com')
              for i, name in enumerate(['bob', 'alice', 'bob', 'carol'])]
    async with db.begin(write=True) as txn:
        for user in people:
            users[txn, user.oid] = user
    changes = []
    mirror = users.mirror(db, on_change=lambda *change: changes.append(change))
    by_email = users.mirror(db, index='by_email')
    by_name = users.mirror(db, index='by_name')
    try:
        await defer.gatherResults([mirror.ready(), by_email.ready(), by_name.ready()])
        assert len(mirror) == 4 and list(mirror) == [u.oid for u in people]
        assert mirror[people[1].oid].name == 'alice'
        assert mirror[people[1].oid] is mirror[people[1].oid]          # decoded once, then kept
        assert mirror.get(uuid.UUID(int=99)) is None and uuid.UUID(int=99) not in mirror
        with pytest.raises(KeyError):
            mirror[uuid.UUID(int=99)]
        with pytest.raises(TypeError):
            mirror['not a uuid']
        assert [(k, u.email) for k, u in mirror.items()] == [(u.oid, u.email) for u in people]
        assert mirror.kv(people[0].oid).version == 1

        assert by_email['alice1@example.com'] == people[1].oid
        assert 'nobody@example.com' not in by_email and len(by_email) == 4
        assert list(by_email) == sorted(u.email for u in people)
        assert by_name['bob'] == [people[0].oid, people[2].oid]
        assert by_name.get('dave') is None and list(by_name) == ['alice', 'bob', 'carol']
        assert len(by_name) == 3
        assert by_name.items()[0] == ('alice', [people[1].oid])

        index_changes = []
        by_name.subscribe(lambda *change: index_changes.append(change))
        async with db.begin(write=True) as txn:
            users[txn, people[0].oid] = User(people[0].oid, 'robert', 'bob0@example.com')
            del users[txn, people[3].oid]
        revision = txn.committed_revision
        await defer.gatherResults([m.wait_for(revision, timeout=10) for m in (mirror, by_name)])

        assert mirror[people[0].oid].name == 'robert'                  # the cache was dropped
        assert people[3].oid not in mirror and len(mirror) == 3
        assert [(key, old and old.name, new and new.name) for key, old, new in changes] == [
            (people[0].oid, 'bob', 'robert'), (people[3].oid, 'carol', None)]
        assert by_name['bob'] == [people[2].oid] and by_name['robert'] == [people[0].oid]
        assert 'carol' not in by_name
        assert sorted(index_changes) == sorted([('bob', people[0].oid, None),
                                                ('carol', people[3].oid, None),
                                                ('robert', None, people[0].oid)])
        await by_email.wait_for(revision, timeout=10)
        assert 'carol3@example.com' not in by_email
        with pytest.raises(KeyError):
            users.mirror(db, index='by_nothing')
    finally:
        for m in (mirror, by_email, by_name):
            m.close()


# -- keys as paths

@pytest_twisted.ensureDeferred
async def test_children_delete_prefix_and_path_cache(client, reactor, prefix):
    app = prefix + b'app'
    for path in (b'/a', b'/a-b', b'/a/x', b'/b/c', b'/b/d/e', b'/b/d/f', b'/c'):
        await client.set(app + path, path)
    await client.set(prefix + b'apple', b'not below app')
    for page_size in (1, 2, 1000):
        assert await children(client, app, page_size=page_size) == [b'a', b'a-b', b'b', b'c']
        assert await children(client, app + b'/', page_size=page_size) == [b'a', b'a-b', b'b', b'c']
    assert await children(client, app + b'/b') == [b'c', b'd']
    assert await children(client, app + b'/c') == []
    assert await children(client, app + b'/nothing') == []

    cache = PathCache(client, app)
    try:
        assert await cache.ready() is cache
        assert cache.get(app + b'/b/d/e') == b'/b/d/e' and cache.get(app + b'/b') is None
        assert cache.exists(app + b'/b') and cache.exists(app + b'/b/d/') and cache.exists(app + b'/c')
        assert not cache.exists(app + b'/b/z') and not cache.exists(app + b'/a-')
        assert cache.children(app) == [b'a', b'a-b', b'b', b'c']
        assert cache.children(app + b'/b/') == [b'c', b'd'] and cache.children(app + b'/b/d') == [b'e', b'f']
        assert cache.children(app + b'/c') == [] and cache.get(prefix + b'apple') is None

        assert await delete_prefix(client, app + b'/b/') == 3
        written = await client.set(app + b'/d/1', b'1')
        await cache.wait_for(written.revision, timeout=10)
        assert cache.children(app) == [b'a', b'a-b', b'c', b'd']
        assert not cache.exists(app + b'/b')
        assert await children(client, app) == [b'a', b'a-b', b'c', b'd']
        with pytest.raises(ValueError):
            await delete_prefix(client, b'')
    finally:
        cache.close()
