"""Versioned records (txaioetcd.commits) against a real etcd: the commit rules (version = latest + 1,
under races too), keys, payload limits, reads, paged history, history that survives compaction,
``keep``, revert and uncommit, heads over more than one page, the byte layout of docs/formats.md, and
the live mirror (including a resync after history was compacted while it was cut off)."""

import datetime
import re
import time
from urllib.parse import urlparse

import cbor2
import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from _loopback import connected, until, within
from txaioetcd import CompCreated, KeySet, OpSet, Transaction
from txaioetcd.commits import (DEFAULT_MAX_PAYLOAD, Commit, CommitError, CommitMeta, CommitNotFound,
                               CommitStore, InvalidCommitKey, PayloadTooLarge, VersionConflict)
from txaioetcd.commits._layout import encode_record
from txaioetcd.errors import Compacted

NS = 'ns'
MTIME_RE = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$')
MTIME = '2026-12-03T06:30:00.123Z'


# -- helpers

def _head(prefix, key):
    """The head key of ``key`` as docs/formats.md spells it."""
    return prefix + NS.encode() + b'/head/' + key.encode('utf-8')


def _log(prefix, key, version):
    """The log key of ``version`` of ``key`` as docs/formats.md spells it."""
    return prefix + NS.encode() + b'/log/' + key.encode('utf-8') + b'/' + b'%020d' % version


async def _raw(client, prefix):
    """Everything under ``prefix``, read raw: {key: KeyValue}."""
    result = await client.get(KeySet(prefix, prefix=True))
    assert not result.more
    return {kv.key: kv for kv in result.kvs}


async def _logs(client, prefix, key):
    """The versions whose log keys exist, read raw."""
    found = await _raw(client, prefix + NS.encode() + b'/log/' + key.encode('utf-8') + b'/')
    return sorted(int(raw.rsplit(b'/', 1)[1]) for raw in found)


def _settled(d):
    """A Deferred whose failure becomes its value (the exception), for gatherResults."""
    return d.addErrback(lambda failure: failure.value)


async def _versions(store, key, **options):
    return [c.meta.version async for c in store.history(key, **options)]


class Counting:
    """A client that passes everything through and records the names of the KV calls made."""

    def __init__(self, client):
        self._client = client
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name in ('get', 'set', 'delete', 'submit', 'do'):
            def call(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return call
        return attr


@pytest.fixture(scope='module')
def own_etcd(etcd_factory):
    """An etcd of this module's own, for the tests that compact history."""
    return etcd_factory()


# -- committing

@pytest_twisted.ensureDeferred
async def test_first_commit_is_version_1_with_its_metadata(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    before = time.time()
    meta = await store.commit('app.conf', b'limit = 10\n', 1, 'ann', 'first version')
    after = time.time()
    assert isinstance(meta, CommitMeta)
    assert (meta.key, meta.version, meta.author, meta.comment, meta.empty) == \
        ('app.conf', 1, 'ann', 'first version', False)
    assert MTIME_RE.match(meta.mtime), meta.mtime
    stamp = datetime.datetime.fromisoformat(meta.mtime).timestamp()
    assert before - 1 <= stamp <= after + 1

    raw = await _raw(client, prefix)
    assert set(raw) == {_head(prefix, 'app.conf'), _log(prefix, 'app.conf', 1)}
    log = raw[_log(prefix, 'app.conf', 1)]
    assert meta.revision == log.create_revision == raw[_head(prefix, 'app.conf')].mod_revision > 0
    assert meta.as_json() == {'key': 'app.conf', 'version': 1, 'author': 'ann', 'comment': 'first version',
                              'mtime': meta.mtime, 'empty': False, 'revision': meta.revision}

    # The metadata read back is the metadata returned.
    assert await store.meta('app.conf') == meta
    assert await store.meta('app.conf', 1) == meta
    assert await store.get('app.conf') == Commit(meta, b'limit = 10\n')


@pytest_twisted.ensureDeferred
async def test_versions_must_be_exactly_latest_plus_one(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)

    with pytest.raises(VersionConflict) as caught:           # a new key starts at 1
        await store.commit('k', b'x', 2, 'ann')
    assert (caught.value.key, caught.value.expected_version, caught.value.provided_version) == ('k', 1, 2)
    assert await _raw(client, prefix) == {}

    assert (await store.commit('k', b'v1', 1, 'ann')).version == 1
    assert (await store.commit('k', b'v2', 2, 'bob')).version == 2
    written = await _raw(client, prefix)

    for wrong in (1, 2, 4, 10):                  # too low, repeated, too high, far too high
        with pytest.raises(VersionConflict) as caught:
            await store.commit('k', b'wrong %d' % wrong, wrong, 'eve', 'stale')
        conflict = caught.value
        assert isinstance(conflict, CommitError)
        assert (conflict.key, conflict.expected_version, conflict.provided_version) == ('k', 3, wrong)
        assert f'version {wrong} given' in str(conflict) and 'next version is 3' in str(conflict)
        assert await _raw(client, prefix) == written          # nothing written, not even the head

    meta = await store.commit('k', b'v3', 3, 'ann')
    assert meta.version == 3 and (await store.get('k')).payload == b'v3'
    assert await _logs(client, prefix, 'k') == [1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_version_0_is_refused_before_sending(client, prefix):
    """Versions start at 1: 0 (or a negative one, or not an int) is a mistake in the call, not a race,
    so it is a ValueError raised before anything is sent (the HTTP API answers it with a 400)."""
    store = CommitStore(client, NS, prefix=prefix)
    for wrong in (0, -1, 1.0, '1', None):
        with pytest.raises(ValueError, match=r"commit of 'new': version is an int >= 1"):
            await store.commit('new', b'x', wrong, 'ann')
    await store.commit('k', b'v1', 1, 'ann')
    written = await _raw(client, prefix)
    with pytest.raises(ValueError):
        await store.commit('k', b'x', 0, 'ann')
    assert await _raw(client, prefix) == written


@pytest_twisted.ensureDeferred
async def test_mtime_given_is_kept_and_the_clock_sets_the_default(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    meta = await store.commit('k', b'1', 1, 'ann', mtime=MTIME)
    assert meta.mtime == MTIME and (await store.meta('k', 1)).mtime == MTIME
    other = '2020-01-02T03:04:05+02:00'                       # any ISO 8601 time is kept as given
    assert (await store.commit('k', b'2', 2, 'ann', mtime=other)).mtime == other
    assert (await store.meta('k')).mtime == other
    for vague in ('2026-12-03', '2026-12-03T06:30:25'):       # no time, or no time zone: refused
        with pytest.raises(ValueError, match='with a time zone'):
            await store.commit('k', b'3', 3, 'ann', mtime=vague)

    pinned = CommitStore(client, NS, prefix=prefix, clock=lambda: 1796279425.220)
    meta = await pinned.commit('pinned', b'', 1, 'ann')
    assert meta.mtime == '2026-12-03T06:30:25.220Z'
    assert (await store.meta('pinned')).mtime == '2026-12-03T06:30:25.220Z'


@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_refused_before_sending(client, prefix):
    counting = Counting(client)
    store = CommitStore(counting, NS, prefix=prefix)
    refused = [
        (ValueError, dict(mtime='yesterday')),
        (ValueError, dict(mtime='2026-13-03T00:00:00Z')),
        (ValueError, dict(mtime=1796279425)),
        (ValueError, dict(author='')),
        (ValueError, dict(author=None)),
        (ValueError, dict(comment=None)),
        (TypeError, dict(payload='a str')),
        (TypeError, dict(payload=None)),
        (TypeError, dict(payload=[1, 2])),
        (ValueError, dict(empty=True)),                     # a tombstone with a payload
    ]
    for error, change in refused:
        arguments = dict(key='k', payload=b'payload', version=1, author='ann', comment='')
        arguments.update(change)
        with pytest.raises(error):
            await store.commit(**arguments)
    assert counting.calls == []
    assert await _raw(client, prefix) == {}

    # bytearray and memoryview are bytes too; an empty commit without a payload is a tombstone.
    assert (await store.commit('k', bytearray(b'ba'), 1, 'ann')).version == 1
    assert (await store.commit('k', memoryview(b'mv'), 2, 'ann')).version == 2
    assert (await store.get('k', 1)).payload == b'ba' and (await store.get('k')).payload == b'mv'
    tombstone = await store.commit('k', b'', 3, 'ann', empty=True)
    assert tombstone.empty and (await store.get('k')).payload == b''


@pytest_twisted.ensureDeferred
async def test_concurrent_writers_of_one_version_exactly_one_wins(client, etcd, reactor, prefix):
    async with connected(reactor, etcd.url, timeout=10) as second:
        stores = [CommitStore(client, NS, prefix=prefix), CommitStore(second, NS, prefix=prefix)]

        # Racing for version 1 of a new key.
        outcomes = await defer.gatherResults([
            _settled(stores[i % 2].commit('new', b'writer %d' % i, 1, f'w{i}')) for i in range(20)])
        winners = [o for o in outcomes if isinstance(o, CommitMeta)]
        losers = [o for o in outcomes if not isinstance(o, CommitMeta)]
        assert len(winners) == 1 and len(losers) == 19
        assert all(isinstance(o, VersionConflict) and (o.key, o.expected_version, o.provided_version) ==
                   ('new', 2, 1) for o in losers), losers
        head = await stores[1].get('new')
        assert head.meta == winners[0] and head.payload == b'writer %s' % winners[0].author[1:].encode()

        # Racing for version 2 once version 1 exists.
        await stores[0].commit('k', b'base', 1, 'ann')
        outcomes = await defer.gatherResults([
            _settled(stores[i % 2].commit('k', b'writer %d' % i, 2, f'w{i}')) for i in range(20)])
        winners = [o for o in outcomes if isinstance(o, CommitMeta)]
        losers = [o for o in outcomes if not isinstance(o, CommitMeta)]
        assert len(winners) == 1 and len(losers) == 19
        # The losers gave version 2; the store, whose latest is now the winner's 2, expected 3.
        assert all(isinstance(o, VersionConflict) and (o.key, o.expected_version, o.provided_version) ==
                   ('k', 3, 2) for o in losers), losers
        winner = winners[0]
        head = await stores[0].get('k')
        assert head.meta == winner and head.payload == b'writer %s' % winner.author[1:].encode()
        assert await _logs(client, prefix, 'k') == [1, 2]
        assert (await stores[1].get('k', 2)) == head
        assert await _versions(stores[0], 'k') == [2, 1]


# -- keys and payloads

@pytest_twisted.ensureDeferred
async def test_invalid_keys_are_refused(client, prefix):
    counting = Counting(client)
    store = CommitStore(counting, NS, prefix=prefix)
    for key in ('', 'a/b', '/', 'a/', b'\xff\xfe', b'gr\xfc\xdfe', 'lone \ud800 surrogate', None, 5):
        for call in (lambda: store.commit(key, b'x', 1, 'ann'), lambda: store.get(key),
                     lambda: store.get(key, 1), lambda: store.meta(key), lambda: store.uncommit(key, 'ann'),
                     lambda: store.revert(key, 1, 'ann')):
            with pytest.raises(InvalidCommitKey) as caught:
                await call()
            assert isinstance(caught.value, ValueError) and isinstance(caught.value, CommitError)
        with pytest.raises(InvalidCommitKey):
            await _versions(store, key)
    assert counting.calls == []
    assert await _raw(client, prefix) == {}


@pytest_twisted.ensureDeferred
async def test_unicode_keys(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    keys = ['grüße', '日本語', 'emoji 🎉', 'with space', 'a.b', 'a', 'nul\0inside']
    for key in keys:
        meta = await store.commit(key, key.encode('utf-8'), 1, 'ann', f'comment of {key}')
        assert meta.key == key
        await store.commit(key, key.encode('utf-8') * 2, 2, 'ann')
    raw = await _raw(client, prefix)
    for key in keys:
        assert _head(prefix, key) in raw and _log(prefix, key, 1) in raw and _log(prefix, key, 2) in raw
        assert (await store.get(key)).payload == key.encode('utf-8') * 2
        assert (await store.get(key, 1)).meta.comment == f'comment of {key}'
        assert await _versions(store, key) == [2, 1]              # 'a' does not see 'a.b'
    # A bytes key in UTF-8 names the same record.
    assert (await store.get('grüße'.encode('utf-8'))).meta.key == 'grüße'
    heads = await store.heads()
    assert list(heads) == sorted(keys, key=lambda k: k.encode('utf-8'))


@pytest_twisted.ensureDeferred
async def test_payload_limit(client, prefix):
    counting = Counting(client)
    store = CommitStore(counting, NS, prefix=prefix, max_payload=1000)
    assert (await store.commit('k', b'x' * 1000, 1, 'ann')).version == 1
    written = await _raw(client, prefix)
    counting.calls.clear()
    with pytest.raises(PayloadTooLarge) as caught:
        await store.commit('k', b'x' * 1001, 2, 'ann')
    assert isinstance(caught.value, CommitError)
    text = str(caught.value)
    digits = text.replace(',', '')
    assert "'k'" in text and '1001' in digits and '1000' in digits, text
    assert counting.calls == []
    assert await _raw(client, prefix) == written
    assert (await store.get('k')).payload == b'x' * 1000

    assert DEFAULT_MAX_PAYLOAD == 700 * 1024
    default = CommitStore(counting, NS, prefix=prefix)
    assert default.max_payload == 700 * 1024
    # The default fits etcd's default request limit: the largest payload allowed commits.
    big = bytes(range(256)) * (700 * 4)
    assert len(big) == 700 * 1024
    assert (await default.commit('big', big, 1, 'ann')).version == 1
    assert (await default.get('big')).payload == big and (await default.get('big', 1)).payload == big
    counting.calls.clear()
    with pytest.raises(PayloadTooLarge):
        await default.commit('big', big + b'!', 2, 'ann')
    assert counting.calls == []
    assert await _logs(client, prefix, 'big') == [1]


# -- reading

@pytest_twisted.ensureDeferred
async def test_get_and_meta_of_latest_and_of_a_version(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    first = await store.commit('k', b'one', 1, 'ann', 'c1', mtime=MTIME)
    second = await store.commit('k', b'two', 2, 'bob', 'c2')
    assert await store.get('k') == Commit(second, b'two')
    assert await store.get('k', 1) == Commit(first, b'one')
    assert await store.get('k', 2) == Commit(second, b'two')
    assert await store.meta('k') == second and await store.meta('k', 1) == first

    with pytest.raises(CommitNotFound) as caught:
        await store.get('nothing')
    error = caught.value
    assert isinstance(error, KeyError) and isinstance(error, CommitError)
    assert str(error) == "no commit of 'nothing' in namespace 'ns'"
    for version in (3, 99):
        with pytest.raises(CommitNotFound) as caught:
            await store.get('k', version)
        assert str(caught.value) == f"no version {version} of 'k' in namespace 'ns'"
        with pytest.raises(KeyError):
            await store.meta('k', version)
    with pytest.raises(CommitNotFound):
        await store.meta('nothing', 1)
    with pytest.raises(ValueError):
        await store.get('k', 0)
    # Another namespace under the same prefix is another store.
    with pytest.raises(CommitNotFound):
        await CommitStore(client, 'other', prefix=prefix).get('k')


@pytest_twisted.ensureDeferred
async def test_history_newest_first_paged(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    metas = []
    for version in range(1, 131):
        metas.append(await store.commit('k', b'payload %d' % version, version, 'ann', f'c{version}'))
    await store.commit('k0', b'neighbour', 1, 'ann')
    await store.commit('j', b'neighbour', 1, 'ann')

    counting = Counting(client)
    paged = CommitStore(counting, NS, prefix=prefix)
    history = [c async for c in paged.history('k')]
    assert [c.meta.version for c in history] == list(range(130, 0, -1))
    assert counting.calls == ['get', 'get']                   # 100 per request
    assert [c.meta for c in history] == metas[::-1]
    assert [c.payload for c in history] == [b'payload %d' % v for v in range(130, 0, -1)]

    assert await _versions(store, 'k', before=50) == list(range(49, 0, -1))
    assert await _versions(store, 'k', limit=10) == list(range(130, 120, -1))
    assert await _versions(store, 'k', before=120, limit=105) == list(range(119, 14, -1))
    assert await _versions(store, 'k', before=131) == list(range(130, 0, -1))
    assert await _versions(store, 'k', before=1000, limit=3) == [130, 129, 128]
    assert await _versions(store, 'k', before=2) == [1]
    assert await _versions(store, 'k', before=1) == []
    assert await _versions(store, 'k', limit=0) == []
    assert await _versions(store, 'k', limit=1) == [130]
    assert await _versions(store, 'k0') == [1]
    assert await _versions(store, 'nothing') == []


@pytest_twisted.ensureDeferred
async def test_history_survives_compaction(own_etcd, reactor, prefix):
    async with connected(reactor, own_etcd.url, timeout=10) as client:
        store = CommitStore(client, NS, prefix=prefix)
        metas = [await store.commit('k', b'v%d' % v, v, 'ann', f'c{v}') for v in range(1, 31)]
        current = (await client.get(b'anything')).header.revision
        await client.compact(current, physical=True)
        # History before ``current`` is gone from etcd ...
        with pytest.raises(Compacted):
            await client.get(_head(prefix, 'k'), revision=metas[0].revision)
        # ... but every version is still readable, with its revision.
        for meta in metas:
            commit = await store.get('k', meta.version)
            assert commit == Commit(meta, b'v%d' % meta.version)
        assert [c.meta async for c in store.history('k')] == metas[::-1]
        assert await store.get('k') == Commit(metas[-1], b'v30')
        assert (await store.commit('k', b'v31', 31, 'ann')).version == 31


@pytest_twisted.ensureDeferred
async def test_keep_the_newest_versions_only(client, prefix):
    store = CommitStore(client, NS, prefix=prefix, keep=3)
    metas = [await store.commit('k', b'v%d' % v, v, 'ann') for v in range(1, 7)]
    await store.commit('other', b'o', 1, 'ann')
    assert await _logs(client, prefix, 'k') == [4, 5, 6]
    assert await _logs(client, prefix, 'other') == [1]
    for gone in (1, 2, 3):
        with pytest.raises(CommitNotFound):
            await store.get('k', gone)
    assert await store.get('k', 4) == Commit(metas[3], b'v4')
    assert await _versions(store, 'k') == [6, 5, 4]
    assert await store.get('k') == Commit(metas[5], b'v6')

    with pytest.raises(VersionConflict) as caught:
        await store.commit('k', b'stale', 6, 'eve')
    assert caught.value.expected_version == 7
    assert (await store.commit('k', b'v7', 7, 'ann')).version == 7
    assert await _logs(client, prefix, 'k') == [5, 6, 7]
    assert await _versions(store, 'k') == [7, 6, 5]
    with pytest.raises(CommitNotFound):
        await store.revert('k', 2, 'ann')

    single = CommitStore(client, 'one', prefix=prefix, keep=1)
    for v in range(1, 5):
        await single.commit('k', b'%d' % v, v, 'ann')
    assert [c.meta.version async for c in single.history('k')] == [4]

    for keep in (0, -1, 1.5, True, '3'):
        with pytest.raises(ValueError):
            CommitStore(client, NS, prefix=prefix, keep=keep)


@pytest_twisted.ensureDeferred
async def test_revert_and_uncommit(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    for v, payload in enumerate((b'a', b'b', b'c'), 1):
        await store.commit('k', payload, v, 'ann', f'c{v}')
    await store.commit('other', b'o', 1, 'ann')

    reverted = await store.revert('k', 2, 'bob')
    assert (reverted.version, reverted.author, reverted.comment, reverted.empty) == \
        (4, 'bob', 'Revert to version 2', False)
    assert await store.get('k') == Commit(reverted, b'b')
    again = await store.revert('k', 1, 'bob', 'back to the start', mtime=MTIME)
    assert (again.version, again.comment, again.mtime) == (5, 'back to the start', MTIME)
    assert (await store.get('k')).payload == b'a'

    removed = await store.uncommit('k', 'carl', 'not needed')
    assert (removed.version, removed.author, removed.comment, removed.empty) == (6, 'carl', 'not needed', True)
    assert await store.get('k') == Commit(removed, b'')
    assert list(await store.heads()) == ['other']
    everything = await store.heads(all=True)
    assert list(everything) == ['k', 'other'] and everything['k'] == Commit(removed, b'')

    # Reverting to the tombstone removes again; reverting past it brings the key back.
    assert (await store.revert('k', 6, 'ann')).empty
    back = await store.commit('k', b'd', 8, 'ann', 'after the tombstone')
    assert back.version == 8 and not back.empty
    heads = await store.heads()
    assert list(heads) == ['k', 'other'] and heads['k'] == Commit(back, b'd')
    assert await _versions(store, 'k') == [8, 7, 6, 5, 4, 3, 2, 1]

    written = await _raw(client, prefix)
    with pytest.raises(CommitNotFound):
        await store.uncommit('nothing', 'ann')
    with pytest.raises(CommitNotFound):
        await store.revert('nothing', 1, 'ann')
    with pytest.raises(CommitNotFound):
        await store.revert('k', 99, 'ann')
    assert await _raw(client, prefix) == written


@pytest_twisted.ensureDeferred
async def test_heads_over_more_than_one_page(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    keys = ['k%04d' % i for i in range(1200)]
    started = time.monotonic()
    for start in range(0, len(keys), 100):              # real commits, 100 at a time
        await defer.gatherResults([store.commit(key, key.encode(), 1, 'ann') for key in keys[start:start + 100]])
    removed = keys[::100]
    await defer.gatherResults([store.uncommit(key, 'ann') for key in removed])
    took = time.monotonic() - started
    assert took < 60, took

    counting = Counting(client)
    paged = CommitStore(counting, NS, prefix=prefix)
    heads = await paged.heads()
    assert counting.calls == ['get', 'get']               # 1,000 per request
    live = [key for key in keys if key not in removed]
    assert list(heads) == live
    assert all(heads[key].payload == key.encode() and heads[key].meta.version == 1 for key in live)
    everything = await store.heads(all=True)
    assert list(everything) == keys
    assert all(everything[key].meta.empty and everything[key].meta.version == 2 for key in removed)


@pytest_twisted.ensureDeferred
async def test_layout_is_the_documented_one(client, prefix):
    """Records written by hand as docs/formats.md describes them are commits the store reads and
    continues; the records the store writes are those bytes."""
    store = CommitStore(client, NS, prefix=prefix)
    written = []
    for version in (1, 2, 3):
        record = {'key': 'hand', 'version': version, 'author': 'ann', 'comment': f'c{version}',
                  'mtime': MTIME, 'empty': False, 'payload': b'p%d' % version}
        data = cbor2.dumps(record)
        assert data == encode_record(CommitMeta('hand', version, 'ann', f'c{version}', MTIME, False),
                                     b'p%d' % version)
        done = await client.submit(Transaction([CompCreated(_log(prefix, 'hand', version), '==', 0)],
                                               [OpSet(_head(prefix, 'hand'), data),
                                                OpSet(_log(prefix, 'hand', version), data)]))
        written.append(done.revision)
    commit = await store.get('hand')
    assert commit == Commit(CommitMeta('hand', 3, 'ann', 'c3', MTIME, False, written[2]), b'p3')
    assert [c.meta.revision async for c in store.history('hand')] == written[::-1]
    assert list(await store.heads()) == ['hand']
    with pytest.raises(VersionConflict) as caught:
        await store.commit('hand', b'x', 3, 'bob')
    assert caught.value.expected_version == 4
    meta = await store.commit('hand', b'p4', 4, 'bob', 'by the store', mtime=MTIME)

    raw = await _raw(client, prefix)
    expected = cbor2.dumps({'key': 'hand', 'version': 4, 'author': 'bob', 'comment': 'by the store',
                            'mtime': MTIME, 'empty': False, 'payload': b'p4'})
    assert raw[_head(prefix, 'hand')].value == raw[_log(prefix, 'hand', 4)].value
    assert cbor2.loads(raw[_log(prefix, 'hand', 4)].value) == cbor2.loads(expected)
    assert raw[_log(prefix, 'hand', 4)].create_revision == meta.revision
    # Log keys sort by version, also past 9 and 99.
    assert sorted([_log(prefix, 'x', v) for v in (100, 9, 10, 1)]) == [_log(prefix, 'x', v) for v in (1, 9, 10, 100)]


@pytest_twisted.ensureDeferred
async def test_a_garbage_record_is_a_commit_error_naming_its_key(client, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    await store.commit('fine', b'ok', 1, 'ann')
    await client.set(_head(prefix, 'broken'), b'garbage')
    with pytest.raises(CommitError) as caught:
        await store.heads()
    assert repr(_head(prefix, 'broken')) in str(caught.value)
    with pytest.raises(CommitError) as caught:
        await store.get('broken')
    assert repr(_head(prefix, 'broken')) in str(caught.value)

    await client.set(_head(prefix, 'broken'), cbor2.dumps({'key': 'broken', 'version': 1}))   # fields missing
    with pytest.raises(CommitError) as caught:
        await store.heads(all=True)
    assert repr(_head(prefix, 'broken')) in str(caught.value)


# -- the mirror

@pytest_twisted.ensureDeferred
async def test_mirror_follows_commits(client, reactor, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    early = await store.commit('early', b'e1', 1, 'ann')
    await store.commit('gone', b'g1', 1, 'ann')
    await store.uncommit('gone', 'ann')
    heard = []
    mirror = store.mirror(on_commit=heard.append)
    try:
        assert await within(reactor, mirror.ready(), 10, 'the mirror') is mirror
        assert mirror.keys() == ['early'] and mirror['early'] == Commit(early, b'e1')
        assert 'gone' not in mirror and len(mirror) == 1 and heard == []

        metas = [await store.commit('b', b'b1', 1, 'ann'), await store.commit('a', b'a1', 1, 'bob'),
                 await store.commit('b', b'b2', 2, 'carl', 'second')]
        await mirror.wait_for(metas[-1].revision, timeout=10)
        assert mirror.revision >= metas[-1].revision
        assert mirror.keys() == ['a', 'b', 'early'] and len(mirror) == 3 and list(mirror) == mirror.keys()
        assert mirror['b'] == Commit(metas[2], b'b2') == await store.get('b')
        assert mirror.get('a') == Commit(metas[1], b'a1')
        assert [c.meta for c in heard] == metas

        removed = await store.uncommit('a', 'ann', 'bye')
        await mirror.wait_for(removed.revision, timeout=10)
        assert 'a' not in mirror and mirror.keys() == ['b', 'early'] and len(mirror) == 2
        assert mirror.get('a') is None and mirror.get('a', '-') == '-'
        with pytest.raises(KeyError):
            mirror['a']
        assert heard[-1] == Commit(removed, b'')                  # on_commit hears the tombstone
        assert dict(mirror.items()) == await store.heads()

        back = await store.commit('a', b'a3', 3, 'ann')
        await mirror.wait_for(back.revision, timeout=10)
        assert mirror['a'] == Commit(back, b'a3') and heard[-1].meta == back
        assert dict(mirror.items()) == await store.heads()
        assert mirror.resyncs == 0 and 'nothing' not in mirror and 5 not in mirror
        assert mirror[b'a'] == mirror['a'] and b'a' in mirror      # UTF-8 bytes keys, as in the store
        with pytest.raises(InvalidCommitKey):
            mirror.get(5)
    finally:
        mirror.close()
    assert await within(reactor, mirror.done, 10, 'the mirror to end') is None


@pytest_twisted.ensureDeferred
async def test_mirror_commits_iterates_new_commits_until_closed(client, reactor, prefix):
    store = CommitStore(client, NS, prefix=prefix)
    mirror = await within(reactor, store.mirror().ready(), 10, 'the mirror')
    try:
        before = await store.commit('before', b'x', 1, 'ann')
        await mirror.wait_for(before.revision, timeout=10)

        got = []

        async def consume():
            async for commit in mirror.commits():
                got.append(commit)
            return 'ended'

        consuming = defer.ensureDeferred(consume())
        metas = []
        for i in range(5):
            metas.append(await store.commit('k', b'v%d' % (i + 1), i + 1, 'ann'))
        metas.append(await store.uncommit('k', 'ann'))
        metas.append(await store.commit('other', b'o', 1, 'ann'))
        await mirror.wait_for(metas[-1].revision, timeout=10)
        await until(reactor, lambda: len(got) >= len(metas), 10, lambda: f'the commits, got {got}')
        assert [c.meta for c in got] == metas
        assert got[5].meta.empty and got[5].payload == b''
        assert not consuming.called
    finally:
        mirror.close()
    assert await within(reactor, consuming, 10, 'commits() to end when the mirror closed') == 'ended'
    assert [c async for c in mirror.commits()] == []            # closed: nothing more comes


class _Front(protocol.Protocol):
    def __init__(self, proxy):
        self.proxy, self.back, self.queue = proxy, None, []

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
    """A TCP proxy in front of etcd (as in test_mirror.py): ``cut()`` drops every connection and
    hangs up on new ones until ``mend()``."""

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
async def test_mirror_resyncs_after_history_was_compacted_while_cut_off(own_etcd, reactor, prefix):
    proxy = _CutProxy(reactor, own_etcd.url)
    try:
        async with connected(reactor, own_etcd.url, timeout=5) as direct, \
                connected(reactor, proxy.url, timeout=5) as behind_proxy:
            store = CommitStore(direct, NS, prefix=prefix)
            for key in ('a', 'b', 'c', 'd'):
                await store.commit(key, key.encode() + b'1', 1, 'ann')
            heard, resynced = [], []
            mirror = CommitStore(behind_proxy, NS, prefix=prefix).mirror(on_commit=heard.append,
                                                                        on_resync=resynced.append)
            try:
                await within(reactor, mirror.ready(), 10, 'the mirror')
                seen = await store.commit('d', b'd2', 2, 'ann')
                await mirror.wait_for(seen.revision, timeout=10)
                heard.clear()

                proxy.cut()
                changed = [await store.commit('a', b'a2', 2, 'bob'),
                           await store.commit('a', b'a3', 3, 'bob'),
                           await store.uncommit('b', 'bob'),
                           await store.commit('e', b'e1', 1, 'bob')]
                last = await direct.set(b'elsewhere/' + prefix, b'not mirrored')
                await direct.compact(last.revision, physical=True)
                assert mirror.resyncs == 0 and mirror.keys() == ['a', 'b', 'c', 'd']   # stale, readable

                proxy.mend()
                await until(reactor, lambda: mirror.resyncs == 1, 20, 'the resync')
                assert len(resynced) == 1 and isinstance(resynced[0], Compacted)
                assert dict(mirror.items()) == await store.heads()
                assert mirror.keys() == ['a', 'c', 'd', 'e'] and 'b' not in mirror
                # What changed meanwhile is heard once per key, latest commit, in key order.
                assert [c.meta for c in heard] == [changed[1], changed[2], changed[3]]

                after = await store.commit('c', b'c2', 2, 'ann')
                await mirror.wait_for(after.revision, timeout=10)
                assert mirror['c'] == Commit(after, b'c2') and heard[-1].meta == after
                assert dict(mirror.items()) == await store.heads() and mirror.resyncs == 1
            finally:
                mirror.close()
            await within(reactor, mirror.done, 10, 'the mirror to end')
    finally:
        await proxy.close()

