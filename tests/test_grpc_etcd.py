"""The gRPC transport against real etcd at scale and under faults: many watches on one connection, a
long run of events through one watch, an answer above 16 MiB next to a small call, a member stopped
with calls in flight, and a watch across a restart of its server.

Every client here is made with ``transport='grpc'``, whatever $TXAIOETCD_TRANSPORT says. Connections
are counted for real, from this process's own socket inodes (/proc/self/fd) matched against the
kernel's TCP table (/proc/net/tcp, tcp6); what etcd keeps about watches is read from its /metrics.
Every wait is for an event or a condition, up to a deadline; exactly-once is checked up to a fence: a
last write after the ones under test, whose event comes after any repeat of theirs would.
"""

import os
import random
import time
import urllib.request
from urllib.parse import urlparse

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.threads import deferToThread

from txaioetcd import Client, KeySet
from txaioetcd.errors import Error, OutcomeUnknown
from txaioetcd.transport._grpc import GrpcTransport

from _loopback import until, within

MiB = 1024 * 1024


# -- helpers

def _grpc_client(reactor, endpoints, timeout=10.0):
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    client = Client(reactor, endpoints=endpoints, transport='grpc', timeout=timeout)
    assert isinstance(client._transport, GrpcTransport)
    return client


def _port(url: str) -> int:
    return urlparse(url).port


def _own_socket_inodes() -> set:
    inodes = set()
    for name in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{name}')
        except OSError:             # closed since listdir (the listing's own fd, say)
            continue
        if target.startswith('socket:['):
            inodes.add(int(target[8:-1]))
    return inodes


def _connections_to(port: int) -> set:
    """The inodes of this process's ESTABLISHED TCP connections whose remote port is ``port``.

    etcd runs in the same network namespace and has sockets on that port too (its local port): only
    our own fds count, and only the remote end."""
    ours = _own_socket_inodes()
    found = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    remote_port = int(fields[2].rsplit(':', 1)[1], 16)
                    inode = int(fields[9])
                    if fields[3] == '01' and remote_port == port and inode in ours:
                        found.add(inode)
        except FileNotFoundError:
            continue
    return found


def _metric(url: str, name: str) -> float:
    """One unlabelled value of etcd's /metrics (read in a thread: the reactor goes on meanwhile)."""
    def read():
        with urllib.request.urlopen(url + '/metrics', timeout=5) as answer:
            for line in answer.read().decode('utf-8').splitlines():
                if line.startswith(name + ' '):
                    return float(line.split()[1])
        raise AssertionError(f'{url}/metrics has no {name}')
    return deferToThread(read)


async def _windowed(count: int, window: int, call) -> list:
    """``call(i)`` for i in range(count) with ``window`` of them in flight → the results, in order."""
    results = [None] * count
    indexes = iter(range(count))

    async def worker():
        for i in indexes:
            results[i] = await call(i)
    await gatherResults([ensureDeferred(worker()) for _ in range(min(window, count))], consumeErrors=True)
    return results


def _strictly_increasing(revisions) -> bool:
    return all(a < b for a, b in zip(revisions, revisions[1:]))


# -- 1. a thousand watches, one connection

@pytest_twisted.ensureDeferred
async def test_a_thousand_watches_share_one_connection_and_each_gets_its_event(etcd, reactor, prefix):
    count = 1000
    started = time.monotonic()
    port = _port(etcd.url)
    keys = [prefix + b'%04d' % i for i in range(count)]
    events = [[] for _ in range(count)]
    writer = _grpc_client(reactor, etcd.url, timeout=30)
    client = None
    watchings = []
    try:
        await writer.set(prefix + b'warm-up', b'')      # the writer's connection exists before the count
        baseline = _connections_to(port)
        watchers_before = await _metric(etcd.url, 'etcd_debugging_mvcc_watcher_total')
        streams_before = await _metric(etcd.url, 'etcd_debugging_mvcc_watch_stream_total')

        client = _grpc_client(reactor, etcd.url, timeout=30)
        watchings = [client.watch(key, events[i].append) for i, key in enumerate(keys)]
        await within(reactor, gatherResults([w.ready() for w in watchings]), 30, f'{count} watches to be ready')
        ready_after = time.monotonic() - started
        assert all(w.state == 'watching' for w in watchings)
        connections = _connections_to(port) - baseline
        assert len(connections) == 1, f'{len(connections)} connections for {count} watches'
        watchers = await _metric(etcd.url, 'etcd_debugging_mvcc_watcher_total')
        streams = await _metric(etcd.url, 'etcd_debugging_mvcc_watch_stream_total')
        assert watchers - watchers_before >= count
        assert streams - streams_before <= 1, f'{streams - streams_before} Watch streams on etcd'

        written = await _windowed(count, 64, lambda i: writer.set(keys[i], b'v%d' % i))
        fences = await _windowed(count, 64, lambda i: writer.set(keys[i], b'fence'))
        await until(reactor, lambda: all(len(e) >= 2 for e in events), 30,
                    lambda: f'every watch to see its fence ({sum(len(e) >= 2 for e in events)} did)')
        for i in range(count):
            got = [(e.key, e.kv.value, e.revision) for e in events[i]]
            assert got == [(keys[i], b'v%d' % i, written[i].revision), (keys[i], b'fence', fences[i].revision)]
        assert len(_connections_to(port) - baseline) == 1

        for w in watchings:
            w.cancel()
        await within(reactor, gatherResults([w.done for w in watchings]), 10, 'every watch to end')

        async def cancelled_on_etcd():
            return await _metric(etcd.url, 'etcd_debugging_mvcc_watcher_total') <= watchers_before
        await until(reactor, cancelled_on_etcd, 15, 'etcd to drop the cancelled watchers', interval=0.2)
        took = time.monotonic() - started
        print(f'\n{count} watches: ready after {ready_after:.2f} s, {len(connections)} connection(s) '
              f'(watchers on etcd +{watchers - watchers_before:.0f}, Watch streams '
              f'+{streams - streams_before:.0f}), {2 * count} events, all cancelled, {took:.2f} s in all')
        assert took < 60
    finally:
        for w in watchings:
            w.cancel()
        if client is not None:
            await client.close()
        await writer.close()


# -- 2. ten thousand events through one watch

@pytest_twisted.ensureDeferred
async def test_ten_thousand_events_through_one_watch_without_loss_or_repeat(etcd, reactor, prefix):
    count = 10_000
    fence = prefix + b'~fence'
    events = []
    client = _grpc_client(reactor, etcd.url, timeout=30)
    watching = None
    try:
        watching = client.watch(KeySet(prefix, prefix=True), events.append)
        await within(reactor, watching.ready(), 10, 'the watch to be ready')
        started = time.monotonic()
        # The puts share the watch's connection: the Watch stream's DATA interleaves with 64 calls.
        written = await _windowed(count, 64, lambda i: client.set(prefix + b'%05d' % i, b'%d' % i))
        put_seconds = time.monotonic() - started
        fenced = await client.set(fence, b'')
        await until(reactor, lambda: events and events[-1].revision >= fenced.revision, 30,
                    lambda: f'the fence event ({len(events)} events so far)')
        took = time.monotonic() - started

        assert events[-1].key == fence
        delivered = events[:-1]
        revisions = [e.revision for e in delivered]
        assert len(delivered) == count
        assert _strictly_increasing(revisions)
        assert revisions == sorted(r.revision for r in written)
        expected = {r.revision: (prefix + b'%05d' % i, b'%d' % i) for i, r in enumerate(written)}
        assert all((e.key, e.kv.value) == expected[e.revision] for e in delivered)
        assert watching.reconnects == 0
        print(f'\n{count} events through one watch in {took:.2f} s ({put_seconds:.2f} s of puts, '
              f'{count / took:.0f} events/s), revisions {revisions[0]}..{revisions[-1]}')
    finally:
        if watching is not None:
            watching.cancel()
        await client.close()


# -- 3. an answer above 16 MiB

@pytest_twisted.ensureDeferred
async def test_a_range_above_16_mib_in_one_answer_and_a_small_call_beside_it(etcd_factory, reactor, prefix):
    server = etcd_factory()         # of its own: the session etcd stays small
    size = int(1.4 * MiB)           # below etcd's 1.5 MiB request limit
    values = [bytes([i]) * 64 + os.urandom(size - 64) for i in range(12)]
    keys = [prefix + b'%02d' % i for i in range(len(values))]
    assert sum(map(len, values)) > 16 * MiB
    client = _grpc_client(reactor, server.url, timeout=60)
    try:
        await _windowed(len(values), 3, lambda i: client.set(keys[i], values[i]))
        await client.set(prefix + b'~small', b'small')
        everything = KeySet(prefix, prefix=True)

        started = time.monotonic()
        alone = await client.get(everything)
        alone_seconds = time.monotonic() - started
        assert [kv.key for kv in alone.kvs] == keys + [prefix + b'~small']
        assert [kv.value for kv in alone.kvs[:-1]] == values

        # Again, with small calls one after another while the big answer is on its way.
        big = client.get(everything)
        big_done = []
        big.addBoth(lambda result: big_done.append(time.monotonic()) or result)
        started = time.monotonic()
        small_latencies = []
        while not big_done and time.monotonic() - started < 60:
            sent = time.monotonic()
            small = await within(reactor, client.get(prefix + b'~small'), 10, 'a small read beside the big one')
            small_latencies.append(time.monotonic() - sent)
            assert small.kvs[0].value == b'small'
        got = await within(reactor, big, 60, 'the big range')
        big_seconds = big_done[0] - started
        assert [kv.value for kv in got.kvs[:-1]] == values
        answer = sum(len(kv.key) + len(kv.value) for kv in got.kvs)
        assert small_latencies, 'no small read completed while the big answer was on its way'
        assert small_latencies[0] < big_seconds     # the first small read did not wait for the big one
        assert max(small_latencies) < 5
        print(f'\nrange of {answer / MiB:.1f} MiB: {alone_seconds:.2f} s alone, {big_seconds:.2f} s with '
              f'{len(small_latencies)} small reads beside it (slowest {max(small_latencies) * 1000:.0f} ms, '
              f'first {small_latencies[0] * 1000:.0f} ms)')
    finally:
        await client.close()


# -- 4. a member stopped with calls in flight

@pytest.mark.cluster
@pytest_twisted.ensureDeferred
async def test_member_stopped_mid_call_loses_no_acknowledged_write(cluster, reactor, prefix):
    """16 writers and 16 readers run while the member the client uses is stopped (SIGTERM) from a
    thread, and go on after it is back. (Not SIGKILL: the shared cluster runs with --unsafe-no-fsync,
    and a killed member of it may lose log entries it had acknowledged - etcd's own data loss, which
    then breaks the tests after this one on the same cluster.) Reads all succeed; a write is acknowledged,
    OutcomeUnknown, or failed cleanly (then absent); every acknowledged write is readable afterwards,
    from the restarted member too."""
    client = _grpc_client(reactor, cluster.endpoints, timeout=5)
    acked, unknown, clean, unexpected = {}, [], {}, []
    read_failures, read_seconds = [], []
    state = {'stop': False, 'n': 0}
    seed = prefix + b'seed'

    async def writer():
        while not state['stop']:
            key = prefix + b'%06d' % state['n']
            state['n'] += 1
            try:
                acked[key] = (await client.set(key, key)).revision
            except OutcomeUnknown:
                unknown.append(key)
            except Error as error:
                clean[key] = error
            except Exception as error:      # noqa: BLE001 - asserted below
                unexpected.append(error)

    async def reader():
        rng = random.Random()
        while not state['stop']:
            key = rng.choice(list(acked) or [seed])
            sent = time.monotonic()
            try:
                got = await client.get(key)
                if not got.kvs or got.kvs[0].value != (b's' if key == seed else key):
                    read_failures.append(f'{key!r} read as {got.kvs}')
            except Exception as error:      # noqa: BLE001 - asserted below
                read_failures.append(error)
            read_seconds.append(time.monotonic() - sent)

    stopped = None
    workers = []
    try:
        await client.set(seed, b's')
        workers = [ensureDeferred(writer()) for _ in range(16)] + [ensureDeferred(reader()) for _ in range(16)]
        await until(reactor, lambda: len(acked) >= 200, 20, 'load to build up')
        in_use = cluster.endpoints.index(client.endpoint)
        leader = await deferToThread(cluster.leader)
        before_stop = len(acked)
        stopped = in_use
        await deferToThread(cluster.stop_member, in_use)
        during_from = len(acked)
        await until(reactor, lambda: len(acked) >= during_from + 300, 20,
                    lambda: f'writes to go on without member {in_use} ({len(acked) - during_from} did)')
        await deferToThread(cluster.start_member, in_use)
        stopped = None
        after_from = len(acked)
        await until(reactor, lambda: len(acked) >= after_from + 300, 20,
                    lambda: f'writes to go on after member {in_use} is back ({len(acked) - after_from} did)')
    finally:
        state['stop'] = True
        await within(reactor, gatherResults(workers), 30, 'the workers to stop')
        if stopped is not None:
            await deferToThread(cluster.start_member, stopped)
    try:
        assert not unexpected, unexpected[:3]
        assert not read_failures, read_failures[:3]
        assert max(read_seconds) < 5.5
        stored = await client.get(KeySet(prefix, prefix=True), keys_only=True)
        present = {kv.key for kv in stored.kvs} - {seed}
        assert set(acked) <= present, f'{len(set(acked) - present)} acknowledged writes lost'
        assert present <= set(acked) | set(unknown), 'a write appeared that was never sent'
        assert not present & set(clean), 'a write that failed cleanly was applied'
        # The restarted member has every acknowledged write too (a linearizable read through it).
        restarted = _grpc_client(reactor, cluster.endpoints[in_use], timeout=10)
        try:
            there = await restarted.get(KeySet(prefix, prefix=True), keys_only=True)
            assert set(acked) <= {kv.key for kv in there.kvs}
        finally:
            await restarted.close()
        revision = (await client.set(prefix + b'after', b'ok')).revision
        assert (await client.get(prefix + b'after')).kvs[0].mod_revision == revision
        print(f'\nstop of member {in_use} (leader: {leader}) with 32 calls in flight: {len(acked)} writes '
              f'acknowledged ({before_stop} before the stop, {after_from - during_from} from then until it '
              f'was back), '
              f'{len(unknown)} OutcomeUnknown ({len(set(unknown) & present)} of them applied), '
              f'{len(clean)} clean failures {sorted({type(e).__name__ for e in clean.values()})}, '
              f'{len(read_seconds)} reads, slowest {max(read_seconds):.2f} s')
    finally:
        await client.close()


# -- 5. a watch across a restart of its server

@pytest.mark.parametrize('restart', ['seen', 'unseen'])
@pytest_twisted.ensureDeferred
async def test_a_watch_survives_a_restart_of_its_server(etcd_factory, reactor, prefix, restart):
    """``seen``: stopped and started from a thread, so the client notices and retries while etcd is
    down; ``unseen``: stopped and started in one reactor turn (as test_failover does), so the client
    finds its connection closed only afterwards. Either way the events written after the restart
    arrive exactly once, after those from before it, none repeated."""
    server = etcd_factory()
    events = []
    client = _grpc_client(reactor, server.url, timeout=10)
    writer = _grpc_client(reactor, server.url, timeout=10)
    watching = None
    try:
        watching = client.watch(KeySet(prefix, prefix=True), events.append)
        await within(reactor, watching.ready(), 10, 'the watch to be ready')
        before = await _windowed(20, 8, lambda i: writer.set(prefix + b'before/%02d' % i, b'%d' % i))
        await until(reactor, lambda: len(events) >= 20, 10, 'the events from before the restart')

        if restart == 'seen':
            await deferToThread(server.stop)
            await until(reactor, lambda: watching.state == 'reconnecting', 10, 'the watch to see the stop')
            await deferToThread(server.start)
        else:
            server.stop()
            server.start()
        # The writer's first call afterwards is a read: on a connection the server closed unseen, a read
        # goes out again, a write is OutcomeUnknown (never sent twice; test_timeouts.py checks that).
        await writer.get(prefix + b'~fence')
        after = await _windowed(50, 8, lambda i: writer.set(prefix + b'after/%02d' % i, b'%d' % i))
        fenced = await writer.set(prefix + b'~fence', b'')
        await until(reactor, lambda: events and events[-1].revision >= fenced.revision, 30,
                    lambda: f'the fence event ({len(events)} events, watch {watching.state})')

        expected = ([(prefix + b'before/%02d' % i, b'%d' % i, r.revision) for i, r in enumerate(before)] +
                    [(prefix + b'after/%02d' % i, b'%d' % i, r.revision) for i, r in enumerate(after)])
        expected.sort(key=lambda e: e[2])
        expected.append((prefix + b'~fence', b'', fenced.revision))
        assert [(e.key, e.kv.value, e.revision) for e in events] == expected
        assert watching.reconnects >= 1
        assert watching.state == 'watching'
        print(f'\nwatch across a restart ({restart}): {len(events)} events exactly once, '
              f'{watching.reconnects} reconnect(s)')
    finally:
        if watching is not None:
            watching.cancel()
        await client.close()
        await writer.close()


# -- 6. every kept-alive lease on one LeaseKeepAlive stream

def _streams_started(url: str, method: str) -> float:
    """How many gRPC streams of ``method`` etcd has started (its grpc_server_started_total)."""
    def read():
        with urllib.request.urlopen(url + '/metrics', timeout=5) as answer:
            for line in answer.read().decode('utf-8').splitlines():
                if line.startswith('grpc_server_started_total{') and f'grpc_method="{method}"' in line:
                    return float(line.split()[1])
        return 0.0
    return deferToThread(read)


@pytest_twisted.ensureDeferred
async def test_every_kept_alive_lease_shares_one_keepalive_stream(etcd_factory, reactor):
    server = etcd_factory()
    before = await _streams_started(server.url, 'LeaseKeepAlive')
    client = _grpc_client(reactor, server.url, timeout=5)
    try:
        leases = [await client.lease(2) for _ in range(20)]
        # Each keeps itself alive about every 2/3 s: wait until every one has done so twice.
        await until(reactor, lambda: all(lease.keepalives >= 2 for lease in leases), 15,
                    lambda: f'keepalives {[lease.keepalives for lease in leases]}')
        assert await _streams_started(server.url, 'LeaseKeepAlive') - before == 1
        [member] = client._transport._members
        assert len(member.connections()) == 1
        for lease in leases:
            assert await lease.remaining() > 0
            await lease.revoke()
    finally:
        await client.close()
