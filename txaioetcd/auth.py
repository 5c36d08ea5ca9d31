"""The Auth service: authenticate, and the admin calls that set authentication up.

With ``Client(..., username=..., password=...)`` the client authenticates before its first call and
again whenever etcd rejects the token (expired, or the server restarted): the call that was rejected
is sent once more with the new token. A rejected token means the request was not processed, so this is
safe for writes too.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from .keyset import KeySet
from .ops import b64encode
from .results import b64decode

__all__ = ('Auth',)

_PERMISSIONS = {'read': 'READ', 'write': 'WRITE', 'readwrite': 'READWRITE'}


class Auth:
    """Auth calls of the Client (mixed into it; the Client keeps ``_credentials`` and ``_token``)."""

    def authenticate(self, username: str, password: str, *, timeout: float | None = None) -> Deferred:
        """Log in → the token, which the client then sends with every request (and renews itself)."""
        self._credentials = (username, password)
        return self._login(timeout)

    def _login(self, timeout=None) -> Deferred:
        """One authentication at a time; callers that arrive meanwhile share its outcome."""
        if self._login_waiters is not None:
            waiter = Deferred()
            self._login_waiters.append(waiter)
            return waiter
        self._login_waiters = []
        username, password = self._credentials
        d = self._transport.call('auth/authenticate', {'name': username, 'password': password},
                                 f'authenticate as {username!r}', True,
                                 self.timeout if timeout is None else timeout)

        def done(result):
            waiters, self._login_waiters = self._login_waiters, None
            if isinstance(result, dict):
                self._token = result.get('token', '')
                self._transport.set_token(self._token)
                result = self._token
            for waiter in waiters:
                if hasattr(result, 'raiseException'):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
            return result
        return d.addBoth(done)

    def _ensure_login(self) -> Deferred:
        if self._credentials is None or self._token:
            return succeed(None)
        return self._login()

    # -- switching auth on and off

    def auth_enable(self, *, timeout: float | None = None) -> Deferred:
        """Turn authentication on (needs a 'root' user with the 'root' role)."""
        return self._admin('auth/enable', {}, 'auth enable', timeout)

    def auth_disable(self, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/disable', {}, 'auth disable', timeout)

    def auth_status(self, *, timeout: float | None = None) -> Deferred:
        """Whether authentication is on → bool."""
        d = self._call('auth/status', {}, 'auth status', True, timeout)
        return d.addCallback(lambda response: bool(response.get('enabled', False)))

    # -- users

    def user_add(self, name: str, password: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/user/add', {'name': name, 'password': password}, f'add user {name!r}',
                           timeout)

    def user_delete(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/user/delete', {'name': name}, f'delete user {name!r}', timeout)

    def user_change_password(self, name: str, password: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/user/changepw', {'name': name, 'password': password},
                           f'change password of {name!r}', timeout)

    def user_grant_role(self, user: str, role: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/user/grant', {'user': user, 'role': role},
                           f'grant role {role!r} to {user!r}', timeout)

    def user_revoke_role(self, user: str, role: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/user/revoke', {'name': user, 'role': role},
                           f'revoke role {role!r} from {user!r}', timeout)

    def users(self, *, timeout: float | None = None) -> Deferred:
        """Every user name → list of str."""
        d = self._call('auth/user/list', {}, 'user list', True, timeout)
        return d.addCallback(lambda response: list(response.get('users', ())))

    def user_roles(self, name: str, *, timeout: float | None = None) -> Deferred:
        """The roles of a user → list of str."""
        d = self._call('auth/user/get', {'name': name}, f'get user {name!r}', True, timeout)
        return d.addCallback(lambda response: list(response.get('roles', ())))

    # -- roles

    def role_add(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/role/add', {'name': name}, f'add role {name!r}', timeout)

    def role_delete(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin('auth/role/delete', {'role': name}, f'delete role {name!r}', timeout)

    def role_grant_permission(self, role: str, keys, permission: str = 'readwrite', *,
                              timeout: float | None = None) -> Deferred:
        """Let ``role`` read and/or write a key, range or prefix (``keys``: bytes or KeySet);
        ``permission`` is 'read', 'write' or 'readwrite'."""
        if permission not in _PERMISSIONS:
            raise ValueError(f'permission must be read, write or readwrite, not {permission!r}')
        keyset = KeySet.of(keys)
        perm = {'permType': _PERMISSIONS[permission], 'key': b64encode(keyset.key)}
        if keyset.range_end is not None:
            perm['range_end'] = b64encode(keyset.range_end)
        return self._admin('auth/role/grant', {'name': role, 'perm': perm},
                           f'grant {permission} on {keyset.describe()} to role {role!r}', timeout)

    def role_revoke_permission(self, role: str, keys, *, timeout: float | None = None) -> Deferred:
        keyset = KeySet.of(keys)
        request = {'role': role, 'key': b64encode(keyset.key)}
        if keyset.range_end is not None:
            request['range_end'] = b64encode(keyset.range_end)
        return self._admin('auth/role/revoke', request, f'revoke {keyset.describe()} from role {role!r}',
                           timeout)

    def roles(self, *, timeout: float | None = None) -> Deferred:
        """Every role name → list of str."""
        d = self._call('auth/role/list', {}, 'role list', True, timeout)
        return d.addCallback(lambda response: list(response.get('roles', ())))

    def role_permissions(self, name: str, *, timeout: float | None = None) -> Deferred:
        """A role's permissions → list of (permission, KeySet)."""
        d = self._call('auth/role/get', {'role': name}, f'get role {name!r}', True, timeout)

        def parse(response):
            found = []
            for perm in response.get('perm', ()):
                key, end = b64decode(perm.get('key')), perm.get('range_end')
                keyset = KeySet(key, b64decode(end)) if end else KeySet(key)
                found.append((perm.get('permType', 'READ').lower(), keyset))
            return found
        return d.addCallback(parse)

    def _admin(self, rpc: str, request: dict, describe: str, timeout) -> Deferred:
        d = self._call(rpc, request, describe, False, timeout)
        return d.addCallback(lambda response: None)
