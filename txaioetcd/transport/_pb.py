"""The gRPC encoding: Op values to protobuf request bytes, and protobuf answers to typed results.

``METHODS`` gives each RPC its gRPC path (``'KV/Range'`` → ``/etcdserverpb.KV/Range``) and its
response message. Reading a response builds the same result dataclasses as the JSON gateway's reader,
so nothing above the transport can tell which one answered.
"""

from __future__ import annotations

from .. import rpc
from ..keyset import KeySet
from ..ops import Compact, OpDel, OpGet, OpSet, Transaction
from ..results import (Alarm, Deleted, Hash, Header, KeyValue, KVHash, LeaseGranted, LeaseInfo, LeaseKept,
                       Member, Range, Revision, Status, TxnResult, WatchEvent, WatchResponse)
from ._proto import PACKAGE, message

__all__ = ('path', 'encode', 'decode', 'watch_create', 'watch_cancel', 'watch_progress', 'watch_response',
           'keepalive_request', 'keepalive_response')

_M = message

# rpc -> (request message, response message)
_MESSAGES = {
    'KV/Range': ('RangeRequest', 'RangeResponse'), 'KV/Put': ('PutRequest', 'PutResponse'),
    'KV/DeleteRange': ('DeleteRangeRequest', 'DeleteRangeResponse'), 'KV/Txn': ('TxnRequest', 'TxnResponse'),
    'KV/Compact': ('CompactionRequest', 'CompactionResponse'),
    'Lease/LeaseGrant': ('LeaseGrantRequest', 'LeaseGrantResponse'),
    'Lease/LeaseRevoke': ('LeaseRevokeRequest', 'LeaseRevokeResponse'),
    'Lease/LeaseKeepAlive': ('LeaseKeepAliveRequest', 'LeaseKeepAliveResponse'),
    'Lease/LeaseTimeToLive': ('LeaseTimeToLiveRequest', 'LeaseTimeToLiveResponse'),
    'Lease/LeaseLeases': ('LeaseLeasesRequest', 'LeaseLeasesResponse'),
    'Cluster/MemberList': ('MemberListRequest', 'MemberListResponse'),
    'Maintenance/Status': ('StatusRequest', 'StatusResponse'),
    'Maintenance/Alarm': ('AlarmRequest', 'AlarmResponse'),
    'Maintenance/Defragment': ('DefragmentRequest', 'DefragmentResponse'),
    'Maintenance/Hash': ('HashRequest', 'HashResponse'), 'Maintenance/HashKV': ('HashKVRequest', 'HashKVResponse'),
    'Auth/Authenticate': ('AuthenticateRequest', 'AuthenticateResponse'),
    'Auth/AuthEnable': ('AuthEnableRequest', 'AuthHeaderResponse'),
    'Auth/AuthDisable': ('AuthDisableRequest', 'AuthHeaderResponse'),
    'Auth/AuthStatus': ('AuthStatusRequest', 'AuthStatusResponse'),
    'Auth/UserAdd': ('AuthUserAddRequest', 'AuthHeaderResponse'),
    'Auth/UserDelete': ('AuthUserDeleteRequest', 'AuthHeaderResponse'),
    'Auth/UserChangePassword': ('AuthUserChangePasswordRequest', 'AuthHeaderResponse'),
    'Auth/UserGrantRole': ('AuthUserGrantRoleRequest', 'AuthHeaderResponse'),
    'Auth/UserRevokeRole': ('AuthUserRevokeRoleRequest', 'AuthHeaderResponse'),
    'Auth/UserList': ('AuthUserListRequest', 'AuthUserListResponse'),
    'Auth/UserGet': ('AuthUserGetRequest', 'AuthUserGetResponse'),
    'Auth/RoleAdd': ('AuthRoleAddRequest', 'AuthHeaderResponse'),
    'Auth/RoleDelete': ('AuthRoleDeleteRequest', 'AuthHeaderResponse'),
    'Auth/RoleGrantPermission': ('AuthRoleGrantPermissionRequest', 'AuthHeaderResponse'),
    'Auth/RoleRevokePermission': ('AuthRoleRevokePermissionRequest', 'AuthHeaderResponse'),
    'Auth/RoleList': ('AuthRoleListRequest', 'AuthRoleListResponse'),
    'Auth/RoleGet': ('AuthRoleGetRequest', 'AuthRoleGetResponse'),
}
_REQUEST = {rpc_name: _M(names[0]) for rpc_name, names in _MESSAGES.items()}
_RESPONSE = {rpc_name: _M(names[1]) for rpc_name, names in _MESSAGES.items()}
_PATHS = {rpc_name: f'/{PACKAGE}.{rpc_name}'.encode('ascii') for rpc_name in _MESSAGES}
_PATHS['Watch/Watch'] = f'/{PACKAGE}.Watch/Watch'.encode('ascii')


def path(rpc_name: str) -> bytes:
    """The gRPC ``:path`` of an RPC."""
    return _PATHS[rpc_name]


def encode(op) -> bytes:
    """The request of ``op``, serialized."""
    request = _REQUEST[op.rpc]()
    _FILL[type(op)](op, request)
    return request.SerializeToString()


def decode(op, data: bytes):
    """The typed result of ``op`` from its serialized response."""
    return _READ[type(op)](op, _RESPONSE[op.rpc].FromString(data))


# -- KV

_SORT_ORDERS = {'none': 0, 'ascend': 1, 'descend': 2}
_SORT_TARGETS = {'key': 0, 'version': 1, 'create': 2, 'mod': 3, 'value': 4}
_RANGE_OPTIONS = ('limit', 'revision', 'serializable', 'keys_only', 'count_only', 'min_mod_revision',
                  'max_mod_revision', 'min_create_revision', 'max_create_revision')


def _keys(keyset: KeySet, request) -> None:
    request.key = keyset.key
    if keyset.range_end is not None:
        request.range_end = keyset.range_end


def _fill_range(op: OpGet, request) -> None:
    _keys(op.keyset, request)
    for name in _RANGE_OPTIONS:
        value = getattr(op, name)
        if value:
            setattr(request, name, value)
    if op.sort_order:
        request.sort_order = _SORT_ORDERS[op.sort_order]
    if op.sort_target:
        request.sort_target = _SORT_TARGETS[op.sort_target]


def _fill_put(op: OpSet, request) -> None:
    request.key = op.key
    request.value = op.value
    request.lease = op.lease
    request.prev_kv = op.prev_kv
    request.ignore_value = op.ignore_value
    request.ignore_lease = op.ignore_lease


def _fill_delete(op: OpDel, request) -> None:
    _keys(op.keyset, request)
    request.prev_kv = op.prev_kv


_COMPARE_RESULTS = {'==': 0, '>': 1, '<': 2, '!=': 3}
_COMPARE_TARGETS = {'version': (0, 'version'), 'create': (1, 'create_revision'), 'mod': (2, 'mod_revision'),
                    'value': (3, 'value'), 'lease': (4, 'lease')}
_OP_FIELDS = {OpGet: 'request_range', OpSet: 'request_put', OpDel: 'request_delete_range',
              Transaction: 'request_txn'}
_RESULT_FIELDS = {OpGet: 'response_range', OpSet: 'response_put', OpDel: 'response_delete_range',
                  Transaction: 'response_txn'}


def _fill_txn(op: Transaction, request) -> None:
    for comp in op.compare:
        compare = request.compare.add()
        target, name = _COMPARE_TARGETS[comp.target]
        compare.result = _COMPARE_RESULTS[comp.compare]
        compare.target = target
        _keys(comp.keyset, compare)
        setattr(compare, name, comp.operand)        # a oneof member: set even when 0
    for ops, branch in ((op.success, request.success), (op.failure, request.failure)):
        for item in ops:
            body = getattr(branch.add(), _OP_FIELDS[type(item)])
            body.SetInParent()          # chosen in the oneof even when all its fields are defaults
            _FILL[type(item)](item, body)


def header(message) -> Header:
    return Header(message.cluster_id, message.member_id, message.revision, message.raft_term)


def key_value(kv) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _read_range(op, response) -> Range:
    return Range(header(response.header), [KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision,
                                                    kv.version, kv.lease) for kv in response.kvs],
                 response.count, response.more)


def _read_put(op, response) -> Revision:
    return Revision(header(response.header),
                    key_value(response.prev_kv) if response.HasField('prev_kv') else None)


def _read_delete(op, response) -> Deleted:
    return Deleted(header(response.header), response.deleted, [key_value(kv) for kv in response.prev_kvs])


def _read_txn(op: Transaction, response) -> TxnResult:
    ops = op.success if response.succeeded else op.failure
    return TxnResult(header(response.header), response.succeeded,
                     [_READ[type(o)](o, getattr(item, _RESULT_FIELDS[type(o)]))
                      for o, item in zip(ops, response.responses)])


def _read_header(op, response) -> Header:
    return header(response.header)


def _fill_compact(op: Compact, request) -> None:
    request.revision = op.revision
    request.physical = op.physical


# -- Lease

def _fill_grant(op, request) -> None:
    request.TTL = op.ttl
    request.ID = op.lease_id


def _fill_id(op, request) -> None:
    request.ID = op.lease_id


def _fill_time_to_live(op, request) -> None:
    request.ID = op.lease_id
    request.keys = op.keys


def _read_granted(op, response) -> LeaseGranted:
    return LeaseGranted(header(response.header), response.ID, response.TTL)


def _read_kept(op, response) -> LeaseKept:
    return LeaseKept(header(response.header), response.ID or op.lease_id, response.TTL)


def _read_time_to_live(op, response) -> LeaseInfo:
    return LeaseInfo(header(response.header), response.ID or op.lease_id, response.TTL, response.grantedTTL,
                     tuple(response.keys))


# -- Cluster and Maintenance

_ALARMS = {'NONE': 0, 'NOSPACE': 1, 'CORRUPT': 2}
_ALARM_NAMES = {number: name for name, number in _ALARMS.items()}


def _fill_disarm(op, request) -> None:
    request.action = 2          # DEACTIVATE
    request.memberID = op.member_id
    request.alarm = _ALARMS[op.alarm]


def _read_members(op, response) -> list:
    return [Member(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner) for m in response.members]


def _read_status(op, response) -> Status:
    return Status(header(response.header), response.version, response.dbSize, response.leader,
                  response.raftIndex, response.raftTerm, response.raftAppliedIndex, response.dbSizeInUse,
                  tuple(response.errors), response.isLearner)


def _read_alarms(op, response) -> list:
    return [Alarm(a.memberID, _ALARM_NAMES.get(a.alarm, 'NONE')) for a in response.alarms]


# -- Auth

_PERMISSIONS = {'read': 0, 'write': 1, 'readwrite': 2}
_PERMISSION_NAMES = {number: name for name, number in _PERMISSIONS.items()}


def _fill_fields(*names):
    def fill(op, request):
        for name in names:
            setattr(request, name, getattr(op, name))
    return fill


def _fill_grant_permission(op, request) -> None:
    request.name = op.name
    request.perm.permType = _PERMISSIONS[op.permission]
    _keys(op.keyset, request.perm)


def _fill_revoke_permission(op, request) -> None:
    request.role = op.role
    _keys(op.keyset, request)


def _read_permissions(op, response) -> list:
    return [(_PERMISSION_NAMES.get(p.permType, 'read'), KeySet(p.key, p.range_end) if p.range_end
             else KeySet(p.key)) for p in response.perm]


def _fill_nothing(op, request) -> None:
    pass


_FILL = {
    OpGet: _fill_range, OpSet: _fill_put, OpDel: _fill_delete, Transaction: _fill_txn, Compact: _fill_compact,
    rpc.LeaseGrant: _fill_grant, rpc.LeaseRevoke: _fill_id, rpc.LeaseKeepAlive: _fill_id,
    rpc.LeaseTimeToLive: _fill_time_to_live, rpc.LeaseLeases: _fill_nothing, rpc.MemberList: _fill_nothing,
    rpc.MaintenanceStatus: _fill_nothing, rpc.AlarmList: _fill_nothing, rpc.AlarmDisarm: _fill_disarm,
    rpc.Defragment: _fill_nothing, rpc.MaintenanceHash: _fill_nothing,
    rpc.MaintenanceHashKV: _fill_fields('revision'), rpc.Authenticate: _fill_fields('name', 'password'),
    rpc.AuthEnable: _fill_nothing, rpc.AuthDisable: _fill_nothing, rpc.AuthStatus: _fill_nothing,
    rpc.UserAdd: _fill_fields('name', 'password'), rpc.UserDelete: _fill_fields('name'),
    rpc.UserChangePassword: _fill_fields('name', 'password'), rpc.UserGrantRole: _fill_fields('user', 'role'),
    rpc.UserRevokeRole: _fill_fields('name', 'role'), rpc.UserList: _fill_nothing,
    rpc.UserGet: _fill_fields('name'), rpc.RoleAdd: _fill_fields('name'), rpc.RoleDelete: _fill_fields('role'),
    rpc.RoleGrantPermission: _fill_grant_permission, rpc.RoleRevokePermission: _fill_revoke_permission,
    rpc.RoleList: _fill_nothing, rpc.RoleGet: _fill_fields('role'),
}

_READ = {
    OpGet: _read_range, OpSet: _read_put, OpDel: _read_delete, Transaction: _read_txn, Compact: _read_header,
    rpc.LeaseGrant: _read_granted, rpc.LeaseRevoke: _read_header, rpc.LeaseKeepAlive: _read_kept,
    rpc.LeaseTimeToLive: _read_time_to_live, rpc.LeaseLeases: lambda op, r: [s.ID for s in r.leases],
    rpc.MemberList: _read_members, rpc.MaintenanceStatus: _read_status, rpc.AlarmList: _read_alarms,
    rpc.AlarmDisarm: _read_alarms, rpc.Defragment: _read_header,
    rpc.MaintenanceHash: lambda op, r: Hash(header(r.header), r.hash),
    rpc.MaintenanceHashKV: lambda op, r: KVHash(header(r.header), r.hash, r.compact_revision),
    rpc.Authenticate: lambda op, r: r.token, rpc.AuthStatus: lambda op, r: r.enabled,
    rpc.UserList: lambda op, r: list(r.users), rpc.UserGet: lambda op, r: list(r.roles),
    rpc.RoleList: lambda op, r: list(r.roles), rpc.RoleGet: _read_permissions,
}
for _admin in (rpc.AuthEnable, rpc.AuthDisable, rpc.UserAdd, rpc.UserDelete, rpc.UserChangePassword,
               rpc.UserGrantRole, rpc.UserRevokeRole, rpc.RoleAdd, rpc.RoleDelete, rpc.RoleGrantPermission,
               rpc.RoleRevokePermission):
    _READ[_admin] = _read_header


# -- Watch: one stream of WatchRequest / WatchResponse messages carries many watches

_WatchRequest = _M('WatchRequest')
_WatchResponse = _M('WatchResponse')
_FILTERS = {'noput': 0, 'nodelete': 1}
_EVENT_TYPES = ('PUT', 'DELETE')


def watch_create(create: rpc.WatchCreate, watch_id: int) -> bytes:
    request = _WatchRequest()
    body = request.create_request
    _keys(create.keyset, body)
    body.start_revision = create.start_revision
    body.progress_notify = create.progress_notify
    body.prev_kv = create.prev_kv
    body.watch_id = watch_id
    body.filters.extend(_FILTERS[f] for f in create.filters)
    return request.SerializeToString()


def watch_cancel(watch_id: int) -> bytes:
    request = _WatchRequest()
    request.cancel_request.watch_id = watch_id
    return request.SerializeToString()


def watch_progress() -> bytes:
    request = _WatchRequest()
    request.progress_request.SetInParent()
    return request.SerializeToString()


def watch_response(data: bytes) -> WatchResponse:
    response = _WatchResponse.FromString(data)
    return WatchResponse(header(response.header), response.watch_id, response.created, response.canceled,
                         response.compact_revision, response.cancel_reason,
                         [WatchEvent(_EVENT_TYPES[e.type], key_value(e.kv),
                                     key_value(e.prev_kv) if e.HasField('prev_kv') else None)
                          for e in response.events])


# -- Lease keepalives: one stream per connection carries every kept-alive lease

_KeepAliveRequest = _M('LeaseKeepAliveRequest')
_KeepAliveResponse = _M('LeaseKeepAliveResponse')


def keepalive_request(lease_id: int) -> bytes:
    return _KeepAliveRequest(ID=lease_id).SerializeToString()


def keepalive_response(data: bytes) -> LeaseKept:
    response = _KeepAliveResponse.FromString(data)
    return LeaseKept(header(response.header), response.ID, response.TTL)
