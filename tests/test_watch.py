"""Watches against a real etcd: events, key sets, filters, history, cancel, big and split messages, and
exactly-once delivery in order across broken connections, restarts, member failures and compaction.

The faults come from real processes and sockets: a small TCP proxy written here (Twisted, on
127.0.0.1:0) sits between a client and etcd and can abort the client's watch connections at will,
refuse new ones for a while, or hand etcd's answers to the client one byte per reactor turn; etcd
servers of the module's own are stopped and started again; a member of the 3-member cluster is
stopped. Every loop is bounded in count and in time, and every wait is for an exact event or condition
(a Deferred, or ``until`` a condition holds), up to a deadline. A pause followed by an assertion is
left only where what is asserted is that something did NOT happen (a later event cannot fail a client
that works); everything a watch must have delivered is awaited up to an event of its own that comes
after it (events are in revision order per key set).
"""

import random
import time
from urllib.parse import urlparse

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from txaioetcd import Client, KeySet, OpSet, Transaction, WatchEvent
from txaioetcd.errors import ClientClosed, Compacted, Error, ServerError
from txaioetcd.transport._h2 import H2Connection
from txaioetcd.transport._json import b64encode
from txaioetcd.transport._stream import Stream

from _loopback import RequestReader, connected, transport_in_use, within, until


# -- helpers

def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


_until = until


_within = within


class _Collector:
    """``on_change`` of a watch: keeps every event."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    @property
    def revisions(self):
        return [e.revision for e in self.events]

    def summary(self):
        return [(e.type, e.kv.key, e.kv.value, e.revision) for e in self.events]


async def _watch(client, keys, **options):
    """A started watch and the collector of its events."""
    events = _Collector()
    watching = client.watch(keys, events, **options)
    await _within(client._reactor, watching.ready(), 10, 'the watch to be created')
    return watching, events


async def _ended(reactor, watching, timeout=10):
    """What ``watching.done`` ended with: None, or the exception it failed with."""
    try:
        return await _within(reactor, watching.done, timeout, 'the watch to end')
    except AssertionError:
        raise
    except Exception as error:         # noqa: BLE001 - the reason the watch ended is the result
        return error


async def _replay(reactor, client, keys, start_revision, up_to, timeout=15):
    """Every event of ``keys`` from ``start_revision`` up to revision ``up_to``, read with a new watch
    (history as etcd has it now)."""
    watching, events = await _watch(client, keys, start_revision=start_revision)
    try:
        await _until(reactor, lambda: watching.revision >= up_to, timeout,
                     f'the replay to reach revision {up_to}')
    finally:
        watching.cancel()
    return [e for e in events.events if e.revision <= up_to]


def _assert_exactly_once_in_order(events):
    revisions = [e.revision for e in events]
    assert all(a < b for a, b in zip(revisions, revisions[1:])), \
        f'revisions not strictly increasing (duplicate or out of order): {revisions}'


# -- a TCP proxy between a client and etcd

class _Front(protocol.Protocol):
    """The client's side of one proxied connection."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.back = None
        self.queue = []
        self.reader = RequestReader()
        self.is_watch = False
        self.closed = False
        self.trickle = bytearray()
        self.dripping = None
        self.hang_up_when_dripped = False
        self.hold_marker = None     # see hold_after()
        self.since_hold = bytearray()
        self.holding = False
        self.held = None

    def connectionMade(self):
        self.proxy.fronts.add(self)
        if self.proxy.refusing:
            self.proxy.refused += 1
            self.closed = True
            self.transport.abortConnection()
            return
        self.transport.setTcpNoDelay(True)
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.host, self.proxy.port)
        connectProtocol(endpoint, _Back(self)).addCallbacks(self._connected, self._failed)

    def _connected(self, back):
        self.proxy.backs.add(back)
        if self.closed:
            back.transport.abortConnection()
            return
        self.back = back
        for chunk in self.queue:
            back.transport.write(chunk)
        self.queue = []

    def _failed(self, failure):
        self.abort()

    def dataReceived(self, data):
        if self.closed:
            return
        if not self.is_watch:
            if any(request is not None and request.rpc == 'Watch/Watch' for _, request in self.reader.feed(data)):
                self.is_watch = True
        if self.back is not None:
            self.back.transport.write(data)
        else:
            self.queue.append(data)

    def from_etcd(self, data):
        if self.closed:
            return
        if not self.proxy.one_byte_at_a_time:
            self.transport.write(data)
            return
        self.trickle += data
        if self.dripping is None and not self.holding:
            self.dripping = self.proxy.reactor.callLater(0, self._drip)

    def hold_after(self, marker: bytes):
        """Trickling: stop right after the first byte that completes ``marker`` in what is passed on
        from now on, and keep every later byte back (until the connection ends). The Deferred returned
        fires with the bytes passed on from now up to there, once that last byte is written."""
        assert self.proxy.one_byte_at_a_time and self.hold_marker is None and not self.holding
        self.hold_marker = bytes(marker)
        self.since_hold = bytearray()
        self.held = defer.Deferred()
        return self.held

    def _drip(self):
        self.dripping = None
        if self.closed or not self.trickle or self.holding:
            return
        byte = bytes(self.trickle[:1])
        self.transport.write(byte)
        del self.trickle[:1]
        self.proxy.bytes_dripped += 1
        if self.hold_marker is not None:
            self.since_hold += byte
            if self.since_hold.endswith(self.hold_marker):
                self.hold_marker = None
                self.holding = True
                self.held.callback(bytes(self.since_hold))
                return
        if self.trickle:
            # Two reactor turns per byte: in between, the client reads the byte on its own.
            self.dripping = self.proxy.reactor.callLater(0, self._next_turn)
        elif self.hang_up_when_dripped:
            self.transport.loseConnection()

    def _next_turn(self):
        self.dripping = self.proxy.reactor.callLater(0, self._drip)

    def abort(self):
        self.closed = True
        if self.dripping is not None and self.dripping.active():
            self.dripping.cancel()
        self.dripping = None
        self.transport.abortConnection()
        if self.back is not None:
            self.back.transport.abortConnection()

    def connectionLost(self, reason):
        self.closed = True
        self.proxy.fronts.discard(self)
        if self.dripping is not None and self.dripping.active():
            self.dripping.cancel()
        if self.back is not None:
            self.back.transport.abortConnection()


class _Back(protocol.Protocol):
    """The proxy's connection to etcd for one client connection."""

    def __init__(self, front):
        self.front = front

    def dataReceived(self, data):
        self.front.from_etcd(data)

    def connectionLost(self, reason):
        self.front.proxy.backs.discard(self)
        front = self.front
        if not front.closed:
            if front.trickle:       # hang up once the client has had every byte
                front.hang_up_when_dripped = True
            else:
                front.transport.loseConnection()


class _Factory(protocol.Factory):
    def __init__(self, proxy):
        self.proxy = proxy

    def buildProtocol(self, addr):
        return _Front(self.proxy)


class _Proxy:
    """TCP proxy on 127.0.0.1:0 in front of an etcd URL.

    ``abort_watches()`` aborts every connection carrying a watch (→ how many); ``refusing = True``
    hangs up on every new connection until set back; ``one_byte_at_a_time = True`` passes etcd's
    bytes to the client one per write, a write every other reactor turn (``callLater(0)`` pacing),
    and ``_Front.hold_after(marker)`` then stops one connection at an exact byte of a message.
    """

    def __init__(self, reactor, target_url, one_byte_at_a_time=False):
        target = urlparse(target_url)
        self.reactor = reactor
        self.host, self.port = target.hostname, target.port
        self.one_byte_at_a_time = one_byte_at_a_time
        self.refusing = False
        self.refused = 0
        self.bytes_dripped = 0
        self.fronts = set()
        self.backs = set()
        self.listening = reactor.listenTCP(0, _Factory(self), interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.listening.getHost().port}'

    @property
    def http2(self):
        """Whether the client speaks HTTP/2 (gRPC: one connection carries every watch) through here."""
        return any(front.reader.http2 for front in self.fronts)

    def watch_connections(self):
        return [front for front in self.fronts if front.is_watch and not front.closed]

    def abort_watches(self):
        fronts = self.watch_connections()
        for front in fronts:
            front.abort()
        return len(fronts)

    async def close(self):
        for front in list(self.fronts):
            front.abort()
        for back in list(self.backs):
            back.transport.abortConnection()
        await self.listening.stopListening()


@pytest_twisted.async_yield_fixture
async def proxy(etcd, reactor):
    p = _Proxy(reactor, etcd.url)
    yield p
    await p.close()


@pytest.fixture(scope='module')
def own_etcd(etcd_factory):
    """A single-member etcd of this module's own: restarted and compacted by the tests here."""
    return etcd_factory()


# -- events

@pytest_twisted.ensureDeferred
async def test_put_and_delete_events_carry_type_kv_and_revision(client, prefix):
    key = prefix + b'k'
    watching, events = await _watch(client, key)
    assert watching.state == 'watching'
    first = await client.set(key, b'v1')
    second = await client.set(key, b'v2')
    gone = await client.delete(key)
    await _until(client._reactor, lambda: len(events.events) == 3, 10, 'three events')
    put1, put2, deleted = events.events
    assert all(isinstance(e, WatchEvent) for e in events.events)
    assert (put1.type, put1.key, put1.kv.value, put1.revision) == ('PUT', key, b'v1', first.revision)
    assert (put1.kv.create_revision, put1.kv.version) == (first.revision, 1)
    assert (put2.type, put2.kv.value, put2.revision, put2.kv.version) == ('PUT', b'v2', second.revision, 2)
    assert put2.kv.create_revision == first.revision
    assert (deleted.type, deleted.key, deleted.revision) == ('DELETE', key, gone.header.revision)
    assert deleted.kv.value == b''
    assert [e.prev_kv for e in events.events] == [None, None, None]
    assert watching.revision == gone.header.revision
    watching.cancel()
    assert await _ended(client._reactor, watching) is None


@pytest_twisted.ensureDeferred
async def test_prev_kv_when_asked(client, prefix):
    key = prefix + b'k'
    watching, events = await _watch(client, key, prev_kv=True)
    first = await client.set(key, b'old')
    await client.set(key, b'new')
    await client.delete(key)
    await _until(client._reactor, lambda: len(events.events) == 3, 10, 'three events')
    put1, put2, deleted = events.events
    assert put1.prev_kv is None
    assert (put2.prev_kv.key, put2.prev_kv.value, put2.prev_kv.mod_revision) == (key, b'old', first.revision)
    assert (deleted.type, deleted.prev_kv.value) == ('DELETE', b'new')
    watching.cancel()


@pytest_twisted.ensureDeferred
async def test_prefix_range_and_single_key_watches_see_only_their_keys(client, reactor, prefix):
    single, single_events = await _watch(client, prefix + b'b')
    ranged, range_events = await _watch(client, KeySet(prefix + b'b', prefix + b'd'))
    prefixed, prefix_events = await _watch(client, KeySet(prefix + b'p/', prefix=True))
    keys = [b'a', b'b', b'b0', b'c', b'd', b'p', b'p/', b'p/x', b'p/y/z', b'q']
    revisions = {}
    for name in keys:
        revisions[name] = (await client.set(prefix + name, name)).revision
    await client.delete(prefix + b'c')
    # The last revision touches a key of every watch: once a watch has delivered it, it has delivered
    # every earlier event it will ever get (events come in revision order), so nothing is awaited by time.
    last = (await client.submit(Transaction(success=[OpSet(prefix + b'b', b'last'),
                                                     OpSet(prefix + b'p/last', b'last')]))).revision
    everything, all_events = await _watch(client, KeySet(prefix, prefix=True), start_revision=revisions[b'a'])
    watches = (single, ranged, prefixed, everything)
    await _until(reactor, lambda: all(w.revision >= last for w in watches), 10, 'every watch to catch up')
    assert [(e.type, e.key, e.revision) for e in single_events.events] == [
        ('PUT', prefix + b'b', revisions[b'b']), ('PUT', prefix + b'b', last)]
    assert [(e.type, e.key) for e in range_events.events] == [
        ('PUT', prefix + b'b'), ('PUT', prefix + b'b0'), ('PUT', prefix + b'c'), ('DELETE', prefix + b'c'),
        ('PUT', prefix + b'b')]
    assert [e.key for e in prefix_events.events] == [prefix + b'p/', prefix + b'p/x', prefix + b'p/y/z',
                                                     prefix + b'p/last']
    assert [e.revision for e in prefix_events.events] == \
        [revisions[k] for k in (b'p/', b'p/x', b'p/y/z')] + [last]
    assert len(all_events.events) == len(keys) + 3
    for watching in watches:
        watching.cancel()


@pytest_twisted.ensureDeferred
async def test_several_key_sets_in_one_watch(client, reactor, prefix):
    events = _Collector()
    keysets = [KeySet(prefix + b'one'), KeySet(prefix + b'dir/', prefix=True),
               KeySet(prefix + b'm', prefix + b'n')]
    watching = client.watch(keysets, events)
    await _within(reactor, watching.ready(), 10, 'the watch to be created')
    written = []
    for name in (b'one', b'two', b'dir/a', b'dir/b', b'm1', b'n1', b'one', b'dir'):
        written.append((name, (await client.set(prefix + name, b'x')).revision))
    # The last revision touches a key of every key set: once each key set's stream has delivered it,
    # it has delivered every earlier event of its own (in revision order), so nothing is awaited by time.
    last = (await client.submit(Transaction(success=[OpSet(prefix + name, b'last')
                                                     for name in (b'one', b'dir/z', b'm2')]))).revision
    written += [(name, last) for name in (b'one', b'dir/z', b'm2')]
    expected = [(prefix + name, revision) for name, revision in written
                if name not in (b'two', b'n1', b'dir')]
    await _until(reactor, lambda: sum(1 for e in events.events if e.revision == last) >= 3, 10,
                 'every key set to deliver the last revision')
    assert sorted((e.key, e.revision) for e in events.events) == sorted(expected)
    # Each key set's events come in revision order.
    for keyset in keysets:
        mine = [e.revision for e in events.events if keyset.contains(e.key)]
        assert mine == sorted(mine)
    assert watching.revision == max(r for _, r in expected)
    watching.cancel()
    assert await _ended(reactor, watching) is None


@pytest_twisted.ensureDeferred
async def test_several_key_sets_keep_order_per_key_set_and_a_safe_resume_point(client, reactor, prefix):
    """Each KeySet is its own etcd watcher, and etcd replays watchers in no fixed order: events are in
    revision order per KeySet, and ``resume_revision`` never passes an event still to come."""
    for trial in range(6):
        keys = [prefix + b'%d/k%d' % (trial, i) for i in range(8)]
        revisions = [(await client.set(key, b'v')).revision for key in keys]
        seen = []

        def on_change(event, seen=seen):
            seen.append((event.key, event.revision, watching.resume_revision))

        watching = client.watch(keys, on_change, start_revision=revisions[0])
        try:
            await _until(reactor, lambda: len(seen) == 8, 10, lambda: f'the eight events (trial {trial}: {seen})')
        finally:
            watching.cancel()
        assert sorted(revision for _, revision, _ in seen) == revisions, f'trial {trial}: {seen}'
        for key in keys:
            mine = [revision for k, revision, _ in seen if k == key]
            assert mine == sorted(mine)
        for i, (_, _, resume) in enumerate(seen):
            assert all(revision >= resume for _, revision, _ in seen[i:]), f'trial {trial}: {seen}'
        assert watching.revision == revisions[-1]


@pytest_twisted.ensureDeferred
async def test_filters_noput_and_nodelete(client, reactor, prefix):
    every = KeySet(prefix, prefix=True)
    no_puts, deletes = await _watch(client, every, filters=['noput'])
    no_deletes, puts = await _watch(client, every, filters=('nodelete',))
    neither, nothing = await _watch(client, every, filters=('noput', 'nodelete'))
    for i in range(3):
        await client.set(prefix + b'%d' % i, b'v')
    await client.delete(prefix + b'1')
    last_delete = (await client.delete(KeySet(prefix, prefix=True))).header.revision
    last = (await client.set(prefix + b'last', b'v')).revision
    # Each watch delivers in revision order: at its last event it has every earlier one.
    await _until(reactor, lambda: no_deletes.revision >= last and no_puts.revision >= last_delete, 10,
                 'the put and the delete watches to catch up')
    # Only an absence is checked after this pause (the watch with both filters gets nothing at all, so
    # no event of its own can mark how far it is): it cannot fail a client that works.
    await _sleep(reactor, 0.1)
    assert [e.type for e in puts.events] == ['PUT'] * 4
    assert [(e.type, e.key) for e in deletes.events] == [
        ('DELETE', prefix + b'1'), ('DELETE', prefix + b'0'), ('DELETE', prefix + b'2')]
    assert nothing.events == []
    with pytest.raises(ValueError):
        client.watch(every, lambda e: None, filters=('nothing',))
    for watching in (no_puts, no_deletes, neither):
        watching.cancel()


@pytest_twisted.ensureDeferred
async def test_start_revision_replays_history_in_order(client, reactor, prefix):
    key = prefix + b'k'
    revisions = [(await client.set(key, b'%d' % i)).revision for i in range(6)]
    await client.delete(key)
    watching, events = await _watch(client, key, start_revision=revisions[2])
    await _until(reactor, lambda: len(events.events) == 5, 10, 'the history')
    assert [e.kv.value for e in events.events] == [b'2', b'3', b'4', b'5', b'']
    assert [e.type for e in events.events] == ['PUT'] * 4 + ['DELETE']
    assert events.revisions[:4] == revisions[2:]
    # ... and goes on with what happens now.
    later = await client.set(key, b'later')
    await _until(reactor, lambda: len(events.events) == 6, 10, 'the new event')
    assert events.events[-1].revision == later.revision
    watching.cancel()
    with pytest.raises(ValueError):
        client.watch(key, lambda e: None, start_revision=0)


@pytest_twisted.ensureDeferred
async def test_watch_events_iterates_and_ends_with_cancel(client, reactor, prefix):
    key = prefix + b'k'
    stream = client.watch_events(KeySet(prefix, prefix=True))
    await _within(reactor, stream.ready(), 10, 'the watch to be created')

    async def consume():
        seen = []
        async for event in stream:
            seen.append(event)
            if len(seen) == 3:
                stream.cancel()    # the loop ends at the next step
        return seen

    consumer = defer.ensureDeferred(consume())
    for i in range(5):
        await client.set(key, b'%d' % i)
    seen = await _within(reactor, consumer, 10, 'the iteration to end')
    assert [e.kv.value for e in seen] == [b'0', b'1', b'2']
    assert stream.watching.state == 'ended'
    assert await _ended(reactor, stream.watching) is None

    # cancel() while the consumer waits for the next event also ends the loop.
    idle = client.watch_events(key)
    await _within(reactor, idle.ready(), 10, 'the second watch to be created')
    waiting = defer.ensureDeferred(_drain(idle))
    await _sleep(reactor, 0.1)
    assert not waiting.called
    idle.cancel()
    assert await _within(reactor, waiting, 5, 'the waiting loop to end') == []


async def _drain(stream):
    return [event async for event in stream]


@pytest_twisted.ensureDeferred
async def test_cancel_ends_the_loop_even_with_events_queued(client, reactor, prefix):
    stream = client.watch_events(KeySet(prefix, prefix=True))
    await _within(reactor, stream.ready(), 10, 'the watch to be created')
    last = None
    for i in range(5):
        last = (await client.set(prefix + b'%d' % i, b'v')).revision
    await _until(reactor, lambda: stream.watching.revision >= last, 10, 'the five events')

    async def consume():
        seen = []
        async for event in stream:       # five events are waiting in the stream already
            seen.append(event)
            stream.cancel()              # "ends the loop" (docs/live.md)
        return seen

    seen = await _within(reactor, defer.ensureDeferred(consume()), 10, 'the loop to end')
    assert len(seen) == 1, f'the loop went on after cancel(): {seen}'


@pytest_twisted.ensureDeferred
async def test_cancel_stops_delivery_and_leaves_other_watches_alone(client, reactor, prefix):
    key = prefix + b'k'
    cancelled, cancelled_events = await _watch(client, key)
    other, other_events = await _watch(client, key)
    same_keys, same_events = await _watch(client, KeySet(prefix, prefix=True))
    await client.set(key, b'1')
    await _until(reactor, lambda: len(cancelled_events.events) == 1 and len(other_events.events) == 1, 10,
                 'the first event')
    cancelled.cancel()
    assert cancelled.state == 'ended'
    assert await _ended(reactor, cancelled) is None
    cancelled.cancel()                # a second cancel is harmless
    for value in (b'2', b'3'):
        await client.set(key, value)
    await _until(reactor, lambda: len(other_events.events) == 3 and len(same_events.events) == 3, 10,
                 'the other watches to see every event')
    await _sleep(reactor, 0.2)
    assert [e.kv.value for e in cancelled_events.events] == [b'1']
    assert [e.kv.value for e in other_events.events] == [b'1', b'2', b'3']
    assert other.state == 'watching' and not other.done.called
    with pytest.raises(ClientClosed):
        await cancelled.ready()
    other.cancel()
    same_keys.cancel()


@pytest_twisted.ensureDeferred
async def test_cancelling_the_done_deferred_ends_the_watch(client, reactor, prefix):
    key = prefix + b'k'
    watching, events = await _watch(client, key)
    watching.done.addErrback(lambda failure: failure.trap(defer.CancelledError))
    watching.done.cancel()
    assert watching.state == 'ended'
    control, control_events = await _watch(client, key)
    await client.set(key, b'v')
    await _until(reactor, lambda: control_events.events, 10, 'the control watch to see the put')
    await _sleep(reactor, 0.1)
    assert events.events == []
    control.cancel()


@pytest_twisted.ensureDeferred
async def test_a_callback_that_raises_does_not_stop_the_watch(client, reactor, prefix):
    key = prefix + b'k'
    seen = []

    def on_change(event):
        seen.append(event.kv.value)
        if event.kv.value == b'bad':
            raise RuntimeError('callback bug')

    watching = client.watch(key, on_change)
    await _within(reactor, watching.ready(), 10, 'the watch to be created')
    for value in (b'good', b'bad', b'after'):
        await client.set(key, value)
    await _until(reactor, lambda: len(seen) == 3, 10, 'every event')
    assert seen == [b'good', b'bad', b'after']
    assert watching.state == 'watching'
    watching.cancel()


@pytest_twisted.ensureDeferred
async def test_a_watch_etcd_refuses_ends_with_the_reason(client, reactor, prefix):
    events = _Collector()
    watching = client.watch([prefix + b'fine', KeySet(prefix + b'b', prefix + b'a')], events)  # empty range
    error = await _ended(reactor, watching)
    assert isinstance(error, ServerError) and not isinstance(error, Compacted), repr(error)
    assert 'range' in str(error)
    with pytest.raises(ClientClosed):
        await watching.ready()
    with pytest.raises(ValueError):
        client.watch([], events)
    with pytest.raises(TypeError):
        client.watch('a str key', events)


# -- large and split messages

@pytest_twisted.ensureDeferred
async def test_one_mebibyte_value_arrives_intact(client, reactor, prefix):
    key = prefix + b'big'
    rng = random.Random(1)
    first = rng.randbytes(1024 * 1024)
    second = rng.randbytes(1024 * 1024)
    watching, events = await _watch(client, key, prev_kv=True)
    await client.set(key, first)
    written = await client.set(key, second)
    await _until(reactor, lambda: len(events.events) == 2, 20, 'both big events')
    one, two = events.events
    assert one.kv.value == first and one.prev_kv is None
    assert two.kv.value == second and two.prev_kv.value == first
    assert two.revision == written.revision
    watching.cancel()


@pytest_twisted.ensureDeferred
async def test_a_hundred_puts_of_one_transaction_arrive_as_one_revision_in_order(client, reactor, prefix):
    watching, events = await _watch(client, KeySet(prefix, prefix=True))
    keys = [prefix + b'%03d' % i for i in range(100)]
    random.Random(2).shuffle(keys)          # txn order, not key order, is the event order
    done = await client.submit(Transaction(success=[OpSet(k, k[-3:]) for k in keys]))
    after = await client.set(prefix + b'after', b'x')
    await _until(reactor, lambda: len(events.events) == 101, 10, 'the 101 events')
    txn_events = events.events[:100]
    assert {e.revision for e in txn_events} == {done.revision}
    assert [e.key for e in txn_events] == keys
    assert all(e.kv.value == e.key[-3:] and e.type == 'PUT' for e in txn_events)
    assert events.events[100].revision == after.revision
    assert watching.revision == after.revision
    watching.cancel()


def _record_parser_input(monkeypatch, record, url):
    """Call ``record(parser, chunk)`` with every chunk the watch's wire parser gets from ``url``: the
    gateway's stream parser (a watch's HTTP/1.1 response body), or the HTTP/2 frame parser of the
    connection to ``url`` (gRPC)."""
    if transport_in_use() == 'grpc':
        cls, method = H2Connection, 'dataReceived'

        def mine(parser):
            return getattr(parser.owner, 'url', None) == url
    else:
        cls, method = Stream, 'data'

        def mine(parser):
            return True
    original = getattr(cls, method)

    def recording(self, chunk):
        if mine(self):
            record(self, chunk)
        return original(self, chunk)
    monkeypatch.setattr(cls, method, recording)


def _on_the_wire(value: bytes) -> bytes:
    """How an event's value is spelled in etcd's watch messages: base64 in the gateway's JSON, as it
    is in protobuf."""
    return value if transport_in_use() == 'grpc' else b64encode(value).encode('ascii')


@pytest_twisted.ensureDeferred
async def test_events_split_byte_by_byte_arrive_intact(etcd, client, reactor, prefix, monkeypatch):
    pieces = []
    trickle = _Proxy(reactor, etcd.url, one_byte_at_a_time=True)
    _record_parser_input(monkeypatch, lambda parser, chunk: pieces.append(len(chunk)), trickle.url)

    try:
        async with connected(reactor, trickle.url, timeout=30) as slow:
            events = _Collector()
            watching = slow.watch(KeySet(prefix, prefix=True), events, prev_kv=True)
            await _within(reactor, watching.ready(), 30, 'the watch to be created')
            written = []
            for i in range(8):
                value = ('välue %d ' % i).encode() + bytes(range(256)) + b'\n{"result": "not a message"}\r\n'
                written.append((prefix + b'k%d' % (i % 3), value, (await client.set(prefix + b'k%d' % (i % 3),
                                                                                     value)).revision))
            txn = Transaction(success=[OpSet(prefix + b't%d' % i, b'%d' % i) for i in range(5)])
            await client.submit(txn)
            await client.delete(prefix + b'k0')
            await _until(reactor, lambda: len(events.events) == 14, 30, 'every event through the trickle')
            assert [(e.key, e.kv.value, e.revision) for e in events.events[:8]] == written
            assert [e.prev_kv.value for e in events.events[3:8]] == [w[1] for w in written[:5]]
            assert [e.key for e in events.events[8:13]] == [prefix + b't%d' % i for i in range(5)]
            assert (events.events[13].type, events.events[13].prev_kv.value) == ('DELETE', written[6][1])
            watching.cancel()
    finally:
        await trickle.close()
    assert trickle.bytes_dripped > 3000
    # The stream parser really got the message in tiny pieces, nearly all of them single bytes.
    assert len(pieces) > 1000
    assert sum(1 for size in pieces if size == 1) > 0.9 * len(pieces)


# -- exactly once, in order, across failures

@pytest_twisted.ensureDeferred
async def test_connection_lost_in_the_middle_of_a_message_loses_and_repeats_nothing(etcd, client, reactor,
                                                                                    prefix, monkeypatch):
    """The watch connection breaks when the client's stream parser holds exactly the first part of an
    event message (the proxy stopped in the middle of the value): that half message is no event, and
    after the reconnect the event comes exactly once."""
    value = bytes(range(256)) * 2
    middle = _on_the_wire(value)[:100]                   # as the message carries it, and no other does
    received = {}                                        # parser -> every byte it got
    reached = defer.Deferred()                           # a parser has got every byte up to ``middle``
    reaching = []

    def recording(parser, chunk):
        seen = received.setdefault(parser, bytearray())
        seen += chunk
        if middle in seen and not reaching:
            # (On the next reactor turn: the test goes on outside the parser's call. The proxy holds
            # back every later byte, so what the parser has stays just this until the test acts.)
            reaching.append(reactor.callLater(0, reached.callback, parser))

    trickle = _Proxy(reactor, etcd.url, one_byte_at_a_time=True)
    _record_parser_input(monkeypatch, recording, trickle.url)
    try:
        async with connected(reactor, trickle.url, timeout=30) as slow:
            watching, events = await _watch(slow, KeySet(prefix, prefix=True))
            [front] = trickle.watch_connections()
            held = front.hold_after(middle)                 # armed before etcd sends the message
            first = (await client.set(prefix + b'a', value)).revision
            passed_on = await _within(reactor, held, 30, 'the proxy to pass on half the message')
            assert passed_on.endswith(middle)
            parser = await _within(reactor, reached, 30, "the client's parser to get the half message")
            # The proxy keeps the rest back: the parser has every byte up to the middle of the value,
            # and nothing after it.
            assert received[parser].endswith(middle)
            if transport_in_use() == 'gateway':     # on a line not yet ended
                assert b'"events"' in passed_on
                unfinished = received[parser].rsplit(b'\n', 1)[-1]
                assert unfinished.startswith(b'{') and b'"events"' in unfinished
            assert front.holding and len(front.trickle) >= len(_on_the_wire(value)) - len(middle)   # the rest is held
            assert events.events == []           # half a message is not an event
            assert watching.revision == 0 and watching.reconnects == 0
            assert trickle.abort_watches() == 1
            second = (await client.set(prefix + b'b', value)).revision
            await _until(reactor, lambda: watching.revision >= second, 30, 'both events')
            assert [(e.key, e.kv.value, e.revision) for e in events.events] == \
                [(prefix + b'a', value, first), (prefix + b'b', value, second)]
            assert watching.reconnects == 1
            watching.cancel()
    finally:
        await trickle.close()


@pytest_twisted.ensureDeferred
async def test_aborted_watch_connections_lose_and_repeat_nothing(proxy, client, reactor, prefix):
    async with connected(reactor, proxy.url) as through_proxy:
        watching, events = await _watch(through_proxy, KeySet(prefix, prefix=True))
        written = []
        aborted = 0
        started = time.monotonic()
        for i in range(300):
            assert time.monotonic() - started < 30, 'the writer took too long'
            written.append((await client.set(prefix + b'%03d' % (i % 17), b'%d' % i)).revision)
            if i % 37 == 36:
                # The writer goes on at once: the watch must come back from where it was.
                await _until(reactor, lambda: proxy.watch_connections(), 10, 'a watch connection')
                aborted += proxy.abort_watches()
                if i % 74 == 73:
                    # And once more as soon as it is back (perhaps before it was even created).
                    await _until(reactor, lambda: proxy.watch_connections(), 10, 'the watch to reconnect')
                    aborted += proxy.abort_watches()
        await _until(reactor, lambda: watching.revision >= written[-1], 20, 'the watch to catch up')
        await _sleep(reactor, 0.1)
        assert aborted == 12
        assert watching.reconnects >= aborted
        assert events.revisions == written
        assert [e.kv.value for e in events.events] == [b'%d' % i for i in range(300)]
        assert watching.state == 'watching'
        watching.cancel()


async def _write_until(reactor, writer, prefix, count, time_limit, acknowledged, failures):
    """Write keys ``prefix + i`` (i < count) one after another, each retried until acknowledged."""
    deadline = time.monotonic() + time_limit
    i = 0
    while i < count and time.monotonic() < deadline:
        try:
            result = await writer.set(prefix + b'%04d' % i, b'%d' % i, timeout=2)
        except Error as error:
            failures.append(type(error).__name__)
            await _sleep(reactor, 0.05)
            continue
        acknowledged.append((i, result.revision))
        i += 1


@pytest_twisted.ensureDeferred
async def test_watch_across_a_restart_of_etcd(own_etcd, reactor, prefix):
    server = own_etcd
    async with connected(reactor, server.url) as watcher, connected(reactor, server.url) as writer:
        start = (await writer.set(prefix + b'start', b'')).revision
        watching, events = await _watch(watcher, KeySet(prefix, prefix=True))
        acknowledged, failures = [], []
        writing = defer.ensureDeferred(_write_until(reactor, writer, prefix, 300, 30, acknowledged, failures))
        try:
            await _until(reactor, lambda: len(acknowledged) >= 100, 20, '100 writes before the restart')
            server.stop()
            # etcd stays down until the writer has seen it so (not for some time): a write fails.
            await _until(reactor, lambda: failures, 10, 'a write to fail while etcd is down')
            server.start()
            await _within(reactor, writing, 40, 'the writer')
        finally:
            server.start()
        assert len(acknowledged) == 300, f'only {len(acknowledged)} writes in time ({len(failures)} failed)'
        assert failures, 'no write failed: the restart happened between writes?'
        last = max(revision for _, revision in acknowledged)
        await _until(reactor, lambda: watching.revision >= last, 20, 'the watch to catch up')
        assert watching.reconnects >= 1
        assert watching.state == 'watching'
        watching.cancel()
        _assert_exactly_once_in_order(events.events)
        history = await _replay(reactor, watcher, KeySet(prefix, prefix=True), start + 1, last)
        # The watch starts "now" as its member sees it: one that had not applied the 'start' write yet
        # delivers it too. Compare what came after it.
        assert [(e.key, e.kv.value, e.revision) for e in events.events if start < e.revision <= last] == \
            [(e.key, e.kv.value, e.revision) for e in history]
        seen = set(events.revisions)
        assert all(revision in seen for _, revision in acknowledged)


@pytest.mark.cluster
@pytest.mark.parametrize('victim', ['follower', 'leader'])
@pytest_twisted.ensureDeferred
async def test_watch_across_a_stopped_cluster_member(cluster, reactor, prefix, victim):
    """The member the watch stream is on - a follower, or the leader - stops while 1,000 writes go on."""
    everything = KeySet(prefix, prefix=True)
    leader = cluster.leader()
    watched = leader if victim == 'leader' else (leader + 1) % len(cluster.endpoints)
    endpoints = cluster.endpoints[watched:] + cluster.endpoints[:watched]     # the watch goes to the first
    stopped = False
    async with connected(reactor, endpoints=endpoints) as watcher, \
            connected(reactor, endpoints=cluster.endpoints) as writer:
        start = (await writer.set(prefix + b'start', b'')).revision
        watching, events = await _watch(watcher, everything)
        assert watcher.endpoint == cluster.endpoints[watched]
        acknowledged, failures = [], []
        writing = defer.ensureDeferred(_write_until(reactor, writer, prefix, 1000, 30, acknowledged,
                                                    failures))
        try:
            await _until(reactor, lambda: len(acknowledged) >= 200, 20, '200 writes before the stop')
            cluster.stop_member(watched)
            stopped = True
            await _within(reactor, writing, 40, 'the writer')
        finally:
            if stopped:
                cluster.start_member(watched)
        assert len(acknowledged) == 1000, f'only {len(acknowledged)} writes in time ({failures[:5]})'
        last = max(revision for _, revision in acknowledged)
        await _until(reactor, lambda: watching.revision >= last, 20, 'the watch to catch up')
        assert watching.reconnects >= 1
        assert watcher.endpoint != cluster.endpoints[watched]
        watching.cancel()
        _assert_exactly_once_in_order(events.events)
        seen = set(events.revisions)
        missing = [(i, revision) for i, revision in acknowledged if revision not in seen]
        assert not missing, f'acknowledged writes the watch never delivered: {missing[:10]}'
        history = await _replay(reactor, writer, everything, start + 1, last)
        # The watch starts "now" as its member sees it: one that had not applied the 'start' write yet
        # delivers it too. Compare what came after it.
        assert [(e.key, e.kv.value, e.revision) for e in events.events if start < e.revision <= last] == \
            [(e.key, e.kv.value, e.revision) for e in history]


# -- compaction

@pytest_twisted.ensureDeferred
async def test_start_revision_below_the_compaction_fails_with_compacted(own_etcd, reactor, prefix):
    async with connected(reactor, own_etcd.url) as client:
        key = prefix + b'k'
        old = (await client.set(key, b'1')).revision
        await client.set(key, b'2')
        compact = (await client.set(key, b'3')).revision
        await client.compact(compact)
        events = _Collector()
        watching = client.watch(key, events, start_revision=old)
        error = await _ended(reactor, watching)
        assert isinstance(error, Compacted), repr(error)
        assert error.compact_revision == compact
        assert str(compact) in str(error)
        assert events.events == []
        assert watching.state == 'ended'
        with pytest.raises(ClientClosed):
            await watching.ready()

        # The async iterator raises the same error.
        stream = client.watch_events(key, start_revision=old)
        with pytest.raises(Compacted) as caught:
            await _within(reactor, defer.ensureDeferred(_drain(stream)), 10, 'the iterator to raise')
        assert caught.value.compact_revision == compact

        # From the compact revision itself the history is still there.
        fine, fine_events = await _watch(client, key, start_revision=compact)
        await _until(reactor, lambda: fine_events.events, 10, 'the event at the compact revision')
        assert [e.kv.value for e in fine_events.events] == [b'3']
        fine.cancel()


@pytest_twisted.ensureDeferred
async def test_watch_disconnected_while_history_is_compacted_ends_with_compacted(own_etcd, reactor, prefix):
    gap = _Proxy(reactor, own_etcd.url)
    try:
        async with connected(reactor, gap.url) as through_gap, connected(reactor, own_etcd.url) as direct:
            key = prefix + b'k'
            watching, events = await _watch(through_gap, key)
            seen = (await direct.set(key, b'seen')).revision
            await _until(reactor, lambda: watching.revision == seen, 10, 'the first event')
            gap.refusing = True
            assert gap.abort_watches() == 1
            missed = [(await direct.set(key, b'missed %d' % i)).revision for i in range(3)]
            compact = (await direct.set(prefix + b'other', b'x')).revision
            await direct.compact(compact)
            # The watch tries to come back meanwhile, and is refused.
            await _until(reactor, lambda: gap.refused >= 1, 10, 'the watch to try to come back')
            assert watching.state == 'reconnecting'
            gap.refusing = False
            error = await _ended(reactor, watching, timeout=15)
            assert isinstance(error, Compacted), repr(error)
            assert error.compact_revision == compact
            assert [e.kv.value for e in events.events] == [b'seen']      # nothing skipped silently
            assert watching.revision == seen < missed[0]
    finally:
        await gap.close()


@pytest_twisted.ensureDeferred
async def test_watch_disconnected_while_history_is_compacted_up_to_its_position_goes_on(own_etcd, reactor,
                                                                                         prefix):
    """The boundary case: compacted exactly up to the next revision the watch needs - nothing is lost,
    so the watch resumes."""
    gap = _Proxy(reactor, own_etcd.url)
    try:
        async with connected(reactor, gap.url) as through_gap, connected(reactor, own_etcd.url) as direct:
            key = prefix + b'k'
            watching, events = await _watch(through_gap, key)
            await direct.set(key, b'seen')
            await _until(reactor, lambda: events.events, 10, 'the first event')
            gap.refusing = True
            gap.abort_watches()
            missed = (await direct.set(key, b'after')).revision
            await direct.compact(missed)
            gap.refusing = False
            await _until(reactor, lambda: len(events.events) == 2, 15, 'the event after the gap')
            assert [e.kv.value for e in events.events] == [b'seen', b'after']
            assert watching.state == 'watching'
            watching.cancel()
    finally:
        await gap.close()


@pytest_twisted.ensureDeferred
async def test_progress_notifications_keep_an_idle_key_set_current_across_compaction(etcd_factory, reactor,
                                                                                      prefix):
    """An idle key set learns from progress notifications how far it is current, so a reconnect after
    a compaction resumes from there instead of from before the compaction."""
    server = etcd_factory(extra_args=['--experimental-watch-progress-notify-interval=100ms'])
    gap = _Proxy(reactor, server.url)
    try:
        async with connected(reactor, gap.url) as through_gap, connected(reactor, server.url) as direct:
            idle, busy = prefix + b'idle', KeySet(prefix + b'busy/', prefix=True)
            watching, events = await _watch(through_gap, [idle, busy], progress_notify=True)
            written = [(await direct.set(prefix + b'busy/%d' % i, b'%d' % i)).revision for i in range(5)]
            await _until(reactor, lambda: watching.revision == written[-1], 10, 'the busy events')
            # A progress notification has told the idle key set it is current past the busy events:
            # resume_revision is the lowest next revision of the two key sets.
            await _until(reactor, lambda: watching.resume_revision > written[-1], 10,
                         'a progress notification for the idle key set')
            gap.refusing = True
            # One connection per key set over HTTP/1.1; one Watch stream for both over HTTP/2.
            assert gap.abort_watches() == (1 if gap.http2 else 2)
            written += [(await direct.set(prefix + b'busy/%d' % i, b'%d' % i)).revision for i in range(5, 8)]
            await direct.compact(written[5])            # the busy key set's next event stays readable
            gap.refusing = False
            idle_put = (await direct.set(idle, b'now')).revision
            await _until(reactor, lambda: len(events.events) >= len(written) + 1, 15,
                         'the watch to come back')
            await _sleep(reactor, 0.1)
            assert watching.state == 'watching'
            # (In order per key set; across key sets see test_several_key_sets_keep_order_per_key_set...)
            assert [e.revision for e in events.events if e.key != idle] == written
            assert [e.revision for e in events.events if e.key == idle] == [idle_put]
            watching.cancel()
    finally:
        await gap.close()


# -- closed clients

@pytest_twisted.ensureDeferred
async def test_watch_of_a_closed_client_ends(etcd, reactor, prefix):
    """Closing the client is a deliberate end, like cancel(): ``done`` fires None, loops end."""
    client = Client(reactor, url=etcd.url, timeout=5)
    watching, events = await _watch(client, prefix + b'k')
    stream = client.watch_events(prefix + b'k')
    await _within(reactor, stream.ready(), 10, 'the iterator watch to be created')
    looping = defer.ensureDeferred(_drain(stream))
    await client.close()
    assert await _ended(reactor, watching) is None
    assert watching.state == 'ended'
    assert await _within(reactor, looping, 10, 'the iterator to end') == []
    assert await _ended(reactor, stream.watching) is None

    # A watch asked of a client already closed ends at once.
    late = client.watch(prefix + b'k', events)
    assert late.state == 'ended'
    assert await _ended(reactor, late) is None
    with pytest.raises(ClientClosed):
        await late.ready()
    assert events.events == []


@pytest_twisted.ensureDeferred
async def test_watch_that_is_reconnecting_ends_when_the_client_closes(proxy, reactor, prefix):
    client = Client(reactor, url=proxy.url, timeout=5)
    watching, _ = await _watch(client, prefix + b'k')
    proxy.refusing = True
    proxy.abort_watches()
    await _until(reactor, lambda: watching.state == 'reconnecting', 10, 'the watch to reconnect')
    await client.close()
    assert await _ended(reactor, watching) is None
    assert watching.state == 'ended'
