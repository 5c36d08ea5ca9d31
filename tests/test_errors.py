"""Every mapping from an etcd refusal to a txaioetcd.errors class, provoked on a real etcd.

The session etcd has the default limits (128 operations per txn, 1.5 MiB per request); tests that
need other server flags or auth start a dedicated LocalEtcd of their own and close it afterwards.
Each error must put the request it belongs to at the front of its message.
"""

import os
import subprocess

import pytest
import pytest_twisted

from txaioetcd import KeySet, OpGet, OpSet, Transaction, errors
from txaioetcd.rpc import Authenticate
from txaioetcd.testing import find_etcd_binary

from _loopback import connected, transport_in_use

_LEASE_THAT_DOES_NOT_EXIST = 0x7eadbeef12345


def _starts_with_request(error, request):
    assert error.request == request
    assert str(error).startswith(request + ': '), str(error)


def _many_puts(prefix, count):
    return Transaction(success=[OpSet(prefix + b'%03d' % i, b'v') for i in range(count)])


# -- limits of the default server


@pytest_twisted.ensureDeferred
async def test_txn_over_default_max_txn_ops_is_too_many_operations(client, prefix):
    txn = _many_puts(prefix, 129)
    with pytest.raises(errors.TooManyOperations) as caught:
        await client.submit(txn)
    error = caught.value
    assert isinstance(error, errors.InvalidArgument)
    _starts_with_request(error, txn.describe())
    assert '129 success' in error.request
    assert error.code == 3
    assert error.server_message == 'etcdserver: too many operations in txn request'
    assert '--max-txn-ops' in str(error)
    assert 'split the transaction' in str(error)
    # Nothing of it was applied ...
    assert await client.count(KeySet(prefix, prefix=True)) == 0
    # ... and 128 operations, the default limit, are fine.
    await client.submit(_many_puts(prefix, 128))
    assert await client.count(KeySet(prefix, prefix=True)) == 128


@pytest.fixture(scope='module')
def etcd_max_4_ops(etcd_factory):
    return etcd_factory(max_txn_ops=4)


@pytest_twisted.ensureDeferred
async def test_server_with_max_txn_ops_4_refuses_5(reactor, etcd_max_4_ops, prefix):
    async with connected(reactor, etcd_max_4_ops.url) as client:
        txn = Transaction(success=[OpSet(prefix + b'%d' % i, b'v') for i in range(4)] + [OpGet(prefix + b'0')])
        with pytest.raises(errors.TooManyOperations) as caught:
            await client.submit(txn)
        _starts_with_request(caught.value, txn.describe())
        assert '5 success / 0 failure ops' in caught.value.request
        assert '--max-txn-ops' in str(caught.value)
        assert await client.count(KeySet(prefix, prefix=True)) == 0

        four = await client.submit(_many_puts(prefix, 4))
        assert len(four.responses) == 4
        assert await client.count(KeySet(prefix, prefix=True)) == 4


@pytest_twisted.ensureDeferred
async def test_two_mib_value_is_request_too_large(client, prefix):
    """Over grpc's 2 MiB receive limit: the gateway answers code 8 'received message larger than max'."""
    key = prefix + b'big'
    with pytest.raises(errors.RequestTooLarge) as caught:
        await client.set(key, b'x' * (2 * 1024 * 1024))
    error = caught.value
    _starts_with_request(error, f'set of key {key!r}')
    assert error.code == 8
    assert 'received message larger than max' in error.server_message
    assert '--max-request-bytes' in str(error)
    assert (await client.get(key)).count == 0


@pytest_twisted.ensureDeferred
async def test_value_over_max_request_bytes_is_request_too_large(client, prefix):
    """Between 1.5 MiB (--max-request-bytes) and 2 MiB etcd itself refuses: code 3 'request is too large'."""
    key = prefix + b'big'
    with pytest.raises(errors.RequestTooLarge) as caught:
        await client.set(key, b'x' * (1024 * 1024 + 600 * 1024))
    error = caught.value
    _starts_with_request(error, f'set of key {key!r}')
    assert error.code == 3
    assert error.server_message == 'etcdserver: request is too large'
    assert '--max-request-bytes' in str(error)
    assert (await client.get(key)).count == 0


@pytest.fixture(scope='module')
def etcd_small_requests(etcd_factory):
    return etcd_factory(max_request_bytes=64 * 1024)


@pytest_twisted.ensureDeferred
async def test_server_max_request_bytes_is_honoured(reactor, etcd_small_requests, prefix):
    async with connected(reactor, etcd_small_requests.url) as client:
        await client.set(prefix + b'small', b'x' * (32 * 1024))
        with pytest.raises(errors.RequestTooLarge) as caught:
            await client.set(prefix + b'large', b'x' * (100 * 1024))
        _starts_with_request(caught.value, f'set of key {prefix + b"large"!r}')
        assert 'too large' in caught.value.server_message


# -- revisions


@pytest_twisted.ensureDeferred
async def test_read_at_compacted_revision_is_compacted(client, prefix):
    key = prefix + b'k'
    first = await client.set(key, b'1')
    second = await client.set(key, b'2')
    await client.compact(second.revision)
    with pytest.raises(errors.Compacted) as caught:
        await client.get(key, revision=first.revision)
    error = caught.value
    _starts_with_request(error, f'get of key {key!r}')
    assert error.code == 11
    assert error.server_message == 'etcdserver: mvcc: required revision has been compacted'
    # A range error does not carry the compact revision; the client learns it and says where
    # history now starts.
    assert error.compact_revision == second.revision
    assert f'history starts at revision {second.revision}' in str(error)
    at = await client.get(key, revision=second.revision)
    assert at.kvs[0].value == b'2'


@pytest_twisted.ensureDeferred
async def test_compact_to_an_already_compacted_revision_is_compacted(client, prefix):
    first = await client.set(prefix + b'k', b'1')
    second = await client.set(prefix + b'k', b'2')
    await client.compact(second.revision)
    with pytest.raises(errors.Compacted) as caught:
        await client.compact(first.revision)
    _starts_with_request(caught.value, f'compact to revision {first.revision}')


@pytest_twisted.ensureDeferred
async def test_read_at_future_revision_is_future_revision(client, prefix):
    key = prefix + b'k'
    now = (await client.set(key, b'v')).revision
    with pytest.raises(errors.FutureRevision) as caught:
        await client.get(key, revision=now + 1000)
    error = caught.value
    _starts_with_request(error, f'get of key {key!r}')
    assert error.code == 11
    assert error.server_message == 'etcdserver: mvcc: required revision is a future revision'
    assert 'at most the header revision' in str(error)


@pytest_twisted.ensureDeferred
async def test_compact_to_future_revision_is_future_revision(client, prefix):
    now = (await client.set(prefix + b'k', b'v')).revision
    with pytest.raises(errors.FutureRevision) as caught:
        await client.compact(now + 1000)
    _starts_with_request(caught.value, f'compact to revision {now + 1000}')


@pytest_twisted.ensureDeferred
async def test_put_with_unknown_lease_is_not_found(client, prefix):
    key = prefix + b'k'
    with pytest.raises(errors.NotFound) as caught:
        await client.set(key, b'v', lease=_LEASE_THAT_DOES_NOT_EXIST)
    error = caught.value
    _starts_with_request(error, f'set of key {key!r}')
    assert error.code == 5
    assert error.server_message == 'etcdserver: requested lease not found'
    assert (await client.get(key)).count == 0


# -- server_error: the mapping itself, for messages hard to provoke on one member


@pytest.mark.parametrize('code, message, cls, advice', [
    (14, 'etcdserver: no leader', errors.NoLeader, 'electing a leader'),
    (7, 'etcdserver: permission denied', errors.PermissionDenied, 'grant the user a role'),
    (3, 'etcdserver: authentication failed, invalid user ID or password', errors.AuthFailed,
     'check the user name and password'),
    (16, 'etcdserver: invalid auth token', errors.Unauthenticated, 'authenticate again'),
    (3, 'etcdserver: user name is empty', errors.Unauthenticated, 'authenticate again'),
    (8, 'etcdserver: mvcc: database space exceeded', errors.NoSpace, 'disarm the NOSPACE alarm'),
    (3, 'etcdserver: too many operations in txn request', errors.TooManyOperations, '--max-txn-ops'),
    (3, 'etcdserver: request is too large', errors.RequestTooLarge, '--max-request-bytes'),
    (8, 'grpc: received message larger than max (2097162 vs. 2097152)', errors.RequestTooLarge,
     '--max-request-bytes'),
    (11, 'etcdserver: mvcc: required revision has been compacted', errors.Compacted, 'newer revision'),
    (11, 'etcdserver: mvcc: required revision is a future revision', errors.FutureRevision, 'exists'),
    (3, 'etcdserver: key is not provided', errors.EmptyKey, None),
])
def test_server_error_maps_message(code, message, cls, advice):
    error = errors.server_error(code, message, "set of key b'k'")
    assert type(error) is cls
    assert isinstance(error, errors.ServerError)
    assert error.code == code
    assert error.server_message == message
    assert error.request == "set of key b'k'"
    assert str(error).startswith("set of key b'k': " + message)
    if advice is not None:
        assert advice in str(error)


def test_no_leader_is_unavailable():
    error = errors.server_error(14, 'etcdserver: no leader', 'status')
    assert isinstance(error, errors.Unavailable)
    assert str(error).startswith('status: etcdserver: no leader')


@pytest.mark.parametrize('code, cls', [
    (3, errors.InvalidArgument), (5, errors.NotFound), (7, errors.PermissionDenied),
    (8, errors.RequestTooLarge), (14, errors.Unavailable), (16, errors.Unauthenticated),
    (2, errors.ServerError), (13, errors.ServerError),
])
def test_server_error_falls_back_to_the_code(code, cls):
    error = errors.server_error(code, 'something new', 'get of key b"x"')
    assert type(error) is cls
    assert error.code == code
    assert error.server_message == 'something new'
    assert str(error).startswith('get of key b"x": something new')


def test_server_error_without_request_is_the_bare_message():
    error = errors.server_error(7, 'etcdserver: permission denied')
    assert error.request is None
    assert str(error).startswith('etcdserver: permission denied (')


# -- auth, with users and roles made by the real etcdctl


def _etcdctl():
    path = os.path.join(os.path.dirname(find_etcd_binary()), 'etcdctl')
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f'no etcdctl next to the etcd binary ({path})')
    return path


@pytest.fixture(scope='module')
def auth_etcd(etcd_factory):
    """A dedicated etcd with auth enabled: root/rootpw, and reader/readerpw who may read data/."""
    etcdctl = _etcdctl()
    server = etcd_factory()
    env = {key: value for key, value in os.environ.items() if not key.startswith('ETCDCTL')}

    def ctl(*args):
        done = subprocess.run([etcdctl, '--endpoints', server.url, '--dial-timeout=5s',
                               '--command-timeout=5s', *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, env=env)
        assert done.returncode == 0, f'etcdctl {" ".join(args)}: {done.stdout} {done.stderr}'
        return done.stdout

    ctl('user', 'add', 'root:rootpw')
    ctl('role', 'add', 'reader')
    ctl('role', 'grant-permission', 'reader', 'read', 'data/', '--prefix=true')
    ctl('user', 'add', 'reader:readerpw')
    ctl('user', 'grant-role', 'reader', 'reader')
    assert 'Authentication Enabled' in ctl('auth', 'enable')
    ctl('--user', 'root:rootpw', 'put', 'data/x', 'hello')
    return server


async def _authenticate(client, name, password):
    return await client._call(Authenticate(name, password), 5)


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_auth_failed(reactor, auth_etcd):
    async with connected(reactor, auth_etcd.url) as client:
        with pytest.raises(errors.AuthFailed) as caught:
            await _authenticate(client, 'reader', 'wrong')
        error = caught.value
        _starts_with_request(error, "authenticate as 'reader'")
        assert error.code == 3
        assert error.server_message == 'etcdserver: authentication failed, invalid user ID or password'
        assert 'check the user name and password' in str(error)
        # An unknown user gets the very same answer (etcd does not tell which part was wrong).
        with pytest.raises(errors.AuthFailed):
            await _authenticate(client, 'nobody', 'readerpw')


@pytest_twisted.ensureDeferred
async def test_reader_token_allows_reads_and_refuses_writes(reactor, auth_etcd):
    async with connected(reactor, auth_etcd.url) as client:
        token = await _authenticate(client, 'reader', 'readerpw')
        assert isinstance(token, str) and token
        client._transport.set_token(token)

        got = await client.get(b'data/x')
        assert got.kvs[0].value == b'hello'

        with pytest.raises(errors.PermissionDenied) as caught:
            await client.set(b'data/x', b'changed')
        error = caught.value
        _starts_with_request(error, "set of key b'data/x'")
        assert error.code == 7
        assert error.server_message == 'etcdserver: permission denied'
        assert 'grant the user a role' in str(error)

        with pytest.raises(errors.PermissionDenied) as caught:
            await client.get(b'other/key')
        _starts_with_request(caught.value, "get of key b'other/key'")

        assert (await client.get(b'data/x')).kvs[0].value == b'hello'


@pytest_twisted.ensureDeferred
async def test_request_without_token_is_unauthenticated(reactor, auth_etcd):
    """etcd 3.5 answers a request without a token with code 3 'etcdserver: user name is empty'."""
    async with connected(reactor, auth_etcd.url) as client:
        with pytest.raises(errors.Unauthenticated) as caught:
            await client.get(b'data/x')
        error = caught.value
        _starts_with_request(error, "get of key b'data/x'")
        assert error.code == 3
        assert error.server_message == 'etcdserver: user name is empty'
        assert 'authenticate again' in str(error)
        with pytest.raises(errors.Unauthenticated):
            await client.set(b'data/y', b'v')


@pytest_twisted.ensureDeferred
async def test_invalid_token_is_unauthenticated(reactor, auth_etcd):
    async with connected(reactor, auth_etcd.url) as client:
        # A simple token is '<random>.<raft index>'; index 1 is long applied.
        client._transport.set_token('NotARealToken.1')
        with pytest.raises(errors.Unauthenticated) as caught:
            await client.get(b'data/x')
        error = caught.value
        _starts_with_request(error, "get of key b'data/x'")
        assert error.code == 16
        assert error.server_message == 'etcdserver: invalid auth token'


@pytest_twisted.ensureDeferred
async def test_token_with_future_index_hangs_until_the_timeout(reactor, auth_etcd):
    """etcd holds a request whose simple token names a raft index it has not applied yet until it has
    (it waits for its apply loop to catch up), so a token from another cluster or an older data dir can
    make calls hang: only the client's deadline ends them. Over gRPC etcd learns that deadline
    (grpc-timeout) and, when it passes, stops waiting and calls the token invalid - unless the client's
    own timer ends the call first; the gateway passes on no deadline, so there the timer always does."""
    async with connected(reactor, auth_etcd.url, timeout=1) as client:
        client._transport.set_token('NotARealToken.999999999')
        started = reactor.seconds()
        # Over gRPC etcd's answer and the client's own timer both come at 1 s: either may win.
        over_grpc = transport_in_use() == 'grpc'
        with pytest.raises((errors.Unauthenticated, errors.Timeout) if over_grpc else errors.Timeout) as caught:
            await client.get(b'data/x')
        assert 0.9 <= reactor.seconds() - started < 3       # at the 1 s deadline: 2 s of margin
        _starts_with_request(caught.value, "get of key b'data/x'")
        if isinstance(caught.value, errors.Unauthenticated):
            assert 'invalid auth token' in str(caught.value)
        else:
            assert 'within 1 s' in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_root_token_may_write(reactor, auth_etcd):
    async with connected(reactor, auth_etcd.url) as client:
        client._transport.set_token(await _authenticate(client, 'root', 'rootpw'))
        written = await client.set(b'data/by-root', b'v')
        assert (await client.get(b'data/by-root')).kvs[0].mod_revision == written.revision
        # Clearing the token takes it off the following requests.
        client._transport.set_token(None)
        with pytest.raises(errors.Unauthenticated):
            await client.get(b'data/by-root')
