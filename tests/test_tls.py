"""TLS against real etcd servers: https:// and unixs:// endpoints, server verification, mutual TLS.

Certificates are made here with `cryptography`: a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate, and a second, unrelated CA (with a client certificate of its own).
Every failure case must fail fast with its specific error, never hang until a deadline.
"""

import sys
import time

import pytest
import pytest_twisted

from txaioetcd import Client, CompValue, OpGet, OpSet, Transaction
from txaioetcd.errors import (CertificateUntrusted, ClientCertificateRejected, ConnectionFailed,
                              OutcomeUnknown, TLSError)
from txaioetcd.transport._tls import TLSConfig

from _loopback import until, within
from _pki import make_pki

FAST = 5.0      # a TLS failure must be reported well within this (the calls' deadline is 10 s)


# -- certificates

@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp('pki'))


@pytest.fixture(scope='module')
def tls_etcd(etcd_factory, pki):
    """Serves https:// and unixs://; no client certificates required."""
    main = pki['main']
    return etcd_factory(tls_cert_file=main['server'], tls_key_file=main['server_key'], unix_socket=True)


@pytest.fixture(scope='module')
def mtls_etcd(etcd_factory, pki):
    """Serves https:// and requires client certificates signed by the main CA."""
    main = pki['main']
    return etcd_factory(tls_cert_file=main['server'], tls_key_file=main['server_key'],
                        tls_ca_file=main['ca'])


# -- helpers

async def _roundtrip(reactor, client, prefix):
    """set, get, txn and a watch all work over ``client``."""
    seen = []
    watching = client.watch(prefix + b'w', seen.append)
    await within(reactor, watching.ready(), 10, 'the watch to be created')
    try:
        await client.set(prefix + b'k', b'v')
        assert (await client.get(prefix + b'k')).kvs[0].value == b'v'
        result = await client.submit(Transaction(compare=[CompValue(prefix + b'k', '==', b'v')],
                                                 success=[OpSet(prefix + b'k', b'v2'),
                                                          OpGet(prefix + b'k')]))
        assert result.responses[1].kvs[0].value == b'v2'
        await client.set(prefix + b'w', b'event')
        await until(reactor, lambda: seen, 10, 'the watch event')
        assert seen[0].key == prefix + b'w' and seen[0].kv.value == b'event'
    finally:
        watching.cancel()


async def _fails_fast(call, error_class):
    """``call()`` fails with ``error_class`` within FAST seconds; returns the error."""
    started = time.monotonic()
    with pytest.raises(error_class) as caught:
        await call()
    assert time.monotonic() - started < FAST, f'took {time.monotonic() - started:.1f} s'
    return caught.value


@pytest.fixture
def clients(reactor):
    made = []

    def make(url, **options):
        made.append(Client(reactor, url=url, timeout=10, **options))
        return made[-1]
    yield make
    for client in made:
        client.close()


# -- server verification

@pytest_twisted.ensureDeferred
async def test_https_with_ca_file(tls_etcd, pki, clients, reactor, prefix):
    assert tls_etcd.url.startswith('https://127.0.0.1:')
    client = clients(tls_etcd.url, tls=TLSConfig(ca_file=pki['main']['ca']))
    await _roundtrip(reactor, client, prefix)


@pytest_twisted.ensureDeferred
async def test_unixs_verifies_localhost(tls_etcd, pki, clients, reactor, prefix):
    assert tls_etcd.unix_url.startswith('unixs:///')
    client = clients(tls_etcd.unix_url, tls=TLSConfig(ca_file=pki['main']['ca']))
    await _roundtrip(reactor, client, prefix)


@pytest_twisted.ensureDeferred
async def test_untrusted_server_certificate(tls_etcd, pki, clients, prefix):
    client = clients(tls_etcd.url, tls=TLSConfig(ca_file=pki['other']['ca']))
    error = await _fails_fast(lambda: client.get(prefix + b'k'), CertificateUntrusted)
    assert 'ca_file' in str(error) and str(prefix + b'k') in str(error)
    # A write refused at the handshake was not processed: the specific error, not OutcomeUnknown.
    error = await _fails_fast(lambda: client.set(prefix + b'k', b'v'), CertificateUntrusted)
    assert not isinstance(error, OutcomeUnknown)


@pytest_twisted.ensureDeferred
async def test_platform_trust_does_not_know_the_test_ca(tls_etcd, clients, prefix):
    client = clients(tls_etcd.url)          # https:// without tls=: the platform's CAs
    await _fails_fast(lambda: client.get(prefix + b'k'), CertificateUntrusted)


@pytest_twisted.ensureDeferred
async def test_hostname_mismatch(tls_etcd, pki, clients, prefix):
    client = clients(tls_etcd.url, tls=TLSConfig(ca_file=pki['main']['ca'],
                                                 server_hostname='etcd.example.com'))
    error = await _fails_fast(lambda: client.get(prefix + b'k'), CertificateUntrusted)
    assert 'etcd.example.com' in str(error)
    await _fails_fast(lambda: client.set(prefix + b'k', b'v'), CertificateUntrusted)


@pytest_twisted.ensureDeferred
async def test_hostname_mismatch_on_unixs(tls_etcd, pki, clients, prefix):
    client = clients(tls_etcd.unix_url, tls=TLSConfig(ca_file=pki['main']['ca'],
                                                      server_hostname='etcd.example.com'))
    await _fails_fast(lambda: client.get(prefix + b'k'), CertificateUntrusted)


@pytest_twisted.ensureDeferred
async def test_tls_to_a_plain_http_server_fails_fast(etcd, pki, clients, prefix):
    if not etcd.url.startswith('http://'):
        pytest.skip('the session etcd is not a plain http one')
    url = etcd.url.replace('http://', 'https://')
    client = clients(url, tls=TLSConfig(ca_file=pki['main']['ca']))
    error = await _fails_fast(lambda: client.get(prefix + b'k'), TLSError)
    assert isinstance(error, ConnectionFailed)


# -- mutual TLS

@pytest_twisted.ensureDeferred
async def test_mtls_with_client_certificate(mtls_etcd, pki, clients, reactor, prefix):
    main = pki['main']
    client = clients(mtls_etcd.url, tls=TLSConfig(ca_file=main['ca'], cert_file=main['client'],
                                                  key_file=main['client_key']))
    await _roundtrip(reactor, client, prefix)


@pytest_twisted.ensureDeferred
async def test_mtls_without_client_certificate(mtls_etcd, pki, clients, prefix):
    client = clients(mtls_etcd.url, tls=TLSConfig(ca_file=pki['main']['ca']))
    error = await _fails_fast(lambda: client.get(prefix + b'k'), ClientCertificateRejected)
    assert 'cert_file' in str(error)
    await _fails_fast(lambda: client.set(prefix + b'k', b'v'), ClientCertificateRejected)


@pytest_twisted.ensureDeferred
async def test_mtls_with_certificate_of_another_ca(mtls_etcd, pki, clients, prefix):
    other = pki['other']
    client = clients(mtls_etcd.url, tls=TLSConfig(ca_file=pki['main']['ca'], cert_file=other['client'],
                                                  key_file=other['client_key']))
    await _fails_fast(lambda: client.get(prefix + b'k'), ClientCertificateRejected)
    await _fails_fast(lambda: client.set(prefix + b'k', b'v'), ClientCertificateRejected)


# -- configuration

def test_tls_for_a_plain_endpoint_is_refused(reactor, pki):
    with pytest.raises(ValueError, match='not https'):
        Client(reactor, url='http://127.0.0.1:2379', tls=TLSConfig(ca_file=pki['main']['ca']))


def test_unreadable_files_are_reported(reactor, tmp_path):
    with pytest.raises(ValueError, match='ca_file'):
        Client(reactor, url='https://127.0.0.1:2379', tls=TLSConfig(ca_file=str(tmp_path / 'nope.pem')))
    with pytest.raises(ValueError, match='key_file needs cert_file'):
        TLSConfig(key_file='key.pem')


def test_missing_pyopenssl_says_what_to_install(reactor, monkeypatch):
    monkeypatch.setitem(sys.modules, 'OpenSSL', None)
    with pytest.raises(ImportError, match=r"pip install 'txaioetcd\[tls\]'"):
        Client(reactor, url='https://127.0.0.1:2379')


def test_command_line_over_mutual_tls(mtls_etcd, pki, prefix):
    """``txaioetcd put/get`` with --cacert, --cert and --key, as etcdctl takes them; without the client
    certificate the server refuses, in one line."""
    import subprocess
    main = pki['main']
    key = (prefix + b'cli').decode()

    def cli(*args):
        done = subprocess.run([sys.executable, '-m', 'txaioetcd', *args, '--endpoints', mtls_etcd.url,
                               '--cacert', main['ca'], '--command-timeout', '5'],
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout

    tls = ('--cert', main['client'], '--key', main['client_key'])
    assert cli('put', key, 'over mTLS', *tls) == (0, 'OK\n')
    assert cli('get', key, *tls) == (0, f'{key}\nover mTLS\n')
    code, out = cli('get', key)
    assert code == 1 and out.startswith('error: ') and out.count('\n') == 1, out
