"""The JSON gateway's encoding: Op values to proto3-JSON requests, and answers to typed results.

proto3 JSON writes bytes as base64 and enums by name, and leaves out every field that holds its
default (0, false, empty) - so every reader here reads with defaults - and sends 64-bit integers as
strings, so numbers are read with ``int``. ``PATHS`` maps each RPC to its gateway path below the API
prefix (``'KV/Range'`` → ``'kv/range'``).
"""

from __future__ import annotations

from binascii import a2b_base64, b2a_base64

from .. import rpc
from ..keyset import KeySet
from ..ops import Compact, OpDel, OpGet, OpSet, Transaction
from ..results import (Alarm, Deleted, Hash, Header, KeyValue, KVHash, LeaseGranted, LeaseInfo, LeaseKept,
                       Member, Range, Revision, Status, TxnResult, WatchEvent, WatchResponse)

__all__ = ('PATHS', 'encode', 'decode', 'watch_request', 'watch_response', 'b64encode', 'b64decode')

PATHS = {
    'KV/Range': 'kv/range', 'KV/Put': 'kv/put', 'KV/DeleteRange': 'kv/deleterange', 'KV/Txn': 'kv/txn',
    'KV/Compact': 'kv/compaction', 'Watch/Watch': 'watch',
    'Lease/LeaseGrant': 'lease/grant', 'Lease/LeaseRevoke': 'lease/revoke',
    'Lease/LeaseKeepAlive': 'lease/keepalive', 'Lease/LeaseTimeToLive': 'lease/timetolive',
    'Lease/LeaseLeases': 'lease/leases', 'Cluster/MemberList': 'cluster/member/list',
    'Maintenance/Status': 'maintenance/status', 'Maintenance/Alarm': 'maintenance/alarm',
    'Maintenance/Defragment': 'maintenance/defragment', 'Maintenance/Hash': 'maintenance/hash',
    'Maintenance/HashKV': 'maintenance/hashkv',
    'Auth/Authenticate': 'auth/authenticate', 'Auth/AuthEnable': 'auth/enable',
    'Auth/AuthDisable': 'auth/disable', 'Auth/AuthStatus': 'auth/status', 'Auth/UserAdd': 'auth/user/add',
    'Auth/UserDelete': 'auth/user/delete', 'Auth/UserChangePassword': 'auth/user/changepw',
    'Auth/UserGrantRole': 'auth/user/grant', 'Auth/UserRevokeRole': 'auth/user/revoke',
    'Auth/UserList': 'auth/user/list', 'Auth/UserGet': 'auth/user/get', 'Auth/RoleAdd': 'auth/role/add',
    'Auth/RoleDelete': 'auth/role/delete', 'Auth/RoleGrantPermission': 'auth/role/grant',
    'Auth/RoleRevokePermission': 'auth/role/revoke', 'Auth/RoleList': 'auth/role/list',
    'Auth/RoleGet': 'auth/role/get',
}


def b64encode(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode('ascii')


def b64decode(text) -> bytes:
    return a2b_base64(text) if text else b''


def encode(op) -> dict:
    """The request message of ``op`` as proto3 JSON."""
    return _ENCODERS[type(op)](op)


def decode(op, obj: dict):
    """The typed result of ``op`` from its response message."""
    return _DECODERS[type(op)](op, obj)


# -- KV

def _keys(keyset: KeySet, request: dict) -> dict:
    request['key'] = b64encode(keyset.key)
    if keyset.range_end is not None:
        request['range_end'] = b64encode(keyset.range_end)
    return request


_RANGE_OPTIONS = ('limit', 'revision', 'serializable', 'keys_only', 'count_only', 'min_mod_revision',
                  'max_mod_revision', 'min_create_revision', 'max_create_revision')


def _range_request(op: OpGet) -> dict:
    request = _keys(op.keyset, {})
    for name in _RANGE_OPTIONS:
        value = getattr(op, name)
        if value:
            request[name] = value
    if op.sort_order:
        request['sort_order'] = op.sort_order.upper()
    if op.sort_target:
        request['sort_target'] = op.sort_target.upper()
    return request


def _put_request(op: OpSet) -> dict:
    request = {'key': b64encode(op.key)}
    if op.value:
        request['value'] = b64encode(op.value)
    if op.lease:
        request['lease'] = op.lease
    if op.prev_kv:
        request['prev_kv'] = True
    if op.ignore_value:
        request['ignore_value'] = True
    if op.ignore_lease:
        request['ignore_lease'] = True
    return request


def _delete_request(op: OpDel) -> dict:
    return _keys(op.keyset, {'prev_kv': True} if op.prev_kv else {})


_COMPARE_RESULTS = {'==': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER'}
_COMPARE_FIELDS = {'version': ('VERSION', 'version'), 'create': ('CREATE', 'create_revision'),
                   'mod': ('MOD', 'mod_revision'), 'value': ('VALUE', 'value'), 'lease': ('LEASE', 'lease')}
_REQUEST_FIELDS = {OpGet: 'request_range', OpSet: 'request_put', OpDel: 'request_delete_range',
                   Transaction: 'request_txn'}
_RESPONSE_FIELDS = {OpGet: 'response_range', OpSet: 'response_put', OpDel: 'response_delete_range',
                    Transaction: 'response_txn'}


def encode_compare(comp) -> dict:
    target, name = _COMPARE_FIELDS[comp.target]
    request = _keys(comp.keyset, {'target': target, 'result': _COMPARE_RESULTS[comp.compare]})
    request[name] = b64encode(comp.operand) if comp.target == 'value' else comp.operand
    return request


def _txn_request(op: Transaction) -> dict:
    request = {}
    if op.compare:
        request['compare'] = [encode_compare(comp) for comp in op.compare]
    if op.success:
        request['success'] = [{_REQUEST_FIELDS[type(o)]: encode(o)} for o in op.success]
    if op.failure:
        request['failure'] = [{_REQUEST_FIELDS[type(o)]: encode(o)} for o in op.failure]
    return request


def header(obj) -> Header:
    if not obj:
        return _NO_HEADER
    return Header(int(obj.get('cluster_id', 0)), int(obj.get('member_id', 0)), int(obj.get('revision', 0)),
                  int(obj.get('raft_term', 0)))


_NO_HEADER = Header()


def key_value(obj) -> KeyValue:
    get = obj.get
    return KeyValue(b64decode(get('key')), b64decode(get('value')), int(get('create_revision', 0)),
                    int(get('mod_revision', 0)), int(get('version', 0)), int(get('lease', 0)))


def _range(op, obj) -> Range:
    kvs = obj.get('kvs')
    return Range(header(obj.get('header')), [key_value(kv) for kv in kvs] if kvs else [],
                 int(obj.get('count', 0)), bool(obj.get('more', False)))


def _put(op, obj) -> Revision:
    prev = obj.get('prev_kv')
    return Revision(header(obj.get('header')), key_value(prev) if prev else None)


def _deleted(op, obj) -> Deleted:
    prev = obj.get('prev_kvs')
    return Deleted(header(obj.get('header')), int(obj.get('deleted', 0)),
                   [key_value(kv) for kv in prev] if prev else [])


def _txn(op: Transaction, obj) -> TxnResult:
    succeeded = bool(obj.get('succeeded', False))
    ops = op.success if succeeded else op.failure
    # A ResponseOp holds exactly one response field; proto3 JSON drops an empty one entirely, so a
    # missing field means "the default response".
    answers = obj.get('responses') or ()
    return TxnResult(header(obj.get('header')), succeeded,
                     [decode(o, item.get(_RESPONSE_FIELDS[type(o)]) or {}) for o, item in zip(ops, answers)])


def _header_only(op, obj) -> Header:
    return header(obj.get('header'))


# -- Lease (the keepalive stream's messages come as {"result": {...}})

def _granted(op, obj) -> LeaseGranted:
    return LeaseGranted(header(obj.get('header')), int(obj['ID']), int(obj.get('TTL', op.ttl)))


def _kept(op, obj) -> LeaseKept:
    result = obj.get('result', obj)
    return LeaseKept(header(result.get('header')), int(result.get('ID', op.lease_id)), int(result.get('TTL', 0)))


def _time_to_live(op, obj) -> LeaseInfo:
    return LeaseInfo(header(obj.get('header')), int(obj.get('ID', op.lease_id)), int(obj.get('TTL', -1)),
                     int(obj.get('grantedTTL', 0)), tuple(b64decode(k) for k in obj.get('keys', ())))


def _leases(op, obj) -> list:
    return [int(item['ID']) for item in obj.get('leases', ())]


# -- Cluster and Maintenance

def _members(op, obj) -> list:
    return [Member(int(m.get('ID', 0)), m.get('name', ''), tuple(m.get('peerURLs', ())),
                   tuple(m.get('clientURLs', ())), bool(m.get('isLearner', False)))
            for m in obj.get('members', ())]


def _status(op, obj) -> Status:
    return Status(header(obj.get('header')), obj.get('version', ''), int(obj.get('dbSize', 0)),
                  int(obj.get('leader', 0)), int(obj.get('raftIndex', 0)), int(obj.get('raftTerm', 0)),
                  int(obj.get('raftAppliedIndex', 0)), int(obj.get('dbSizeInUse', 0)),
                  tuple(obj.get('errors', ())), bool(obj.get('isLearner', False)))


def _alarms(op, obj) -> list:
    return [Alarm(int(a.get('memberID', 0)), a.get('alarm', 'NONE')) for a in obj.get('alarms', ())]


def _hash(op, obj) -> Hash:
    return Hash(header(obj.get('header')), int(obj.get('hash', 0)))


def _hash_kv(op, obj) -> KVHash:
    return KVHash(header(obj.get('header')), int(obj.get('hash', 0)), int(obj.get('compact_revision', 0)))


# -- Auth

_PERMISSIONS = {'read': 'READ', 'write': 'WRITE', 'readwrite': 'READWRITE'}


def _permission(op) -> dict:
    return {'name': op.name, 'perm': _keys(op.keyset, {'permType': _PERMISSIONS[op.permission]})}


def _role_permissions(op, obj) -> list:
    found = []
    for perm in obj.get('perm', ()):
        key, end = b64decode(perm.get('key')), perm.get('range_end')
        found.append((perm.get('permType', 'READ').lower(), KeySet(key, b64decode(end)) if end else KeySet(key)))
    return found


# -- Watch

_FILTERS = {'noput': 'NOPUT', 'nodelete': 'NODELETE'}


def watch_request(create: rpc.WatchCreate) -> dict:
    request = _keys(create.keyset, {})
    if create.start_revision:
        request['start_revision'] = create.start_revision
    if create.prev_kv:
        request['prev_kv'] = True
    if create.filters:
        request['filters'] = [_FILTERS[f] for f in create.filters]
    if create.progress_notify:
        request['progress_notify'] = True
    return {'create_request': request}


def watch_response(obj: dict) -> WatchResponse:
    events = obj.get('events')
    return WatchResponse(header(obj.get('header')), int(obj.get('watch_id', 0)), bool(obj.get('created')),
                         bool(obj.get('canceled')), int(obj.get('compact_revision', 0)),
                         obj.get('cancel_reason', ''), [_event(e) for e in events] if events else [])


def _event(obj) -> WatchEvent:
    prev = obj.get('prev_kv')
    return WatchEvent(obj.get('type', 'PUT'), key_value(obj.get('kv') or {}), key_value(prev) if prev else None)


def _empty(op) -> dict:
    return {}


def _fields(*names):
    return lambda op: {name: getattr(op, name) for name in names}


_ENCODERS = {
    OpGet: _range_request, OpSet: _put_request, OpDel: _delete_request, Transaction: _txn_request,
    Compact: lambda op: {'revision': op.revision, 'physical': True} if op.physical else {'revision': op.revision},
    rpc.LeaseGrant: lambda op: {'TTL': op.ttl, 'ID': op.lease_id} if op.lease_id else {'TTL': op.ttl},
    rpc.LeaseRevoke: lambda op: {'ID': op.lease_id}, rpc.LeaseKeepAlive: lambda op: {'ID': op.lease_id},
    rpc.LeaseTimeToLive: lambda op: {'ID': op.lease_id, 'keys': True} if op.keys else {'ID': op.lease_id},
    rpc.LeaseLeases: _empty, rpc.MemberList: _empty, rpc.MaintenanceStatus: _empty,
    rpc.AlarmList: lambda op: {'action': 'GET'},
    rpc.AlarmDisarm: lambda op: {'action': 'DEACTIVATE', 'memberID': op.member_id, 'alarm': op.alarm},
    rpc.Defragment: _empty, rpc.MaintenanceHash: _empty, rpc.MaintenanceHashKV: _fields('revision'),
    rpc.Authenticate: _fields('name', 'password'), rpc.AuthEnable: _empty, rpc.AuthDisable: _empty,
    rpc.AuthStatus: _empty, rpc.UserAdd: _fields('name', 'password'), rpc.UserDelete: _fields('name'),
    rpc.UserChangePassword: _fields('name', 'password'), rpc.UserGrantRole: _fields('user', 'role'),
    rpc.UserRevokeRole: _fields('name', 'role'), rpc.UserList: _empty, rpc.UserGet: _fields('name'),
    rpc.RoleAdd: _fields('name'), rpc.RoleDelete: _fields('role'), rpc.RoleGrantPermission: _permission,
    rpc.RoleRevokePermission: lambda op: _keys(op.keyset, {'role': op.role}), rpc.RoleList: _empty,
    rpc.RoleGet: _fields('role'),
}

_DECODERS = {
    OpGet: _range, OpSet: _put, OpDel: _deleted, Transaction: _txn, Compact: _header_only,
    rpc.LeaseGrant: _granted, rpc.LeaseRevoke: _header_only, rpc.LeaseKeepAlive: _kept,
    rpc.LeaseTimeToLive: _time_to_live, rpc.LeaseLeases: _leases, rpc.MemberList: _members,
    rpc.MaintenanceStatus: _status, rpc.AlarmList: _alarms, rpc.AlarmDisarm: _alarms,
    rpc.Defragment: _header_only, rpc.MaintenanceHash: _hash, rpc.MaintenanceHashKV: _hash_kv,
    rpc.Authenticate: lambda op, obj: obj.get('token', ''), rpc.AuthStatus: lambda op, obj: bool(obj.get('enabled')),
    rpc.UserList: lambda op, obj: list(obj.get('users', ())), rpc.UserGet: lambda op, obj: list(obj.get('roles', ())),
    rpc.RoleList: lambda op, obj: list(obj.get('roles', ())), rpc.RoleGet: _role_permissions,
}
for _admin in (rpc.AuthEnable, rpc.AuthDisable, rpc.UserAdd, rpc.UserDelete, rpc.UserChangePassword,
               rpc.UserGrantRole, rpc.UserRevokeRole, rpc.RoleAdd, rpc.RoleDelete, rpc.RoleGrantPermission,
               rpc.RoleRevokePermission):
    _DECODERS[_admin] = _header_only
