"""Code written for the earlier txaioetcd keeps working: ``deleted.previous``, an ``on_change(kv)``
that reads ``kv.key``/``kv.value``/``kv.mod_revision``, every error importable from ``txaioetcd``
and inside the one hierarchy - and the errors table of docs/client.md says what really happens."""

import inspect
import pickle

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

import txaioetcd
from txaioetcd import errors
from txaioetcd import (CompVersion, Error, InvalidArgument, KeySet, LeaseTTLTooLarge, OpGet, OpSet,
                       Transaction)

from _loopback import within


@pytest_twisted.ensureDeferred
async def test_deleted_previous_is_prev_kvs(client, prefix):
    await client.set(prefix + b'a', b'1')
    await client.set(prefix + b'b', b'2')
    deleted = await client.delete(KeySet(prefix, prefix=True), return_previous=True)
    assert deleted.previous is deleted.prev_kvs
    assert [(kv.key, kv.value) for kv in deleted.previous] == [(prefix + b'a', b'1'), (prefix + b'b', b'2')]


@pytest_twisted.ensureDeferred
async def test_an_old_style_on_change_reads_the_key_value_fields(client, reactor, prefix):
    seen = []
    both = Deferred()

    def on_change(kv):                       # as written for the earlier library
        seen.append((kv.key, kv.value, kv.mod_revision, kv.version, kv.create_revision))
        if len(seen) == 2:
            both.callback(None)

    watching = client.watch([KeySet(prefix, prefix=True)], on_change)
    await watching.ready()
    put = await client.set(prefix + b'k', b'v')
    deleted = await client.delete(prefix + b'k')
    await within(reactor, both, 5, 'the put and the delete')
    watching.cancel()
    assert seen == [(prefix + b'k', b'v', put.revision, 1, put.revision),
                    (prefix + b'k', None, deleted.header.revision, 0, 0)]


def test_every_error_is_importable_from_the_package_and_in_one_hierarchy():
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if obj.__module__ == errors.__name__]
    assert len(classes) > 40
    for cls in classes:
        assert issubclass(cls, Error), cls
        assert getattr(txaioetcd, cls.__name__) is cls, cls
        assert cls.__name__ in txaioetcd.__all__
    assert issubclass(txaioetcd.LockTimeout, txaioetcd.Timeout)
    assert issubclass(txaioetcd.PickleRefused, pickle.UnpicklingError)
    # The names' earlier homes still give the same classes.
    from txaioetcd.lease import LeaseLost
    from txaioetcd.pmap import PickleRefused
    from txaioetcd.recipes import LockTimeout, NotLeader
    assert (LeaseLost, PickleRefused, LockTimeout, NotLeader) == (
        errors.LeaseLost, errors.PickleRefused, errors.LockTimeout, errors.NotLeader)


@pytest_twisted.ensureDeferred
async def test_too_large_a_lease_ttl_is_an_invalid_argument(client):
    with pytest.raises(LeaseTTLTooLarge) as raised:
        await client.lease(9_000_000_001)
    assert isinstance(raised.value, InvalidArgument)
    assert 'too large lease TTL' in str(raised.value) and '9,000,000,000' in str(raised.value)
    assert 'grant of a 9000000001 s lease' in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_the_empty_key_is_refused_before_sending(client):
    for call in (lambda: client.set(b'', b'v'), lambda: client.get(b''), lambda: client.delete(b'')):
        with pytest.raises(ValueError, match='empty key'):
            call()


@pytest_twisted.ensureDeferred
async def test_a_transaction_takes_single_ops_as_well_as_lists(client, prefix):
    key = prefix + b'k'
    done = await client.submit(Transaction(compare=CompVersion(key, '==', 0), success=OpSet(key, b'v'),
                                           failure=OpGet(key)))
    assert done.responses[0].header.revision == done.revision
    assert (await client.get(key)).kvs[0].value == b'v'
    with pytest.raises(TypeError, match=r'Transaction success takes a list of Op\* values .* or one of '
                                        r"them, not b'oops'"):
        Transaction(success=b'oops')
