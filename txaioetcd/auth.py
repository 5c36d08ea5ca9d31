"""The Auth service: authenticate, and the admin calls that set authentication up.

With ``Client(..., username=..., password=...)`` the client authenticates before its first call and
again whenever etcd rejects the token (expired, or the server restarted): the call that was rejected
is sent once more with the new token. A rejected token means the request was not processed, so this is
safe for writes too.
"""

from __future__ import annotations


from . import rpc
from ._defer import Deferred, succeed
from .keyset import KeySet

__all__ = ('Auth',)

_PERMISSIONS = ('read', 'write', 'readwrite')


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
        d = self._transport.call(rpc.Authenticate(username, password),
                                 self.timeout if timeout is None else timeout)

        def done(result):
            waiters, self._login_waiters = self._login_waiters, None
            if isinstance(result, str):
                self._token = result
                self._transport.set_token(self._token)
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
        return self._admin(rpc.AuthEnable(), timeout)

    def auth_disable(self, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.AuthDisable(), timeout)

    def auth_status(self, *, timeout: float | None = None) -> Deferred:
        """Whether authentication is on → bool."""
        return self._call(rpc.AuthStatus(), timeout)

    # -- users

    def user_add(self, name: str, password: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.UserAdd(name, password), timeout)

    def user_delete(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.UserDelete(name), timeout)

    def user_change_password(self, name: str, password: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.UserChangePassword(name, password), timeout)

    def user_grant_role(self, user: str, role: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.UserGrantRole(user, role), timeout)

    def user_revoke_role(self, user: str, role: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.UserRevokeRole(user, role), timeout)

    def users(self, *, timeout: float | None = None) -> Deferred:
        """Every user name → list of str."""
        return self._call(rpc.UserList(), timeout)

    def user_roles(self, name: str, *, timeout: float | None = None) -> Deferred:
        """The roles of a user → list of str."""
        return self._call(rpc.UserGet(name), timeout)

    # -- roles

    def role_add(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.RoleAdd(name), timeout)

    def role_delete(self, name: str, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.RoleDelete(name), timeout)

    def role_grant_permission(self, role: str, keys, permission: str = 'readwrite', *,
                              timeout: float | None = None) -> Deferred:
        """Let ``role`` read and/or write a key, range or prefix (``keys``: bytes or KeySet);
        ``permission`` is 'read', 'write' or 'readwrite'."""
        if permission not in _PERMISSIONS:
            raise ValueError(f'permission must be read, write or readwrite, not {permission!r}')
        return self._admin(rpc.RoleGrantPermission(role, permission, KeySet.of(keys)), timeout)

    def role_revoke_permission(self, role: str, keys, *, timeout: float | None = None) -> Deferred:
        return self._admin(rpc.RoleRevokePermission(role, KeySet.of(keys)), timeout)

    def roles(self, *, timeout: float | None = None) -> Deferred:
        """Every role name → list of str."""
        return self._call(rpc.RoleList(), timeout)

    def role_permissions(self, name: str, *, timeout: float | None = None) -> Deferred:
        """A role's permissions → list of (permission, KeySet)."""
        return self._call(rpc.RoleGet(name), timeout)

    def _admin(self, op, timeout) -> Deferred:
        return self._call(op, timeout).addCallback(lambda _: None)
