"""Op and Comp values (plain data, checked when built) and their gateway JSON encoding: pure
functions, no server needed."""

import pytest

from txaioetcd import (CompCreated, CompLease, CompModified, CompValue, CompVersion, KeySet, OpDel,
                       OpGet, OpSet, OpTxn, Transaction)
from txaioetcd.transport._json import PATHS, encode, encode_compare


def test_get_request_carries_every_option():
    op = OpGet(KeySet(b'a', b'c'), limit=10, sort_order='descend', sort_target='mod', revision=7,
               serializable=True, keys_only=True, count_only=True, min_mod_revision=1,
               max_mod_revision=9, min_create_revision=2, max_create_revision=8)
    assert encode(op) == {
        'key': 'YQ==', 'range_end': 'Yw==', 'limit': 10, 'sort_order': 'DESCEND', 'sort_target': 'MOD',
        'revision': 7, 'serializable': True, 'keys_only': True, 'count_only': True,
        'min_mod_revision': 1, 'max_mod_revision': 9, 'min_create_revision': 2, 'max_create_revision': 8}
    assert op.idempotent and op.rpc == 'KV/Range' and PATHS[op.rpc] == 'kv/range'


def test_get_rejects_bad_options():
    with pytest.raises(ValueError, match='sort_order'):
        OpGet(b'a', sort_order='up')
    with pytest.raises(ValueError, match='sort_target'):
        OpGet(b'a', sort_target='size')
    with pytest.raises(ValueError, match='revision must be a non-negative int'):
        OpGet(b'a', revision=-1)


def test_set_request():
    assert encode(OpSet(b'k', b'v')) == {'key': 'aw==', 'value': 'dg=='}
    assert encode(OpSet(b'k', b'v', lease=0x10, return_previous=True)) == {
        'key': 'aw==', 'value': 'dg==', 'lease': 16, 'prev_kv': True}
    assert encode(OpSet(b'k', ignore_value=True, ignore_lease=True)) == {
        'key': 'aw==', 'ignore_value': True, 'ignore_lease': True}
    with pytest.raises(ValueError, match='ignore_value=True takes no value'):
        OpSet(b'k', b'v', ignore_value=True)
    with pytest.raises(ValueError, match='either lease or ignore_lease'):
        OpSet(b'k', b'v', lease=5, ignore_lease=True)
    with pytest.raises(TypeError, match='value must be bytes'):
        OpSet(b'k', 'text')
    assert not OpSet(b'k', b'v').idempotent


def test_lease_objects_are_accepted_by_id():
    class Lease:
        lease_id = 42
    assert encode(OpSet(b'k', b'v', lease=Lease()))['lease'] == 42
    with pytest.raises(TypeError, match='lease must be'):
        OpSet(b'k', b'v', lease='42')


def test_delete_request():
    assert encode(OpDel(KeySet(b'p', prefix=True), return_previous=True)) == {
        'key': 'cA==', 'range_end': 'cQ==', 'prev_kv': True}


def test_compares():
    assert encode_compare(CompValue(b'k', '==', b'v')) == {
        'key': 'aw==', 'target': 'VALUE', 'result': 'EQUAL', 'value': 'dg=='}
    assert encode_compare(CompVersion(b'k', '!=', 0))['result'] == 'NOT_EQUAL'
    assert encode_compare(CompCreated(b'k', '<', 3))['create_revision'] == 3
    assert encode_compare(CompModified(KeySet(b'p', prefix=True), '>', 3)) == {
        'key': 'cA==', 'range_end': 'cQ==', 'target': 'MOD', 'result': 'GREATER', 'mod_revision': 3}
    assert encode_compare(CompLease(b'k', '==', 9))['lease'] == 9
    with pytest.raises(ValueError, match='compare must be one of'):
        CompVersion(b'k', '<=', 1)


def test_transaction_request_and_op_count():
    txn = Transaction(compare=[CompVersion(b'a', '==', 0)],
                      success=[OpSet(b'a', b'1'), OpTxn(success=[OpGet(b'b')] * 3)],
                      failure=[OpGet(b'a')])
    assert encode(txn) == {
        'compare': [{'key': 'YQ==', 'target': 'VERSION', 'result': 'EQUAL', 'version': 0}],
        'success': [{'request_put': {'key': 'YQ==', 'value': 'MQ=='}},
                    {'request_txn': {'success': [{'request_range': {'key': 'Yg=='}}] * 3}}],
        'failure': [{'request_range': {'key': 'YQ=='}}]}
    assert txn.operation_count() == 3
    assert not txn.idempotent
    assert Transaction(success=[OpGet(b'a')]).idempotent
    assert OpTxn is Transaction
    with pytest.raises(TypeError, match='Comp'):
        Transaction(compare=[OpGet(b'a')])
    with pytest.raises(TypeError, match='Op'):
        Transaction(success=[CompVersion(b'a', '==', 0)])
