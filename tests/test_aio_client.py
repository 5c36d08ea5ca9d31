"""The asyncio face (``txaioetcd.aio``) against real etcd, with no Twisted reactor running.

Every test is a plain function whose coroutine runs in a fresh ``asyncio.run`` (tests/_aio.py): the
global reactor is never started nor needed. What this proves:

- the calls of ``aio.Client`` (KV, transactions, watches in both forms, leases, locks, elections)
  work from plain asyncio Tasks and give the same results and errors as on Twisted;
- a watch resumes across a restart of its etcd without losing or repeating an event;
- cancelling a Task (``task.cancel()``, ``asyncio.wait_for``) cancels the call underneath, a lock
  attempt given up so leaves no key behind, and the library's own deadlines raise its own errors
  (``Timeout``, ``LockTimeout``, ``ConnectionFailed``), never a hang;
- host names resolve through the loop (``localhost``; a name that cannot resolve fails at once);
- unix sockets, TLS (server verification and client certificates) and authentication work;
- clients leave no file descriptor behind, a second ``asyncio.run`` works, and importing and using
  the face never imports ``twisted.internet.reactor`` (checked in a subprocess);
- the Twisted behaviour the design relies on: the package's coroutines are marked as Twisted-driven
  in every step, an asyncio Task's own code is not, and Twisted's own coroutines are unaffected;
- ``async with LocalEtcd()`` starts and stops a server from a running loop without blocking it.

Every wait is bounded (``asyncio.wait_for``, ``eventually``); a short pause appears only where what is
asserted is that something did NOT happen. Servers with special flags are the module's own
(``etcd_factory``), certificates are made here as in test_tls.py, and every address is loopback.
"""

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import AsyncExitStack
from urllib.parse import urlparse

import pytest
from twisted.internet import defer as twisted_defer

from txaioetcd import _defer, aio
from txaioetcd._asyncio_reactor import LoopResolver
from txaioetcd._defer import _TWISTED_DRIVEN
from txaioetcd.aio import (AuthFailed, ClientCertificateRejected, CompValue, ConnectionFailed, Deleted,
                           Error, Failed, KeySet, Lease, LockTimeout, OpGet, OpSet, PermissionDenied,
                           Range, Revision, Success, Timeout, TLSConfig, Transaction, WatchEvent)
from txaioetcd.recipes.election import Election
from txaioetcd.recipes.lock import Lock
from txaioetcd.testing import LocalEtcd

from _aio import aio_client, eventually, run
from _pki import make_pki


# -- helpers

async def _awaited(awaitable):
    """A coroutine of ``awaitable``'s result, so that a Task can be made of a Deferred."""
    return await awaitable


def _task(awaitable) -> asyncio.Task:
    """A Task awaiting ``awaitable``."""
    return asyncio.get_running_loop().create_task(_awaited(awaitable))


def _outcome(deferred) -> list:
    """What a fired Deferred holds, as ``[result]`` or ``[exception class]`` (a failure is consumed)."""
    assert deferred.called, f'{deferred!r} has not fired'
    seen = []
    deferred.addCallbacks(seen.append, lambda failure: seen.append(failure.type))
    return seen


def _recorded(deferred) -> list:
    """A list that gets what ``deferred`` fires with (a result, or the exception's class), passed on
    unchanged to whoever awaits it later."""
    seen = []

    def record(result):
        seen.append(result.type if hasattr(result, 'raiseException') else result)
        return result
    deferred.addBoth(record)
    return seen


async def _keys(client, name: bytes) -> list:
    """The keys of a lock's or an election's queue (they live under ``name + b'/'``)."""
    return [kv.key for kv in (await client.get(KeySet(name + b'/', prefix=True))).kvs]


async def _until_queued(client, name: bytes, count: int) -> None:
    """Wait (bounded) until ``count`` contenders stand in ``name``'s queue."""
    async def queued():
        return len(await _keys(client, name)) >= count
    await _eventually_async(queued, 10)


async def _collect_until(stream, last_revision: int, timeout: float = 10.0) -> list:
    """The events ``stream`` yields up to (and with) the first one at ``last_revision`` or later."""
    async def collect():
        events = []
        async for event in stream:
            events.append(event)
            if event.revision >= last_revision:
                return events
        raise AssertionError(f'the stream ended before revision {last_revision}: {events}')
    return await asyncio.wait_for(collect(), timeout)


async def _eventually_async(predicate, timeout: float = 10.0) -> None:
    """``eventually`` for a coroutine function ``predicate`` (one that asks etcd)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        assert loop.time() < end, f'not true within {timeout} s: {predicate.__name__}'
        await asyncio.sleep(0.02)


def _fd_count() -> int:
    return len(os.listdir('/proc/self/fd'))


@pytest.fixture
def refused_url():
    """A loopback URL nobody listens on: its port is bound (never listening) for the test, so no
    other process can take it meanwhile; connecting there is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    yield f'http://127.0.0.1:{sock.getsockname()[1]}'
    sock.close()


# -- servers and certificates of the module's own

@pytest.fixture(scope='module')
def restartable(etcd_factory):
    """A single-member etcd stopped and started again by the restart test."""
    return etcd_factory()


@pytest.fixture(scope='module')
def unix_etcd(etcd_factory):
    return etcd_factory(unix_socket=True)


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    return make_pki(tmp_path_factory.mktemp('aio-pki'))['main']


@pytest.fixture(scope='module')
def tls_etcd(etcd_factory, pki):
    """Serves https://; no client certificate required."""
    return etcd_factory(tls_cert_file=pki['server'], tls_key_file=pki['server_key'])


@pytest.fixture(scope='module')
def mtls_etcd(etcd_factory, pki):
    """Serves https:// and requires client certificates signed by the CA."""
    return etcd_factory(tls_cert_file=pki['server'], tls_key_file=pki['server_key'], tls_ca_file=pki['ca'])


async def _roundtrip(client, prefix):
    """get, set, a transaction and a watch all work over ``client``."""
    assert (await client.get(prefix + b'k')).kvs == []
    await client.set(prefix + b'k', b'v')
    assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
    result = await client.submit(Transaction(compare=[CompValue(prefix + b'k', '==', b'v')],
                                             success=[OpSet(prefix + b'k', b'v2'), OpGet(prefix + b'k')]))
    assert result.responses[1].kvs[0].value == b'v2'
    seen = []
    watching = client.watch(prefix + b'w', seen.append)
    await asyncio.wait_for(watching.ready(), 10)
    try:
        await client.set(prefix + b'w', b'event')
        await eventually(lambda: seen, 10)
        assert [(e.key, e.kv.value) for e in seen] == [(prefix + b'w', b'event')]
    finally:
        watching.cancel()


# -- KV and transactions

def test_set_get_range_prefix_delete_and_count(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            assert isinstance(client, aio.Client) and isinstance(client.reactor.nameResolver, LoopResolver)
            written = {}
            for name in (b'a', b'b', b'c', b'd', b'x/1', b'x/2'):
                written[name] = await client.set(prefix + name, b'v' + name)
            assert isinstance(written[b'a'], Revision) and written[b'a'].revision > 0
            got = await client.get(prefix + b'a')
            assert isinstance(got, Range) and got.count == 1
            kv = got.kvs[0]
            assert (kv.key, kv.value, kv.version) == (prefix + b'a', b'va', 1)
            assert kv.create_revision == kv.mod_revision == written[b'a'].revision
            assert (await client.get(prefix + b'nothing')).kvs == []

            ranged = await client.get(KeySet(prefix + b'b', prefix + b'd'))      # half-open: [b, d)
            assert [kv.key for kv in ranged.kvs] == [prefix + b'b', prefix + b'c']
            prefixed = await client.get(KeySet(prefix + b'x/', prefix=True))
            assert [(kv.key, kv.value) for kv in prefixed.kvs] == [(prefix + b'x/1', b'vx/1'),
                                                                   (prefix + b'x/2', b'vx/2')]
            assert await client.count(KeySet(prefix, prefix=True)) == 6

            again = await client.set(prefix + b'a', b'second', return_previous=True)
            assert (again.prev_kv.value, again.prev_kv.mod_revision) == (b'va', written[b'a'].revision)
            deleted = await client.delete(KeySet(prefix + b'x/', prefix=True), return_previous=True)
            assert isinstance(deleted, Deleted) and deleted.deleted == 2
            assert sorted((kv.key, kv.value) for kv in deleted.previous) == [(prefix + b'x/1', b'vx/1'),
                                                                             (prefix + b'x/2', b'vx/2')]
            assert await client.count(KeySet(prefix, prefix=True)) == 4
            assert (await client.get(prefix + b'a')).kvs[0].value == b'second'
    run(main())


def test_transaction_success_and_failure(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            key = prefix + b'k'
            await client.set(key, b'v')
            result = await client.submit(Transaction(compare=[CompValue(key, '==', b'v')],
                                                     success=[OpSet(key, b'v2'), OpGet(key)],
                                                     failure=[OpGet(key)]))
            assert isinstance(result, Success)
            put, got = result.responses
            assert isinstance(put, Revision) and got.kvs[0].value == b'v2'
            assert result.revision == put.revision

            with pytest.raises(Failed) as caught:
                await client.submit(Transaction(compare=[CompValue(key, '==', b'other')],
                                                success=[OpSet(key, b'never')],
                                                failure=[OpGet(key), OpSet(prefix + b'flag', b'failed')]))
            assert caught.value.responses[0].kvs[0].value == b'v2'
            assert caught.value.header.revision >= put.revision
            assert (await client.get(key)).kvs[0].value == b'v2'
            assert (await client.get(prefix + b'flag')).kvs[0].value == b'failed'
    run(main())


# -- watches

def test_async_for_sees_every_put_once_in_order(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            stream = client.watch_events(KeySet(prefix, prefix=True))
            await asyncio.wait_for(stream.ready(), 10)
            revisions = [(await client.set(prefix + b'%02d' % i, b'%d' % i)).revision for i in range(20)]
            # A last event after them: once it arrives, every earlier one has (events come in order).
            marker = (await client.set(prefix + b'marker', b'end')).revision
            events = await _collect_until(stream, marker)
            assert all(isinstance(e, WatchEvent) for e in events)
            assert [(e.type, e.key, e.kv.value, e.revision) for e in events[:-1]] == \
                [('PUT', prefix + b'%02d' % i, b'%d' % i, revisions[i]) for i in range(20)]
            assert (events[-1].key, events[-1].revision) == (prefix + b'marker', marker)
            stream.cancel()
            assert [event async for event in stream] == []          # cancel ends the iteration
            assert await asyncio.wait_for(stream.watching.done, 10) is None
    run(main())


def test_watch_with_a_callback(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            key = prefix + b'k'
            seen = []
            watching = client.watch(key, seen.append, prev_kv=True)
            await asyncio.wait_for(watching.ready(), 10)
            assert watching.state == 'watching'
            first = await client.set(key, b'one')
            gone = await client.delete(key)
            await eventually(lambda: len(seen) == 2, 10)
            put, deleted = seen
            assert (put.type, put.key, put.kv.value, put.revision) == ('PUT', key, b'one', first.revision)
            assert (deleted.type, deleted.revision, deleted.prev_kv.value) == \
                ('DELETE', gone.header.revision, b'one')
            watching.cancel()
            assert await asyncio.wait_for(watching.done, 10) is None
            await client.set(key, b'after the cancel')
            await asyncio.sleep(0.1)           # (proving that nothing more arrives)
            assert len(seen) == 2
    run(main())


async def _write_until(writer, prefix, count, time_limit, acknowledged, failures):
    """Write keys ``prefix + i`` (i < count) one after another, each retried until acknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    i = 0
    while i < count and loop.time() < deadline:
        try:
            result = await writer.set(prefix + b'%04d' % i, b'%d' % i, timeout=2)
        except Error as error:
            failures.append((i, type(error).__name__))
            await asyncio.sleep(0.05)          # the pause before a retry
            continue
        acknowledged.append((i, result.revision))
        i += 1


def test_watch_resumes_across_a_restart_of_etcd(restartable, prefix):
    """As test_watch.py's restart test: writes go on while etcd is stopped and started again; the
    watch delivers every acknowledged write, exactly once, in order, the same as etcd's history."""
    server = restartable
    everything = KeySet(prefix, prefix=True)

    async def main():
        loop = asyncio.get_running_loop()
        async with aio_client(server.url) as watcher, aio_client(server.url) as writer:
            start = (await writer.set(prefix + b'start', b'')).revision
            stream = watcher.watch_events(everything)
            await asyncio.wait_for(stream.ready(), 10)
            events = []

            async def collect():
                async for event in stream:
                    events.append(event)
            collecting = loop.create_task(collect())
            acknowledged, failures = [], []
            writing = loop.create_task(_write_until(writer, prefix, 150, 30, acknowledged, failures))
            try:
                await eventually(lambda: len(acknowledged) >= 50, 20)
                # In the loop's executor: the loop (and the writer's failing calls) go on meanwhile.
                await loop.run_in_executor(None, server.stop)
                # etcd stays down until the writer has seen it so (not for some time): a write fails.
                await eventually(lambda: failures, 10)
                before_restart = len(acknowledged)
                await loop.run_in_executor(None, server.start)
                await asyncio.wait_for(writing, 40)
            finally:
                await loop.run_in_executor(None, server.start)      # (does nothing if it runs)
            assert len(acknowledged) == 150, f'only {len(acknowledged)} writes in time ({failures[:5]})'
            assert before_restart < 150, 'every write was done before the restart'
            last = max(revision for _, revision in acknowledged)
            await eventually(lambda: events and events[-1].revision >= last, 20)
            assert stream.watching.reconnects >= 1
            assert stream.watching.state == 'watching'
            stream.cancel()
            await asyncio.wait_for(collecting, 10)

            revisions = [e.revision for e in events]
            assert all(a < b for a, b in zip(revisions, revisions[1:])), \
                f'revisions not strictly increasing (duplicate or out of order): {revisions}'
            seen = set(revisions)
            missing = [(i, revision) for i, revision in acknowledged if revision not in seen]
            assert not missing, f'acknowledged writes the watch never delivered: {missing[:10]}'
            # No gap and nothing extra: the watch saw what etcd's history holds, event for event.
            replay = watcher.watch_events(everything, start_revision=start + 1)
            history = await _collect_until(replay, last, 15)
            replay.cancel()
            assert [(e.key, e.kv.value, e.revision) for e in events] == \
                [(e.key, e.kv.value, e.revision) for e in history]
    run(main(), 90)


# -- leases

def test_kept_alive_lease_outlives_its_ttl(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            lease = await client.lease(2, keepalive=True)
            assert isinstance(lease, Lease) and lease.state == 'alive'
            key = prefix + b'leased'
            await client.set(key, b'v', lease=lease)
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.5 * lease.ttl
            # What is proved is that the lease does NOT expire: checked all along 2.5 TTLs.
            while loop.time() < end:
                assert (await client.get(key)).kvs, 'the leased key vanished: the lease expired'
                await asyncio.sleep(0.25)
            assert lease.keepalives >= 2 and lease.state == 'alive' and not lease.expired.called
            assert 0 < await lease.remaining() <= lease.ttl
            await lease.revoke()
            assert lease.state == 'revoked' and (await client.get(key)).kvs == []
            assert await lease.remaining() == -1
    run(main())


def test_async_with_lease_revokes_on_exit(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            key = prefix + b'leased'
            async with client.lease(5) as lease:
                assert isinstance(lease, Lease) and lease.state == 'alive'
                await client.set(key, b'v', lease=lease)
                assert (await client.get(key)).kvs[0].lease == lease.lease_id
            assert lease.state == 'revoked'
            assert (await client.get(key)).kvs == []
            assert lease.lease_id not in await client.leases()
    run(main())


# -- locks

def test_async_with_lock_and_a_second_holder_waits(etcd, prefix):
    async def main():
        name = prefix + b'lock'
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as other:
            async with client.lock(name, timeout=5) as held:
                assert isinstance(held, Lock) and held.held
                assert await _keys(client, name) == [held.key]
                second = other.lock(name, timeout=10)           # starts at once, waits behind us
                await _until_queued(client, name, 2)
                await asyncio.sleep(0.1)                       # (proving that it does NOT get it)
                assert not second.called
            assert not held.held
            later = await asyncio.wait_for(second, 5)
            assert later.held and await _keys(client, name) == [later.key]
            await later.release()
            assert await _keys(client, name) == []
    run(main())


def test_wait_for_gives_up_a_lock_attempt_and_leaves_nothing(etcd, prefix):
    async def main():
        name = prefix + b'lock'
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as other:
            before = set(await client.leases())
            holder = await client.lock(name)
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(other.lock(name), 0.3)
            assert time.monotonic() - started < 5
            # Nothing of the attempt is left, as soon as wait_for returns: no waiter key under the
            # lock's name, no lease (the cancelled Task waited until the attempt had cleaned up, as a
            # cancelled Deferred does on Twisted).
            assert await _keys(client, name) == [holder.key]
            assert set(await client.leases()) - before == {holder.lease.lease_id}
            await holder.release()
            again = await asyncio.wait_for(other.lock(name), 5)  # the given-up attempt is not in the way
            assert again.held
            await again.release()
            assert await _keys(client, name) == []
    run(main())


def test_lock_timeout_is_the_library_timeout(etcd, prefix):
    async def main():
        name = prefix + b'lock'
        async with aio_client(etcd.url) as client, aio_client(etcd.url) as other:
            before = set(await client.leases())
            holder = await client.lock(name)
            with pytest.raises(LockTimeout) as raised:
                await asyncio.wait_for(other.lock(name, timeout=0.3), 10)
            assert isinstance(raised.value, Timeout) and not isinstance(raised.value, asyncio.TimeoutError)
            assert 'not acquired within 0.3 s' in str(raised.value) and repr(name) in str(raised.value)
            # The library's own deadline raises only once the attempt has left nothing behind.
            assert await _keys(client, name) == [holder.key]
            assert set(await client.leases()) - before == {holder.lease.lease_id}
            await holder.release()
    run(main())


# -- elections

def test_election_campaign_observe_and_resign(etcd, prefix):
    async def main():
        name = prefix + b'election'
        async with AsyncExitStack() as stack:
            client, one_client, two_client = [await stack.enter_async_context(aio_client(etcd.url))
                                              for _ in range(3)]
            one, two = Election(one_client, name), Election(two_client, name)
            assert await client.election(name).leader() is None
            await one.campaign(b'one')
            assert one.leading and await one.leader() == (one.key, b'one')

            observer = client.election(name).observe()
            values = []

            async def observe():
                async for value in observer:
                    values.append(value)
            observing = _task(observe())
            await eventually(lambda: values == [b'one'], 10)

            second = two.campaign(b'two')
            await _until_queued(client, name, 2)
            assert not second.called and not two.leading
            await one.resign()                              # hands over to the next in line
            assert not one.leading
            await asyncio.wait_for(second, 5)
            assert two.leading and await client.election(name).leader() == (two.key, b'two')
            await eventually(lambda: values == [b'one', b'two'], 10)

            await two.proclaim(b'two again')
            await eventually(lambda: values == [b'one', b'two', b'two again'], 10)
            await two.resign()
            assert await client.election(name).leader() is None
            observer.cancel()
            await asyncio.wait_for(observing, 10)           # the async for ended
            assert values == [b'one', b'two', b'two again']
            assert await client.count(KeySet(name + b'/', prefix=True)) == 0
    run(main())


# -- cancellation and the library's own deadlines

def test_cancelling_a_task_cancels_the_stream_read_underneath(etcd, prefix):
    async def main():
        async with aio_client(etcd.url) as client:
            stream = client.watch_events(prefix + b'k')
            await asyncio.wait_for(stream.ready(), 10)
            pending = stream.__anext__()
            assert isinstance(pending, _defer.Deferred)
            outcome = _recorded(pending)
            task = _task(pending)
            await asyncio.sleep(0)                 # one loop turn: the Task now awaits the Deferred
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert outcome == [twisted_defer.CancelledError]
            # The cancelled read took nothing from the stream: the next event goes to the next read.
            written = await client.set(prefix + b'k', b'v')
            event = await asyncio.wait_for(stream.__anext__(), 10)
            assert (event.kv.value, event.revision) == (b'v', written.revision)
            stream.cancel()
    run(main())


def test_cancelling_a_task_cancels_a_request_in_flight(prefix):
    """A server that accepts and never answers: the call is under way (bytes arrive there) and waits;
    cancelling the Task fails its Deferred with CancelledError at once (not at the 30 s deadline)."""
    async def main():
        connections, received = [], []

        async def silent(reader, writer):
            connections.append(writer)
            while data := await reader.read(65536):
                received.append(data)
        server = await asyncio.start_server(silent, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with aio_client(f'http://127.0.0.1:{port}', timeout=30) as client:
                pending = client.get(prefix + b'k')
                outcome = _recorded(pending)
                task = _task(pending)
                await eventually(lambda: received, 10)
                started = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert outcome == [twisted_defer.CancelledError]
                assert time.monotonic() - started < 2
        finally:
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()
    run(main())


def test_own_deadlines_against_a_refused_endpoint(refused_url, prefix):
    async def main():
        async with aio_client(refused_url, lazy=True, timeout=10) as lazy:
            started = time.monotonic()
            with pytest.raises(Timeout) as raised:
                await asyncio.wait_for(lazy.get(prefix + b'k', timeout=0.5), 10)
            elapsed = time.monotonic() - started
            assert 0.45 <= elapsed < 5, elapsed      # the call's own 0.5 s, not the client's 10 s
            assert not isinstance(raised.value, asyncio.TimeoutError)
        async with aio_client(refused_url, timeout=10) as eager:
            started = time.monotonic()
            with pytest.raises(ConnectionFailed) as raised:
                await asyncio.wait_for(eager.get(prefix + b'k'), 10)
            assert time.monotonic() - started < 5    # at once: a refused connect takes no time
            assert refused_url in str(raised.value)
    run(main())


# -- host names

def test_localhost_resolves_through_the_loop(etcd, prefix):
    port = urlparse(etcd.url).port

    async def main():
        async with aio_client(f'http://localhost:{port}') as client:
            await client.set(prefix + b'k', b'by name')
            assert (await client.get(prefix + b'k')).kvs[0].value == b'by name'
            assert client.endpoint == f'http://localhost:{port}'
            # Resolved by loop.getaddrinfo: Twisted's thread pool (only run by reactor.run()) was not used.
            assert client.reactor.threadpool is None
    assert socket.getaddrinfo('localhost', port, socket.AF_INET)[0][4][0] == '127.0.0.1'
    run(main())


def test_a_name_that_does_not_resolve_is_connection_failed(prefix):
    # Refused before any lookup (a lookup would leave loopback; test_aio_reactor.py checks a failed
    # lookup through the loop's resolver).
    async def main():
        for name, says in (('-not-a-host-name.invalid', 'invalid hostname'),):
            async with aio_client(f'http://{name}:2379', timeout=5) as client:
                started = time.monotonic()
                with pytest.raises(ConnectionFailed) as raised:
                    await asyncio.wait_for(client.get(prefix + b'k'), 10)
                assert time.monotonic() - started < 4, name
                assert name in str(raised.value) and says in str(raised.value), str(raised.value)
    run(main())


# -- unix sockets, TLS, authentication

def test_unix_socket(unix_etcd, prefix):
    assert unix_etcd.unix_url.startswith('unix:///')

    async def main():
        async with aio_client(unix_etcd.unix_url) as client, aio_client(unix_etcd.url) as tcp:
            await _roundtrip(client, prefix)
            assert (await tcp.get(prefix + b'k')).kvs[0].value == b'v2'       # the same data
    run(main())


def test_https_with_a_ca(tls_etcd, pki, prefix):
    assert tls_etcd.url.startswith('https://127.0.0.1:')

    async def main():
        async with aio_client(tls_etcd.url, tls=TLSConfig(ca_file=pki['ca']), timeout=3) as client:
            await _roundtrip(client, prefix)
    run(main())


def test_https_with_a_client_certificate(mtls_etcd, pki, prefix):
    async def main():
        with_certificate = TLSConfig(ca_file=pki['ca'], cert_file=pki['client'], key_file=pki['client_key'])
        async with aio_client(mtls_etcd.url, tls=with_certificate, timeout=3) as client:
            await _roundtrip(client, prefix)
    run(main())


def test_https_without_the_client_certificate_it_needs(mtls_etcd, pki, prefix):
    async def main():
        async with aio_client(mtls_etcd.url, tls=TLSConfig(ca_file=pki['ca'])) as without:
            started = time.monotonic()
            with pytest.raises(ClientCertificateRejected) as raised:
                await asyncio.wait_for(without.get(prefix + b'k'), 10)
            assert time.monotonic() - started < 5      # at the handshake, not at the deadline
            assert 'cert_file' in str(raised.value)
    run(main())


def test_username_and_password(etcd_factory, prefix):
    server = etcd_factory()
    allowed = prefix + b'app/'

    async def main():
        async with aio_client(server.url) as admin:
            await admin.user_add('root', 'rootpw')
            await admin.user_grant_role('root', 'root')
            await admin.role_add('app')
            await admin.role_grant_permission('app', KeySet(allowed, prefix=True))
            await admin.user_add('alice', 'alicepw')
            await admin.user_grant_role('alice', 'app')
            await admin.auth_enable()
        async with aio_client(server.url, username='alice', password='alicepw') as alice:
            await alice.set(allowed + b'k', b'v')
            assert (await alice.get(allowed + b'k')).kvs[0].value == b'v'
            seen = []
            watching = alice.watch(KeySet(allowed, prefix=True), seen.append)
            await asyncio.wait_for(watching.ready(), 10)
            await alice.set(allowed + b'w', b'event')
            await eventually(lambda: seen, 10)
            assert [e.key for e in seen] == [allowed + b'w']
            watching.cancel()
            with pytest.raises(PermissionDenied):
                await alice.set(prefix + b'elsewhere', b'v')
        async with aio_client(server.url, username='alice', password='wrong') as wrong:
            with pytest.raises(AuthFailed) as raised:
                await wrong.get(allowed + b'k')
            assert "authenticate as 'alice'" in str(raised.value)
    run(main())


# -- resources and the process

def test_a_hundred_clients_leave_no_file_descriptor_behind(etcd, prefix):
    async def main():
        before = _fd_count()
        clients = [aio.Client(url=etcd.url, timeout=10) for _ in range(100)]
        try:
            await client_calls(clients)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        # Closing lets the connections go; their sockets are closed on the loop's next turns.
        await eventually(lambda: _fd_count() <= before, 10)
        return before

    async def client_calls(clients):
        await clients[0].set(prefix + b'k', b'v')
        results = await asyncio.gather(*(client.get(prefix + b'k') for client in clients))
        assert [r.kvs[0].value for r in results] == [b'v'] * 100

    outside = _fd_count()
    run(main())
    assert _fd_count() <= outside          # nor once the loop is gone


def test_two_asyncio_runs_in_one_process(etcd, prefix):
    async def write():
        async with aio_client(etcd.url) as client:
            return (await client.set(prefix + b'k', b'first run')).revision

    async def read():
        async with aio_client(etcd.url) as client:
            got = await client.get(prefix + b'k')
            async with client.lock(prefix + b'lock', timeout=5):
                pass
            return got.kvs[0]

    written = run(write())
    kv = run(read())
    assert (kv.value, kv.mod_revision) == (b'first run', written)


def test_no_global_reactor_is_imported(etcd, prefix):
    code = textwrap.dedent('''
        import asyncio, sys
        import txaioetcd.aio as aio

        async def main(url, key):
            client = aio.Client(url=url, timeout=10)
            try:
                await client.set(key, b'from a subprocess')
                async with client.lock(key + b'/lock', timeout=5):
                    return (await client.get(key)).kvs[0].value
            finally:
                await client.close()

        value = asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2].encode()), 30))
        assert value == b'from a subprocess', value
        assert 'twisted.internet.reactor' not in sys.modules, 'the global reactor was imported'
        print('ok')
    ''')
    done = subprocess.run([sys.executable, '-c', code, etcd.url, (prefix + b'k').decode('ascii')],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, 'ok'), done.stderr


# -- the Twisted behaviour the design relies on

def test_the_package_coroutines_are_twisted_driven_in_every_step():
    """(a) Started from inside an asyncio Task, a coroutine run by our ``Deferred.fromCoroutine`` runs
    its first step in that Task and its later ones in loop callbacks - and is marked in each."""
    async def main():
        loop = asyncio.get_running_loop()
        outer = asyncio.current_task()
        steps = []

        async def package_coroutine():
            steps.append((_TWISTED_DRIVEN.get(), asyncio.current_task() is outer))
            later = _defer.Deferred()
            loop.call_soon(later.callback, 'fired by the loop')
            value = await later                # a Twisted-style wait: a Future would break the driver
            steps.append((_TWISTED_DRIVEN.get(), asyncio.current_task()))
            timer = _defer.Deferred()
            loop.call_later(0.01, timer.callback, None)
            await timer
            steps.append((_TWISTED_DRIVEN.get(), asyncio.current_task()))
            return value

        assert _TWISTED_DRIVEN.get() is False
        d = _defer.Deferred.fromCoroutine(package_coroutine())
        assert isinstance(d, _defer.Deferred)
        assert steps == [(True, True)]         # the first step ran at once, inside this Task
        assert await asyncio.wait_for(d, 5) == 'fired by the loop'
        assert steps == [(True, True), (True, None), (True, None)]
        assert _TWISTED_DRIVEN.get() is False  # the Task's own context is left alone
    run(main())


def test_an_asyncio_task_is_not_twisted_driven_and_awaits_our_deferreds():
    """(b) A plain Task's own code: unmarked, awaits our Deferreds (fired later, already fired,
    failed) as Futures, and cancelling it cancels the Deferred."""
    async def main():
        loop = asyncio.get_running_loop()
        assert _TWISTED_DRIVEN.get() is False
        later = _defer.Deferred()
        loop.call_soon(later.callback, 'later')
        assert await later == 'later'
        assert await _defer.succeed('now') == 'now'
        with pytest.raises(ValueError, match='boom'):
            await _defer.fail(ValueError('boom'))
        cancelled = []
        pending = _defer.Deferred(cancelled.append)
        task = _task(pending)
        await asyncio.sleep(0)                 # one loop turn: the Task now awaits the Deferred
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancelled == [pending]
        assert _TWISTED_DRIVEN.get() is False
    run(main())


def test_twisted_coroutines_outside_asyncio_are_unaffected():
    """(c) A coroutine of plain Twisted's ``Deferred.fromCoroutine`` (as on the epoll reactor; no
    reactor is needed for Deferreds fired by hand) awaits our Deferreds the Twisted way."""
    async def twisted_coroutine(by_hand):
        assert _TWISTED_DRIVEN.get() is False  # not ours: nobody marked it, and no loop runs
        first = await by_hand
        second = await _defer.succeed(2)
        return first + second

    by_hand = _defer.Deferred()
    result = twisted_defer.Deferred.fromCoroutine(twisted_coroutine(by_hand))
    assert not result.called
    by_hand.callback(40)
    assert _outcome(result) == [42]


def test_a_twisted_coroutine_of_ones_own_inside_a_task_fails_loudly():
    """The documented limit (docs/asyncio.md): plain Twisted ``fromCoroutine`` started inside a Task
    gets a Future in its first step, which Twisted's driver refuses - a RuntimeError, not a hang."""
    async def main():
        async def twisted_coroutine(d):
            return await d
        never = _defer.Deferred()
        result = twisted_defer.Deferred.fromCoroutine(twisted_coroutine(never))
        assert _outcome(result) == [RuntimeError]
        never.callback(None)                   # (the Future it was handed, settled: nothing else)
    run(main())


# -- the harness from asyncio

def test_async_with_local_etcd_starts_and_stops_a_server(prefix):
    async def main():
        ticks = []

        async def ticker():
            while True:
                ticks.append(1)
                await asyncio.sleep(0.005)
        ticking = asyncio.get_running_loop().create_task(ticker())
        try:
            async with LocalEtcd() as server:
                # The loop went on while the server started (the start ran in the executor).
                assert len(ticks) >= 2
                pid = server.pid
                assert server.running and pid is not None
                os.kill(pid, 0)                # the process exists
                async with aio_client(server.url) as client:
                    await client.set(prefix + b'k', b'v')
                    assert await client.count(KeySet(b'', prefix=True)) == 1     # a fresh server
        finally:
            ticking.cancel()
        assert server.pid is None and not server.running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    run(main())
