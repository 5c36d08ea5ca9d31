"""Authentication against a real etcd with auth enabled: log in, permissions, specific errors, and
tokens that expire (--auth-token-ttl 1) renewed without the caller noticing - for calls and watches."""

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from txaioetcd import Client, KeySet, errors

from _loopback import connected, until, within


@pytest_twisted.async_fixture(scope='module')
async def auth_server(etcd_factory):
    """An etcd whose simple tokens live 1 s, with users set up through the client's admin calls."""
    from twisted.internet import reactor
    server = etcd_factory(auth_token_ttl=1)
    async with connected(reactor, server.url) as admin:
        await admin.user_add('root', 'rootpw')
        await admin.user_grant_role('root', 'root')
        await admin.role_add('app')
        await admin.role_grant_permission('app', KeySet(b'app/', prefix=True))
        await admin.role_add('reader')
        await admin.role_grant_permission('reader', KeySet(b'app/', prefix=True), 'read')
        await admin.user_add('alice', 'alicepw')
        await admin.user_grant_role('alice', 'app')
        await admin.user_add('bob', 'bobpw')
        await admin.user_grant_role('bob', 'reader')
        assert not await admin.auth_status()
        await admin.auth_enable()
    return server


def _client(reactor, server, user, password):
    return Client(reactor, url=server.url, username=user, password=password, timeout=5)


@pytest_twisted.ensureDeferred
async def test_login_and_work_within_permissions(reactor, auth_server):
    client = _client(reactor, auth_server, 'alice', 'alicepw')
    try:
        await client.set(b'app/k', b'v')
        assert (await client.get(b'app/k')).kvs[0].value == b'v'
        with pytest.raises(errors.PermissionDenied) as caught:
            await client.set(b'elsewhere', b'v')
        assert str(caught.value).startswith("set of key b'elsewhere'")
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_read_only_role(reactor, auth_server):
    client = _client(reactor, auth_server, 'bob', 'bobpw')
    try:
        await client.get(b'app/k')
        with pytest.raises(errors.PermissionDenied):
            await client.set(b'app/k', b'w')
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_auth_failed(reactor, auth_server):
    client = _client(reactor, auth_server, 'alice', 'wrong')
    try:
        with pytest.raises(errors.AuthFailed) as caught:
            await client.get(b'app/k')
        assert "authenticate as 'alice'" in str(caught.value)
        assert 'check the user name and password' in str(caught.value)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_no_credentials_on_an_auth_server(reactor, auth_server):
    async with connected(reactor, auth_server.url) as anonymous:
        with pytest.raises(errors.Unauthenticated):
            await anonymous.get(b'app/k')


@pytest_twisted.ensureDeferred
async def test_expired_token_is_renewed_for_calls_and_watches(reactor, auth_server):
    client = _client(reactor, auth_server, 'alice', 'alicepw')
    seen = []
    try:
        watching = client.watch(KeySet(b'app/renew/', prefix=True), seen.append)
        await within(reactor, watching.ready(), 10, 'the watch to be created')
        first_token = client._token
        # Let the 1 s token expire. It cannot be watched for without using it (a use renews it), so
        # this waits: etcd drops an unused simple token at its first 1 s tick past the TTL, at most 2 s
        # after the last use (the watch's creation, above); 1.5 s more is margin for a loaded machine.
        await deferLater(reactor, 3.5, lambda: None)
        await client.set(b'app/renew/1', b'after expiry')       # rejected once, renewed, sent again
        assert client._token and client._token != first_token
        assert (await client.get(b'app/renew/1')).kvs[0].value == b'after expiry'
        await until(reactor, lambda: seen, 10, 'the watch event')
        assert [event.key for event in seen] == [b'app/renew/1']
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_admin_listings(reactor, auth_server):
    root = _client(reactor, auth_server, 'root', 'rootpw')
    try:
        assert await root.auth_status()
        assert {'root', 'alice', 'bob'} <= set(await root.users())
        assert {'app', 'reader'} <= set(await root.roles())   # etcd does not list the built-in root role
        assert await root.user_roles('bob') == ['reader']
        assert await root.role_permissions('reader') == [('read', KeySet(b'app/', b'app0'))]
        await root.user_add('carol', 'pw')
        await root.user_grant_role('carol', 'app')
        await root.user_revoke_role('carol', 'app')
        assert await root.user_roles('carol') == []
        await root.user_change_password('carol', 'pw2')
        carol = _client(reactor, auth_server, 'carol', 'pw2')
        try:
            with pytest.raises(errors.PermissionDenied):
                await carol.set(b'app/k', b'v')
        finally:
            await carol.close()
        await root.user_delete('carol')
        assert 'carol' not in await root.users()
    finally:
        await root.close()


def test_command_line_user_and_password(auth_server):
    """``--user NAME:PASSWORD``, ``--user NAME --password P`` and ETCDCTL_USER, as etcdctl takes them;
    a wrong password and a key outside the role's range are one-line errors, exit 1."""
    import os
    import subprocess
    import sys

    def cli(*args, env=None):
        done = subprocess.run([sys.executable, '-m', 'txaioetcd', *args, '--endpoints', auth_server.url],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, **(env or {})))
        return done.returncode, done.stdout

    assert cli('put', 'app/cli', 'v', '--user', 'alice:alicepw') == (0, 'OK\n')
    assert cli('get', 'app/cli', '--user', 'bob', '--password', 'bobpw') == (0, 'app/cli\nv\n')
    assert cli('get', 'app/cli', env={'ETCDCTL_USER': 'bob:bobpw'}) == (0, 'app/cli\nv\n')
    code, out = cli('get', 'app/cli', '--user', 'bob:wrong')
    assert code == 1 and out.startswith('error: ') and out.count('\n') == 1, out
    code, out = cli('put', 'app/cli', 'w', '--user', 'bob:bobpw')          # bob may only read
    assert code == 1 and out.startswith('error: ') and 'permission' in out.lower(), out
