"""KV calls against a real etcd: get with every range option, set, delete, count, compaction."""

import pytest
import pytest_twisted

from txaioetcd import Deleted, KeySet, KeyValue, Range, Revision


async def _fill(client, prefix, names, value=b'v'):
    revisions = {}
    for name in names:
        revisions[name] = (await client.set(prefix + name, value + name)).revision
    return revisions


@pytest_twisted.ensureDeferred
async def test_set_get_roundtrip(client, prefix):
    written = await client.set(prefix + b'k', b'\x00\xffbinary')
    assert isinstance(written, Revision) and written.revision > 0 and written.prev_kv is None
    result = await client.get(prefix + b'k')
    assert isinstance(result, Range) and result.count == 1 and not result.more
    kv = result.kvs[0]
    assert isinstance(kv, KeyValue)
    assert (kv.key, kv.value, kv.version) == (prefix + b'k', b'\x00\xffbinary', 1)
    assert kv.create_revision == kv.mod_revision == written.revision
    assert result.header.revision >= written.revision and result.header.cluster_id


@pytest_twisted.ensureDeferred
async def test_absent_key_and_empty_value(client, prefix):
    result = await client.get(prefix + b'nothing')
    assert result.kvs == [] and result.count == 0
    await client.set(prefix + b'empty', b'')
    kv = (await client.get(prefix + b'empty')).kvs[0]
    assert kv.value == b'' and kv.version == 1


@pytest_twisted.ensureDeferred
async def test_put_alias_and_return_previous(client, prefix):
    assert type(client).put is type(client).set
    first = await client.put(prefix + b'k', b'one')
    second = await client.set(prefix + b'k', b'two', return_previous=True)
    assert second.prev_kv.value == b'one' and second.prev_kv.mod_revision == first.revision
    kv = (await client.get(prefix + b'k')).kvs[0]
    assert (kv.value, kv.version, kv.create_revision) == (b'two', 2, first.revision)


@pytest_twisted.ensureDeferred
async def test_ignore_value_touches_revision_keeps_value(client, prefix):
    await client.set(prefix + b'k', b'keep')
    touched = await client.set(prefix + b'k', b'', ignore_value=True)
    kv = (await client.get(prefix + b'k')).kvs[0]
    assert kv.value == b'keep' and kv.mod_revision == touched.revision and kv.version == 2


@pytest_twisted.ensureDeferred
async def test_ignore_lease_on_absent_lease_keeps_zero(client, prefix):
    await client.set(prefix + b'k', b'v')
    await client.set(prefix + b'k', b'w', ignore_lease=True)
    kv = (await client.get(prefix + b'k')).kvs[0]
    assert (kv.value, kv.lease) == (b'w', 0)


@pytest_twisted.ensureDeferred
async def test_range_is_half_open(client, prefix):
    await _fill(client, prefix, [b'a', b'b', b'c', b'd'])
    result = await client.get(KeySet(prefix + b'b', prefix + b'd'))
    assert [kv.key for kv in result.kvs] == [prefix + b'b', prefix + b'c']


@pytest_twisted.ensureDeferred
async def test_prefix_and_0xff_prefixes(client, prefix):
    names = [b'\xfe', b'\xff', b'\xff\x00', b'\xff\xff', b'\xff\xff\x01', b'z']
    await _fill(client, prefix, names)
    got = await client.get(KeySet(prefix + b'\xff', prefix=True))
    assert [kv.key for kv in got.kvs] == [prefix + n for n in (b'\xff', b'\xff\x00', b'\xff\xff', b'\xff\xff\x01')]
    got = await client.get(KeySet(prefix + b'\xff\xff', prefix=True))
    assert [kv.key for kv in got.kvs] == [prefix + b'\xff\xff', prefix + b'\xff\xff\x01']


@pytest_twisted.ensureDeferred
async def test_prefix_of_only_0xff_bytes_reaches_the_end_of_the_keyspace(client, prefix):
    # keys made of 0xFF only sort last; a prefix of 0xFF bytes has no upper bound (range_end = \0).
    top = b'\xff\xff\xfftxaioetcd-test-' + prefix
    await client.set(top + b'1', b'x')
    try:
        got = await client.get(KeySet(b'\xff\xff\xff', prefix=True))
        assert top + b'1' in [kv.key for kv in got.kvs]
    finally:
        await client.delete(top + b'1')


@pytest_twisted.ensureDeferred
async def test_empty_prefix_means_all_keys(client, prefix):
    await _fill(client, prefix, [b'a', b'b'])
    everything = await client.get(KeySet(b'', prefix=True), keys_only=True)
    keys = [kv.key for kv in everything.kvs]
    assert prefix + b'a' in keys and prefix + b'b' in keys
    assert everything.count == len(keys)
    assert all(kv.value == b'' for kv in everything.kvs)


@pytest_twisted.ensureDeferred
async def test_limit_and_more(client, prefix):
    await _fill(client, prefix, [b'1', b'2', b'3', b'4', b'5'])
    result = await client.get(KeySet(prefix, prefix=True), limit=2)
    assert len(result.kvs) == 2 and result.more and result.count == 5


@pytest_twisted.ensureDeferred
async def test_sort_order_and_target(client, prefix):
    await client.set(prefix + b'a', b'3')
    await client.set(prefix + b'b', b'1')
    await client.set(prefix + b'c', b'2')
    await client.set(prefix + b'a', b'3')   # a is now the most recently modified
    ks = KeySet(prefix, prefix=True)

    async def keys(**options):
        return [kv.key[len(prefix):] for kv in (await client.get(ks, **options)).kvs]

    assert await keys(sort_order='descend') == [b'c', b'b', b'a']
    assert await keys(sort_order='ascend', sort_target='value') == [b'b', b'c', b'a']
    assert await keys(sort_order='descend', sort_target='mod') == [b'a', b'c', b'b']
    assert await keys(sort_order='ascend', sort_target='create') == [b'a', b'b', b'c']
    assert (await keys(sort_order='descend', sort_target='version'))[0] == b'a'


@pytest_twisted.ensureDeferred
async def test_revision_reads_a_past_snapshot(client, prefix):
    first = await client.set(prefix + b'k', b'old')
    await client.set(prefix + b'k', b'new')
    past = await client.get(prefix + b'k', revision=first.revision)
    assert past.kvs[0].value == b'old'
    assert (await client.get(prefix + b'k')).kvs[0].value == b'new'


@pytest_twisted.ensureDeferred
async def test_serializable_keys_only_count_only(client, prefix):
    await _fill(client, prefix, [b'a', b'b', b'c'])
    ks = KeySet(prefix, prefix=True)
    local = await client.get(ks, serializable=True)
    assert len(local.kvs) == 3
    keys = await client.get(ks, keys_only=True)
    assert [kv.value for kv in keys.kvs] == [b'', b'', b'']
    counted = await client.get(ks, count_only=True)
    assert counted.kvs == [] and counted.count == 3
    assert await client.count(ks) == 3


@pytest_twisted.ensureDeferred
async def test_min_max_mod_and_create_revision_filters(client, prefix):
    revs = await _fill(client, prefix, [b'a', b'b', b'c'])
    await client.set(prefix + b'a', b'again')
    ks = KeySet(prefix, prefix=True)

    async def keys(**options):
        return [kv.key[len(prefix):] for kv in (await client.get(ks, **options)).kvs]

    assert await keys(min_mod_revision=revs[b'c']) == [b'a', b'c']
    assert await keys(max_mod_revision=revs[b'b']) == [b'b']
    assert await keys(min_create_revision=revs[b'b']) == [b'b', b'c']
    assert await keys(max_create_revision=revs[b'a']) == [b'a']


@pytest_twisted.ensureDeferred
async def test_delete_single_range_prefix(client, prefix):
    await _fill(client, prefix, [b'a', b'b', b'c', b'd', b'x/1', b'x/2'])
    one = await client.delete(prefix + b'a')
    assert isinstance(one, Deleted) and one.deleted == 1 and one.prev_kvs == []
    ranged = await client.delete(KeySet(prefix + b'b', prefix + b'd'), return_previous=True)
    assert ranged.deleted == 2 and [kv.value for kv in ranged.prev_kvs] == [b'vb', b'vc']
    pre = await client.delete(KeySet(prefix + b'x/', prefix=True))
    assert pre.deleted == 2
    left = await client.get(KeySet(prefix, prefix=True))
    assert [kv.key for kv in left.kvs] == [prefix + b'd']
    none = await client.delete(prefix + b'missing')
    assert none.deleted == 0


@pytest_twisted.ensureDeferred
async def test_large_value_roundtrip(client, prefix):
    value = bytes(range(256)) * 4096   # 1 MiB, every byte value
    await client.set(prefix + b'big', value)
    assert (await client.get(prefix + b'big')).kvs[0].value == value


@pytest_twisted.ensureDeferred
async def test_many_keys_in_one_range(client, prefix):
    from twisted.internet.defer import gatherResults
    await gatherResults([client.set(prefix + b'%05d' % i, b'x' * 100) for i in range(2000)])
    result = await client.get(KeySet(prefix, prefix=True))
    assert result.count == 2000 and len(result.kvs) == 2000
    assert result.kvs[0].key == prefix + b'00000' and result.kvs[-1].key == prefix + b'01999'


def test_wrong_key_types_fail_before_sending(client):
    with pytest.raises(TypeError, match='encode it'):
        client.get('text-key')
    with pytest.raises(TypeError, match='value must be bytes'):
        client.set(b'k', 'text')
    with pytest.raises(ValueError, match='empty key'):
        client.set(b'', b'v')
