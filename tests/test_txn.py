"""Transactions against a real etcd: every comparison and operator, both branches, nesting."""

import pytest
import pytest_twisted

from txaioetcd import (CompCreated, CompLease, CompModified, CompValue, CompVersion, Deleted, Failed,
                       KeySet, OpDel, OpGet, OpSet, OpTxn, Range, Revision, Success, Transaction, TxnResult)


@pytest_twisted.ensureDeferred
async def test_success_branch_returns_results_in_order(client, prefix):
    await client.set(prefix + b'k', b'v')
    await client.set(prefix + b'gone', b'x')
    result = await client.submit(Transaction(
        compare=[CompValue(prefix + b'k', '==', b'v')],
        success=[OpSet(prefix + b'k', b'v2'), OpGet(prefix + b'k'), OpDel(prefix + b'gone')],
        failure=[OpGet(prefix + b'k')]))
    assert isinstance(result, Success)
    put, got, deleted = result.responses
    assert isinstance(put, Revision) and isinstance(got, Range) and isinstance(deleted, Deleted)
    assert got.kvs[0].value == b'v2' and deleted.deleted == 1
    assert result.revision == put.revision == got.header.revision
    assert (await client.get(prefix + b'gone')).kvs == []


@pytest_twisted.ensureDeferred
async def test_failure_branch_raises_failed_with_responses(client, prefix):
    await client.set(prefix + b'k', b'v')
    with pytest.raises(Failed) as caught:
        await client.submit(Transaction(
            compare=[CompValue(prefix + b'k', '==', b'other')],
            success=[OpSet(prefix + b'k', b'never')],
            failure=[OpGet(prefix + b'k'), OpSet(prefix + b'flag', b'failed')]))
    failed = caught.value
    assert failed.responses[0].kvs[0].value == b'v'
    assert isinstance(failed.responses[1], Revision)
    assert failed.header.revision > 0
    assert 'transaction' in str(failed) and str(prefix + b'k') in str(failed)
    assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
    assert (await client.get(prefix + b'flag')).kvs[0].value == b'failed'


async def _holds(client, comp):
    try:
        await client.submit(Transaction(compare=[comp]))
        return True
    except Failed:
        return False


@pytest_twisted.ensureDeferred
async def test_every_compare_target_and_operator(client, prefix):
    key = prefix + b'k'
    first = await client.set(key, b'm')
    second = await client.set(key, b'm')   # version 2
    assert await _holds(client, CompValue(key, '==', b'm'))
    assert await _holds(client, CompValue(key, '!=', b'x'))
    assert await _holds(client, CompValue(key, '<', b'n'))
    assert await _holds(client, CompValue(key, '>', b'l'))
    assert not await _holds(client, CompValue(key, '>', b'm'))
    assert await _holds(client, CompVersion(key, '==', 2))
    assert await _holds(client, CompVersion(key, '>', 1))
    assert not await _holds(client, CompVersion(key, '<', 2))
    assert await _holds(client, CompCreated(key, '==', first.revision))
    assert await _holds(client, CompCreated(key, '<', second.revision))
    assert await _holds(client, CompModified(key, '==', second.revision))
    assert await _holds(client, CompModified(key, '!=', first.revision))
    assert await _holds(client, CompLease(key, '==', 0))
    assert not await _holds(client, CompLease(key, '>', 0))
    # An absent key has version, create and mod revision 0.
    assert await _holds(client, CompVersion(prefix + b'absent', '==', 0))
    assert await _holds(client, CompModified(prefix + b'absent', '==', 0))


@pytest_twisted.ensureDeferred
async def test_compare_over_a_range(client, prefix):
    await client.set(prefix + b'a', b'1')
    await client.set(prefix + b'b', b'1')
    ks = KeySet(prefix, prefix=True)
    assert await _holds(client, CompValue(ks, '==', b'1'))
    await client.set(prefix + b'b', b'2')
    assert not await _holds(client, CompValue(ks, '==', b'1'))


@pytest_twisted.ensureDeferred
async def test_create_if_absent_is_atomic(client, prefix):
    from twisted.internet.defer import DeferredList
    key = prefix + b'once'

    def attempt(i):
        return client.submit(Transaction(compare=[CompVersion(key, '==', 0)],
                                         success=[OpSet(key, b'%d' % i)]))

    outcomes = await DeferredList([attempt(i) for i in range(20)], consumeErrors=True)
    winners = [result for ok, result in outcomes if ok]
    losers = [result for ok, result in outcomes if not ok]
    assert len(winners) == 1 and len(losers) == 19
    assert all(failure.check(Failed) for failure in losers)


@pytest_twisted.ensureDeferred
async def test_nested_transaction(client, prefix):
    await client.set(prefix + b'outer', b'yes')
    result = await client.submit(Transaction(
        compare=[CompValue(prefix + b'outer', '==', b'yes')],
        success=[OpTxn(compare=[CompVersion(prefix + b'inner', '==', 1)],
                       success=[OpSet(prefix + b'inner', b'found')],
                       failure=[OpSet(prefix + b'inner', b'created'), OpGet(prefix + b'outer')])]))
    nested = result.responses[0]
    assert isinstance(nested, TxnResult) and not nested.succeeded
    assert isinstance(nested.responses[0], Revision) and nested.responses[1].kvs[0].value == b'yes'
    assert (await client.get(prefix + b'inner')).kvs[0].value == b'created'


@pytest_twisted.ensureDeferred
async def test_do_runs_single_ops_and_txn_without_raising(client, prefix):
    from txaioetcd import OpGet as Get
    await client.do(OpSet(prefix + b'k', b'v'))
    got = await client.do(Get(prefix + b'k'))
    assert got.kvs[0].value == b'v'
    result = await client.do(Transaction(compare=[CompValue(prefix + b'k', '==', b'x')]))
    assert isinstance(result, TxnResult) and not result.succeeded


@pytest_twisted.ensureDeferred
async def test_empty_transaction_succeeds(client):
    result = await client.submit(Transaction())
    assert isinstance(result, Success) and result.responses == []


def test_submit_takes_a_transaction(client):
    with pytest.raises(TypeError, match='submit takes a Transaction'):
        client.submit(OpGet(b'k'))
