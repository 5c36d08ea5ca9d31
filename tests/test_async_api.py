"""One asynchronous idiom: every public asynchronous method returns a Deferred (runs at once, awaitable,
usable under inlineCallbacks, cancellable); iterators are ``async for``, scopes ``async with``.

The first test walks the public API; the others check, against a real etcd, the spellings that were
traps when some methods were coroutines: ``await client.lock(name)``, ``timeout=``, a ``release()``
nobody awaits, ``async with client.lock(...)`` / ``client.lease(...)``, and Election's methods.
"""

import importlib
import inspect

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks

import txaioetcd
from txaioetcd import _defer
from txaioetcd import KeySet, LockTimeout, Timeout, pmap
from txaioetcd.recipes.election import Election
from txaioetcd.recipes.lock import Lock
from txaioetcd.recipes.paths import children, delete_prefix

from _loopback import connected, until, within

# Modules whose public names users call; every class and function in them is walked.
MODULES = ('txaioetcd', 'txaioetcd.aio', 'txaioetcd.pmap', 'txaioetcd.database', 'txaioetcd.recipes.lock',
           'txaioetcd.recipes.election', 'txaioetcd.recipes.mirror', 'txaioetcd.recipes.table_mirror',
           'txaioetcd.recipes.paths', 'txaioetcd.commits', 'txaioetcd.commits.web')

# Asynchronous iterators (``async for``) - the one other shape a public method may have.
ITERATORS = {('PersistentMap', 'select'), ('Index', 'select_records'),
             ('DbTransaction', 'scan_records'), ('CommitStore', 'history'), ('CommitMirror', 'commits')}

# Protocol methods that the language itself awaits.
PROTOCOL = {'__aenter__', '__aexit__', '__anext__'}


def _public_objects():
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, '__all__', ()):
            obj = getattr(module, name)
            if getattr(obj, '__module__', '').startswith('txaioetcd'):
                yield module_name, name, obj


def _methods(cls):
    for name in dir(cls):
        if name.startswith('_') and name not in PROTOCOL:
            continue
        attribute = inspect.getattr_static(cls, name)
        if isinstance(attribute, (staticmethod, classmethod)):
            attribute = attribute.__func__
        if inspect.isfunction(attribute):
            owner = next(k for k in cls.__mro__ if name in vars(k))
            yield owner.__name__, name, attribute


def test_no_public_method_is_a_coroutine_function():
    walked, wrong = 0, []
    for module_name, name, obj in _public_objects():
        functions = list(_methods(obj)) if inspect.isclass(obj) else [(module_name, name, obj)]
        for owner, method, fn in functions:
            walked += 1
            if method in PROTOCOL:
                continue
            if inspect.isasyncgenfunction(fn):
                if (owner, method) not in ITERATORS:
                    wrong.append(f'{owner}.{method} is an async generator but not a listed iterator')
            elif inspect.iscoroutinefunction(fn):
                wrong.append(f'{owner}.{method} is a coroutine function: it must return a Deferred')
    assert walked > 200, walked          # the walk really covered the API
    assert wrong == []


@pytest_twisted.ensureDeferred
async def test_public_calls_return_deferreds(etcd, reactor, client, prefix):
    """A sample of every kind of call, each checked for a Deferred before it is awaited - the package's
    own Deferred, which an asyncio Task can await too (txaioetcd.aio hands out these same objects)."""
    def deferred(result):
        assert isinstance(result, _defer.Deferred), result
        return result

    await deferred(client.set(prefix + b'a/x', b'1'))
    await deferred(client.get(prefix + b'a/x'))
    await deferred(client.status())
    lease = await deferred(client.lease(5))
    await deferred(lease.refresh())
    await deferred(lease.revoke())
    lock = await deferred(client.lock(prefix + b'lock'))
    await deferred(lock.release())
    election = client.election(prefix + b'election')
    await deferred(election.campaign(b'me'))
    await deferred(election.proclaim(b'me again'))
    assert await deferred(election.leader()) == (election.key, b'me again')
    await deferred(election.resign())
    assert await deferred(children(client, prefix)) == [b'a']
    assert await deferred(delete_prefix(client, prefix + b'a/')) == 1

    db = txaioetcd.Database(client, prefix=prefix)
    users = pmap.MapStringCbor(1)
    schema = pmap.Schema(users=users)
    await deferred(db.attach(schema))
    await deferred(db.status())
    txn = db.begin(write=True)
    assert await deferred(users[txn, 'alice']) is None
    assert await deferred(users.exists(txn, 'alice')) is False
    assert await deferred(users.count(txn)) == 0
    users[txn, 'alice'] = {'visits': 1}
    await deferred(txn.commit())
    assert await deferred(db.run(lambda txn: users[txn, 'alice'])) == {'visits': 1}

    scoped = db.begin(write=True)
    assert await deferred(scoped.__aenter__()) is scoped
    users[scoped, 'bob'] = {'visits': 2}
    assert await deferred(scoped.__aexit__(None, None, None)) is False
    assert scoped.state == 'committed'
    async with deferred(client.lease(5)) as lease:
        assert await deferred(lease.__aenter__()) is lease
    stream = client.watch_events(prefix + b'w')
    await deferred(stream.ready())
    await client.set(prefix + b'w', b'1')
    assert (await deferred(stream.__anext__())).kv.value == b'1'
    stream.cancel()
    second = client.election(prefix + b'election2')
    await second.campaign(b'observed')
    observer = second.observe()
    assert await deferred(observer.__anext__()) == b'observed'
    observer.cancel()
    await second.resign()

    mirror = users.mirror(db)
    await deferred(mirror.ready())
    watching = client.watch(prefix + b'w', lambda event: None)
    await deferred(watching.ready())
    watching.cancel()
    mirror.close()


@pytest_twisted.ensureDeferred
async def test_await_client_lock_acquires_and_a_second_contender_waits(etcd, reactor, client, prefix):
    name = prefix + b'mylock'
    lock = await client.lock(name)                       # the earlier README's spelling
    assert isinstance(lock, Lock) and lock.held
    assert [kv.key for kv in (await client.get(KeySet(name + b'/', prefix=True))).kvs] == [lock.key]
    async with connected(reactor, etcd.url) as other:
        second = other.lock(name)                        # starts at once, waits behind the holder
        await until(reactor, lambda: _count_is(client, name, 2), what='the second contender queued')
        assert not second.called
        lock.release()                                   # not awaited: it runs all the same
        later = await second
        assert later.held and not lock.held
        await later.release()
    assert await client.count(KeySet(name + b'/', prefix=True)) == 0


@pytest_twisted.ensureDeferred
async def test_lock_timeout_is_a_timeout_and_leaves_nothing(etcd, reactor, client, prefix):
    name = prefix + b'mylock'
    before = set(await client.leases())
    holder = await client.lock(name, ttl=5, timeout=10)
    async with connected(reactor, etcd.url) as other:
        with pytest.raises(LockTimeout) as raised:
            await other.lock(name, timeout=0.3)
    assert isinstance(raised.value, Timeout)
    assert 'not acquired within 0.3 s' in str(raised.value) and repr(name) in str(raised.value)
    keys = await client.get(KeySet(name + b'/', prefix=True))
    assert [kv.key for kv in keys.kvs] == [holder.key]
    assert set(await client.leases()) - before == {holder.lease.lease_id}
    await holder.release()


@pytest_twisted.ensureDeferred
async def test_async_with_client_lock_and_client_lease(etcd, reactor, client, prefix):
    name = prefix + b'mylock'
    async with client.lock(name, timeout=5) as held:
        assert held.held
        key = held.key
        assert (await client.get(key)).kvs
    assert not held.held and (await client.get(key)).kvs == []

    async with client.lease(5) as lease:
        await client.set(prefix + b'leased', b'v', lease=lease)
        assert lease.state == 'alive'
    assert lease.state == 'revoked' and (await client.get(prefix + b'leased')).kvs == []

    # A Lock already held, used as a scope: entered without acquiring again, released on exit.
    lock = await client.lock(name)
    async with lock as same:
        assert same is lock and lock.held
    assert not lock.held and await client.count(KeySet(name + b'/', prefix=True)) == 0


@pytest_twisted.ensureDeferred
async def test_cancelling_a_lock_attempt_fires_after_it_left_nothing_behind(etcd, reactor, client, prefix):
    name = prefix + b'mylock'
    holder = await client.lock(name)
    async with connected(reactor, etcd.url) as other:
        attempt = other.lock(name)
        await until(reactor, lambda: _count_is(client, name, 2), what='the attempt queued')
        attempt.cancel()
        with pytest.raises(CancelledError):
            await attempt
        # It fired only once its key was gone: nothing to wait for here.
        assert await client.count(KeySet(name + b'/', prefix=True)) == 1
    await holder.release()


async def _count_is(client, name, count):
    return await client.count(KeySet(name + b'/', prefix=True)) == count


@pytest_twisted.ensureDeferred
async def test_inline_callbacks_style(etcd, reactor, client, prefix):
    @inlineCallbacks
    def work():
        lock = yield client.lock(prefix + b'lock', timeout=5)
        yield client.set(prefix + b'k', b'v')
        election = Election(client, prefix + b'election')
        yield election.campaign(b'me')
        leader = yield election.leader()
        yield election.resign()
        yield lock.release()
        return leader

    key, value = await work()
    assert value == b'me' and key.startswith(prefix + b'election/')
    assert await client.count(KeySet(prefix, prefix=True)) == 1      # only b'k' is left


@pytest_twisted.ensureDeferred
async def test_unawaited_release_and_resign_still_run(etcd, reactor, client, prefix):
    lock = Lock(client, prefix + b'lock')
    await lock.acquire()
    election = client.election(prefix + b'election')
    await election.campaign(b'me')
    releasing, resigning = lock.release(), election.resign()      # fire and forget
    await until(reactor, lambda: _count_is(client, prefix + b'lock', 0), what='the lock key deleted')
    await until(reactor, lambda: _count_is(client, prefix + b'election', 0), what='the candidate key deleted')
    # The leases are revoked after the keys are gone; nothing is left once both Deferreds fired.
    await within(reactor, releasing, 5, 'the release')
    await within(reactor, resigning, 5, 'the resignation')
    assert lock.lease is None and election.lease is None
