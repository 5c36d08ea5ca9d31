"""The requests of the lease, cluster, maintenance, auth and watch services, as Op values.

Together with the KV ops of ``ops.py`` these are every RPC the client makes: plain data (bytes, ints,
strings), checked by the service method that builds them, encoded by the transport. ``rpc`` names
the etcd method as etcd's ``rpc.proto`` does (``'Lease/LeaseGrant'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .keyset import KeySet
from .ops import Op

__all__ = (
    'LeaseGrant', 'LeaseRevoke', 'LeaseKeepAlive', 'LeaseTimeToLive', 'LeaseLeases',
    'MemberList', 'MaintenanceStatus', 'AlarmList', 'AlarmDisarm', 'Defragment', 'MaintenanceHash',
    'MaintenanceHashKV',
    'Authenticate', 'AuthEnable', 'AuthDisable', 'AuthStatus', 'UserAdd', 'UserDelete',
    'UserChangePassword', 'UserGrantRole', 'UserRevokeRole', 'UserList', 'UserGet', 'RoleAdd',
    'RoleDelete', 'RoleGrantPermission', 'RoleRevokePermission', 'RoleList', 'RoleGet', 'WatchCreate',
)


def _request(rpc: str, idempotent: bool, describe: str):
    """Class decorator: a frozen, slotted dataclass Op with its method, retry rule and description
    (``describe``: a text formatted with the request as ``self``, or a function of the request)."""
    def make(cls):
        cls.rpc = rpc
        cls.idempotent = idempotent
        cls.describe = describe if callable(describe) else lambda self: describe.format(self=self)
        return dataclass(frozen=True, slots=True)(cls)
    return make


# -- Lease

@_request('Lease/LeaseGrant', False, 'grant of a {self.ttl} s lease')
class LeaseGrant(Op):
    ttl: int
    lease_id: int = 0


@_request('Lease/LeaseRevoke', True, 'revoke of lease {self.lease_id:x}')
class LeaseRevoke(Op):
    lease_id: int


@_request('Lease/LeaseKeepAlive', True, 'keepalive of lease {self.lease_id:x}')
class LeaseKeepAlive(Op):
    lease_id: int


@_request('Lease/LeaseTimeToLive', True, 'time to live of lease {self.lease_id:x}')
class LeaseTimeToLive(Op):
    lease_id: int
    keys: bool = False


@_request('Lease/LeaseLeases', True, 'lease list')
class LeaseLeases(Op):
    pass


# -- Cluster and Maintenance

@_request('Cluster/MemberList', True, 'member list')
class MemberList(Op):
    pass


@_request('Maintenance/Status', True, 'status')
class MaintenanceStatus(Op):
    pass


@_request('Maintenance/Alarm', True, 'alarm list')
class AlarmList(Op):
    pass


@_request('Maintenance/Alarm', True, 'disarm {self.alarm} on member {self.member_id:x}')
class AlarmDisarm(Op):
    member_id: int
    alarm: str          # 'NOSPACE' or 'CORRUPT'


@_request('Maintenance/Defragment', True, 'defragment')
class Defragment(Op):
    pass


@_request('Maintenance/Hash', True, 'hash')
class MaintenanceHash(Op):
    pass


@_request('Maintenance/HashKV', True, 'hash_kv at revision {self.revision}')
class MaintenanceHashKV(Op):
    revision: int = 0


# -- Auth (admin calls are not idempotent: "add user" twice fails the second time)

@_request('Auth/Authenticate', True, 'authenticate as {self.name!r}')
class Authenticate(Op):
    name: str
    password: str = field(repr=False)


@_request('Auth/AuthEnable', False, 'auth enable')
class AuthEnable(Op):
    pass


@_request('Auth/AuthDisable', False, 'auth disable')
class AuthDisable(Op):
    pass


@_request('Auth/AuthStatus', True, 'auth status')
class AuthStatus(Op):
    pass


@_request('Auth/UserAdd', False, 'add user {self.name!r}')
class UserAdd(Op):
    name: str
    password: str = field(repr=False)


@_request('Auth/UserDelete', False, 'delete user {self.name!r}')
class UserDelete(Op):
    name: str


@_request('Auth/UserChangePassword', False, 'change password of {self.name!r}')
class UserChangePassword(Op):
    name: str
    password: str = field(repr=False)


@_request('Auth/UserGrantRole', False, 'grant role {self.role!r} to {self.user!r}')
class UserGrantRole(Op):
    user: str
    role: str


@_request('Auth/UserRevokeRole', False, 'revoke role {self.role!r} from {self.name!r}')
class UserRevokeRole(Op):
    name: str
    role: str


@_request('Auth/UserList', True, 'user list')
class UserList(Op):
    pass


@_request('Auth/UserGet', True, 'get user {self.name!r}')
class UserGet(Op):
    name: str


@_request('Auth/RoleAdd', False, 'add role {self.name!r}')
class RoleAdd(Op):
    name: str


@_request('Auth/RoleDelete', False, 'delete role {self.role!r}')
class RoleDelete(Op):
    role: str


@_request('Auth/RoleGrantPermission', False,
          lambda self: f'grant {self.permission} on {self.keyset.describe()} to role {self.name!r}')
class RoleGrantPermission(Op):
    name: str
    permission: str     # 'read', 'write' or 'readwrite'
    keyset: KeySet


@_request('Auth/RoleRevokePermission', False,
          lambda self: f'revoke {self.keyset.describe()} from role {self.role!r}')
class RoleRevokePermission(Op):
    role: str
    keyset: KeySet


@_request('Auth/RoleList', True, 'role list')
class RoleList(Op):
    pass


@_request('Auth/RoleGet', True, 'get role {self.role!r}')
class RoleGet(Op):
    role: str


# -- Watch

@_request('Watch/Watch', True, lambda self: f'watch of {self.keyset.describe()}')
class WatchCreate(Op):
    """One watch on a stream: from ``start_revision`` (0: from now), with the previous key-value of
    each event if ``prev_kv``; ``filters`` holds 'noput' and/or 'nodelete'."""

    keyset: KeySet
    start_revision: int = 0
    prev_kv: bool = False
    filters: tuple = ()
    progress_notify: bool = False
