"""``python -m txaioetcd`` as a person runs it: real subprocesses against the session's real etcd.

The etcd commands in etcdctl's habits (get, put, del, watch, status, members, compact, lease), the
``commits`` commands against etcd directly and against ``commits serve`` (the HTTP API, a process of
its own), ``commits edit`` with ``$EDITOR`` pointing at a script, errors (one line, exit 1; usage: exit 2)
and output cut short by a closed pipe. Every process started is stopped by its PID; waits are bounded.
"""

import base64
import getpass
import json
import os
import pty
import queue
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, '-m', 'txaioetcd']
NS = 'cfg'
# Settings of the person running the suite must not leak into the commands under test.
_SCRUBBED = ('ETCDCTL_ENDPOINTS', 'ETCD_URL', 'ETCDCTL_USER', 'ETCDCTL_PASSWORD', 'TXAIOETCD_AUTHOR',
             'TXAIOETCD_COMMITS_TOKEN', 'EDITOR', 'VISUAL', 'PAGER', 'NO_COLOR')
MTIME = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z')


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env['PYTHONUNBUFFERED'] = '1'
    env.update(extra)
    return env


def cli(*args, input=b'', env=None, timeout=60):
    """Run ``python -m txaioetcd ARGS`` to its end (subprocess.run kills it on timeout)."""
    return subprocess.run(COMMAND + [str(a) for a in args], input=input, capture_output=True,
                          env=env if env is not None else environment(), cwd=ROOT, timeout=timeout)


def ok(done):
    assert done.returncode == 0, (done.args, done.returncode, done.stdout, done.stderr[-3000:])
    assert b'Traceback' not in done.stderr, done.stderr[-3000:]
    return done.stdout


def one_error_line(done, code=1):
    """An error as the CLI promises it: exit ``code``, one line 'error: ...' on stdout, no traceback."""
    assert done.returncode == code, (done.args, done.returncode, done.stdout, done.stderr[-3000:])
    text = done.stdout.decode('utf-8')
    assert text.startswith('error: ') and text.endswith('\n') and text.count('\n') == 1, text
    assert b'Traceback' not in done.stderr and b'Traceback' not in done.stdout, done.stderr[-3000:]
    return text


def etcdctl(etcd, *args, **kwargs):
    return cli('--endpoints', etcd.url, *args, **kwargs)


def commits(etcd, p, *args, **kwargs):
    return cli('commits', '--endpoints', etcd.url, '--namespace', NS, '--prefix', p, *args, **kwargs)


def heads(etcd, p, *extra):
    return json.loads(ok(commits(etcd, p, 'list', '-w', 'json', *extra)))


@pytest.fixture
def p(prefix):
    """The test's unique key prefix, as the text the command line takes."""
    return prefix.decode('ascii')


class Child:
    """A long-running command (watch, serve): stdout lines through a queue, stderr collected; stopped
    by its PID when the test is done with it."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(COMMAND + [str(a) for a in args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env if env is not None else environment(), cwd=ROOT)
        self.lines = queue.Queue()
        self.err = []
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_out(self):
        for line in iter(self.proc.stdout.readline, b''):
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self):
        for line in iter(self.proc.stderr.readline, b''):
            self.err.append(line)

    def stderr(self):
        return b''.join(self.err)

    def line(self, timeout=30.0, what='a line'):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f'no {what} from {self.proc.args} within {timeout}s; '
                                 f'stderr: {self.stderr()[-2000:]!r}') from None
        if line is None:
            self.lines.put(None)
            raise AssertionError(f'{self.proc.args} ended (code {self.proc.poll()}) before {what}; '
                                 f'stderr: {self.stderr()[-2000:]!r}')
        return line

    def interrupt(self, within=10.0):
        """Ctrl+C: SIGINT to the PID → its exit code (which it must give within ``within`` seconds)."""
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f'pid {self.proc.pid} still running {within}s after SIGINT') from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


# ---------------------------------------------------------------------------------------------------
# etcd commands

def test_put_get_simple_prefix_range_keys_only_limit(etcd, p):
    for key, value in (('a', '1'), ('b', '2'), ('c', '3')):
        assert ok(etcdctl(etcd, 'put', p + key, value)) == b'OK\n'
    assert ok(etcdctl(etcd, 'get', p + 'b')) == f'{p}b\n2\n'.encode()
    assert ok(etcdctl(etcd, 'get', p, '--prefix')) == f'{p}a\n1\n{p}b\n2\n{p}c\n3\n'.encode()
    assert ok(etcdctl(etcd, 'get', p + 'a', p + 'c')) == f'{p}a\n1\n{p}b\n2\n'.encode()   # [a, c)
    assert ok(etcdctl(etcd, 'get', p, '--prefix', '--keys-only')) == f'{p}a\n{p}b\n{p}c\n'.encode()
    assert ok(etcdctl(etcd, 'get', p, '--prefix', '--limit', '2')) == f'{p}a\n1\n{p}b\n2\n'.encode()
    assert ok(etcdctl(etcd, 'get', p + 'missing')) == b''
    # an overwrite is what get then shows
    ok(etcdctl(etcd, 'put', p + 'b', 'two words'))
    assert ok(etcdctl(etcd, 'get', p + 'b')) == f'{p}b\ntwo words\n'.encode()


def test_get_json_hex_and_rev(etcd, p):
    key = p + 'k'
    first = json.loads(ok(etcdctl(etcd, 'put', key, 'old', '-w', 'json')))
    first_revision = first['header']['revision']
    assert isinstance(first_revision, int) and first_revision > 0
    second = json.loads(ok(etcdctl(etcd, 'put', key, 'new', '-w', 'json')))
    assert second['header']['revision'] > first_revision

    assert ok(etcdctl(etcd, 'get', key, '--rev', first_revision)) == f'{key}\nold\n'.encode()
    assert ok(etcdctl(etcd, 'get', key)) == f'{key}\nnew\n'.encode()
    assert ok(etcdctl(etcd, 'get', key, '--hex')) == key.encode().hex().encode() + b'\n' + b'new'.hex().encode() + b'\n'
    # --hex before the command works as well
    assert ok(cli('--hex', '--endpoints', etcd.url, 'get', key)) == \
        key.encode().hex().encode() + b'\n' + b'new'.hex().encode() + b'\n'

    out = json.loads(ok(etcdctl(etcd, 'get', key, '-w', 'json')))
    assert out['header']['revision'] >= second['header']['revision']
    assert out['count'] == 1 and out['more'] is False
    [kv] = out['kvs']
    assert base64.b64decode(kv['key']) == key.encode() and base64.b64decode(kv['value']) == b'new'
    assert kv['create_revision'] == first_revision and kv['mod_revision'] == second['header']['revision']
    assert kv['version'] == 2

    old = json.loads(ok(etcdctl(etcd, 'get', key, '--rev', first_revision, '-w', 'json')))
    assert base64.b64decode(old['kvs'][0]['value']) == b'old' and old['kvs'][0]['version'] == 1

    ok(etcdctl(etcd, 'put', p + 'l', 'x'))
    limited = json.loads(ok(etcdctl(etcd, 'get', p, '--prefix', '--limit', '1', '-w', 'json')))
    assert limited['count'] == 2 and limited['more'] is True and len(limited['kvs']) == 1
    keys_only = json.loads(ok(etcdctl(etcd, 'get', p, '--prefix', '--keys-only', '-w', 'json')))
    assert [base64.b64decode(kv['key']) for kv in keys_only['kvs']] == [key.encode(), (p + 'l').encode()]
    assert all('value' not in kv for kv in keys_only['kvs'])       # no values, as etcdctl


BINARY = bytes(range(256)) + b'\n\r\n\x00tail'


@pytest.mark.parametrize('how', ['dash', 'no-value'])
def test_put_from_stdin_binary(etcd, p, how):
    key = p + 'bin'
    args = ['put', key, '-'] if how == 'dash' else ['put', key]
    assert ok(etcdctl(etcd, *args, input=BINARY)) == b'OK\n'
    assert ok(etcdctl(etcd, 'get', key)) == key.encode() + b'\n' + BINARY + b'\n'
    assert ok(etcdctl(etcd, 'get', key, '--hex')) == key.encode().hex().encode() + b'\n' + BINARY.hex().encode() + b'\n'
    [kv] = json.loads(ok(etcdctl(etcd, 'get', key, '-w', 'json')))['kvs']
    assert base64.b64decode(kv['value']) == BINARY
    # an empty stdin is an empty value
    assert ok(etcdctl(etcd, 'put', key, input=b'')) == b'OK\n'
    assert ok(etcdctl(etcd, 'get', key)) == key.encode() + b'\n\n'


def test_del_count_prefix_and_range(etcd, p):
    for key in ('a', 'b', 'c', 'd', 'e'):
        ok(etcdctl(etcd, 'put', p + key, key))
    assert ok(etcdctl(etcd, 'del', p + 'a')) == b'1\n'
    assert ok(etcdctl(etcd, 'del', p + 'a')) == b'0\n'
    assert ok(etcdctl(etcd, 'del', p + 'b', p + 'd')) == b'2\n'       # [b, d)
    assert ok(etcdctl(etcd, 'get', p, '--prefix', '--keys-only')) == f'{p}d\n{p}e\n'.encode()
    deleted = json.loads(ok(etcdctl(etcd, 'del', p + 'd', '-w', 'json')))
    assert deleted['deleted'] == 1 and deleted['header']['revision'] > 0
    assert ok(etcdctl(etcd, 'del', p, '--prefix')) == b'1\n'
    assert ok(etcdctl(etcd, 'get', p, '--prefix')) == b''


def _status_rows(text):
    return [line.split(', ') for line in text.decode().splitlines()]


def test_status_formats_and_where_endpoints_come_from(etcd):
    port = etcd.url.rsplit(':', 1)[1]
    [row] = _status_rows(ok(cli('--endpoints', etcd.url, 'status')))
    assert row[0] == etcd.url and re.fullmatch(r'[0-9a-f]+', row[1]) and re.fullmatch(r'3\.\d+\.\d+', row[2])
    assert int(row[3]) > 0 and row[4] == 'True' and int(row[5]) >= 1 and int(row[6]) >= 1
    member_id = row[1]

    # after the command; and the command's wins over the one before it
    assert _status_rows(ok(cli('status', '--endpoints', etcd.url)))[0][:2] == [etcd.url, member_id]
    assert _status_rows(ok(cli('--endpoints', 'http://127.0.0.1:9', 'status', '--endpoints', etcd.url)))[0][0] \
        == etcd.url
    # ETCDCTL_ENDPOINTS, without a scheme (http:// is assumed); --endpoints wins over it
    env = environment(ETCDCTL_ENDPOINTS=f'127.0.0.1:{port}')
    assert _status_rows(ok(cli('status', env=env)))[0][:2] == [f'http://127.0.0.1:{port}', member_id]
    env = environment(ETCDCTL_ENDPOINTS='http://127.0.0.1:9')
    assert _status_rows(ok(cli('status', '--endpoints', etcd.url, env=env)))[0][0] == etcd.url
    # several endpoints: each asked on its own, one row each
    rows = _status_rows(ok(cli('status', '--endpoints', f'{etcd.url},127.0.0.1:{port}')))
    assert [r[0] for r in rows] == [etcd.url, f'http://127.0.0.1:{port}']

    [record] = json.loads(ok(cli('status', '--endpoints', etcd.url, '-w', 'json')))
    assert record['endpoint'] == etcd.url and record['member_id'] == member_id and record['is_leader'] is True
    assert isinstance(record['revision'], int) and record['revision'] >= 1
    assert isinstance(record['db_size'], int) and record['version'] == row[2]
    # -w before the command
    assert json.loads(ok(cli('-w', 'json', '--endpoints', etcd.url, 'status')))[0]['member_id'] == member_id

    table = ok(cli('status', '--endpoints', etcd.url, '-w', 'table')).decode().splitlines()
    assert len(table) == 5 and table[0] == table[2] == table[4] and re.fullmatch(r'\+[-+]+\+', table[0])
    assert [c.strip() for c in table[1].strip('|').split('|')] == \
        ['ENDPOINT', 'ID', 'VERSION', 'DB SIZE', 'IS LEADER', 'RAFT TERM', 'RAFT INDEX']
    cells = [c.strip() for c in table[3].strip('|').split('|')]
    assert cells[:3] == [etcd.url, member_id, row[2]] and cells[4] == 'True'
    assert len({len(line) for line in table}) == 1                 # columns line up


def test_members_formats(etcd):
    member_id = json.loads(ok(etcdctl(etcd, 'status', '-w', 'json')))[0]['member_id']
    [row] = _status_rows(ok(etcdctl(etcd, 'members')))
    assert row[0] == member_id and row[1] == 'started' and row[2]
    assert row[3].startswith('http://127.0.0.1:') and etcd.url in row[4].split(',') and row[5] == 'False'

    [member] = json.loads(ok(etcdctl(etcd, 'members', '-w', 'json')))
    assert member == {'id': member_id, 'name': row[2], 'peer_urls': row[3].split(','),
                      'client_urls': row[4].split(','), 'is_learner': False}

    table = ok(etcdctl(etcd, 'members', '-w', 'table')).decode().splitlines()
    assert len(table) == 5 and table[0] == table[2] == table[4]
    assert [c.strip() for c in table[1].strip('|').split('|')] == \
        ['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER']
    assert [c.strip() for c in table[3].strip('|').split('|')] == row


def test_compact_then_old_revisions_are_gone(etcd_factory):
    own = etcd_factory()            # compaction is for the whole etcd: not the shared one
    revisions = [json.loads(ok(etcdctl(own, 'put', 'k', f'v{i}', '-w', 'json')))['header']['revision']
                 for i in range(3)]
    assert ok(etcdctl(own, 'get', 'k', '--rev', revisions[0])) == b'k\nv0\n'
    assert ok(etcdctl(own, 'compact', revisions[2])) == f'compacted revision {revisions[2]}\n'.encode()
    text = one_error_line(etcdctl(own, 'get', 'k', '--rev', revisions[0]))
    assert 'compacted' in text, text
    assert ok(etcdctl(own, 'get', 'k', '--rev', revisions[2])) == b'k\nv2\n'
    assert ok(etcdctl(own, 'get', 'k')) == b'k\nv2\n'
    # compacting to a revision already compacted is an error too
    assert 'compacted' in one_error_line(etcdctl(own, 'compact', revisions[1]))


def test_lease_grant_list_attach_revoke(etcd, p):
    granted = ok(etcdctl(etcd, 'lease', 'grant', '60')).decode()
    found = re.fullmatch(r'lease ([0-9a-f]+) granted with TTL\(60s\)\n', granted)
    assert found, granted
    lease = found.group(1)
    listing = ok(etcdctl(etcd, 'lease', 'list')).decode().splitlines()
    assert re.fullmatch(r'found \d+ leases', listing[0]) and lease in listing[1:]
    assert int(listing[0].split()[1]) == len(listing) - 1
    assert lease in json.loads(ok(etcdctl(etcd, 'lease', 'list', '-w', 'json')))

    assert ok(etcdctl(etcd, 'put', p + 'leased', 'v', '--lease', lease)) == b'OK\n'
    [kv] = json.loads(ok(etcdctl(etcd, 'get', p + 'leased', '-w', 'json')))['kvs']
    assert kv['lease'] == int(lease, 16)

    assert ok(etcdctl(etcd, 'lease', 'revoke', lease)) == f'lease {lease} revoked\n'.encode()
    assert ok(etcdctl(etcd, 'get', p + 'leased')) == b''           # the key went with the lease
    assert lease not in ok(etcdctl(etcd, 'lease', 'list')).decode().splitlines()[1:]
    # revoking it again (or any unknown id): one error line, exit 1
    assert 'not found' in one_error_line(etcdctl(etcd, 'lease', 'revoke', lease))
    assert 'not found' in one_error_line(etcdctl(etcd, 'lease', 'revoke', '7fffffff0000abcd'))
    assert 'is not a lease id' in one_error_line(etcdctl(etcd, 'lease', 'revoke', 'xyz'))
    assert 'TTL' in one_error_line(etcdctl(etcd, 'lease', 'grant'))
    assert 'TTL' in one_error_line(etcdctl(etcd, 'lease', 'grant', 'soon'))


class Watcher(Child):
    def event(self, timeout=30.0):
        """(type, key, value or None) of the next event printed in simple form."""
        kind = self.line(timeout, 'an event').rstrip(b'\n').decode()
        assert kind in ('PUT', 'DELETE'), kind
        key = self.line(10, 'the key of an event').rstrip(b'\n').decode()
        value = self.line(10, 'the value of a PUT').rstrip(b'\n').decode() if kind == 'PUT' else None
        return kind, key, value

    def wait_ready(self, etcd, p):
        """Put ``P ready`` until the watch reports a PUT (a watch sees only what happens after it is
        set up), then put a marker and skip to it: after that, events are exactly the test's."""
        for attempt in range(60):
            ok(etcdctl(etcd, 'put', p + 'ready', str(attempt)))
            try:
                kind, _key, _value = self.event(timeout=1.0)
            except AssertionError:
                if self.proc.poll() is not None:
                    raise
                continue
            assert kind == 'PUT'
            break
        else:
            raise AssertionError(f'the watch reported none of 60 puts; stderr {self.stderr()[-2000:]!r}')
        ok(etcdctl(etcd, 'put', p + 'marker', 'm'))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.event(timeout=max(0.1, deadline - time.monotonic())) == ('PUT', p + 'marker', 'm'):
                return
        raise AssertionError('the marker put was not reported')


def test_watch_prints_puts_and_deletes_and_stops_on_sigint(etcd, p):
    with Watcher('--endpoints', etcd.url, 'watch', p, '--prefix') as watch:
        watch.wait_ready(etcd, p)
        ok(etcdctl(etcd, 'put', p + 'a', 'one'))
        ok(etcdctl(etcd, 'put', p + 'b', 'two'))
        assert ok(etcdctl(etcd, 'del', p + 'a')) == b'1\n'
        ok(etcdctl(etcd, 'put', p[:-1] + 'X/outside', 'not watched'))       # not under the prefix
        ok(etcdctl(etcd, 'put', p + 'c', 'three'))
        assert [watch.event() for _ in range(4)] == [
            ('PUT', p + 'a', 'one'), ('PUT', p + 'b', 'two'), ('DELETE', p + 'a', None), ('PUT', p + 'c', 'three')]
        assert watch.interrupt(within=10) == 0, watch.stderr()[-3000:]
        assert b'Traceback' not in watch.stderr(), watch.stderr()[-3000:]
        rest = []
        while (line := watch.lines.get(timeout=10)) is not None:
            rest.append(line)
        assert rest == []


def test_watch_rev_replays_history_as_json(etcd, p):
    start = json.loads(ok(etcdctl(etcd, 'put', p + 'a', '1', '-w', 'json')))['header']['revision']
    ok(etcdctl(etcd, 'put', p + 'b', '2'))
    ok(etcdctl(etcd, 'del', p + 'a'))
    with Child('--endpoints', etcd.url, 'watch', p, '--prefix', '--rev', start, '-w', 'json') as watch:
        events = [json.loads(watch.line(30, 'a replayed event')) for _ in range(3)]
        assert [(e['type'], base64.b64decode(e['kv']['key']).decode()) for e in events] == \
            [('PUT', p + 'a'), ('PUT', p + 'b'), ('DELETE', p + 'a')]
        assert base64.b64decode(events[0]['kv']['value']) == b'1' and events[0]['kv']['mod_revision'] == start
        assert watch.interrupt(within=10) == 0, watch.stderr()[-3000:]
        assert b'Traceback' not in watch.stderr()


@pytest.mark.parametrize('args', [['get', 'k'], ['status'], ['put', 'k', 'v'], ['lease', 'list'],
                                  ['commits', '--namespace', 'n', 'list']])
def test_unreachable_endpoint_is_one_error_line(args):
    where = ['--endpoints', 'http://127.0.0.1:9']
    argv = args[:1] + where + args[1:] if args[0] == 'commits' else where + args
    started = time.monotonic()
    text = one_error_line(cli(*argv, timeout=60))
    assert '127.0.0.1:9' in text, text
    assert time.monotonic() - started < 30
    # --debug: the same line, and the traceback (to stderr)
    debug = cli(*argv, '--debug', timeout=60)
    assert debug.returncode == 1 and debug.stdout.decode().startswith('error: ')
    assert b'Traceback (most recent call last)' in debug.stderr, debug.stderr[-3000:]


def test_unreachable_commits_http_api_is_one_error_line():
    text = one_error_line(cli('commits', '--url', 'http://127.0.0.1:9', 'list', timeout=60))
    assert '127.0.0.1:9' in text, text


@pytest.mark.parametrize('argv', [['get', 'k', '--bogus'], ['--bogus', 'status'], ['get'],
                                  ['lease', 'frob'], ['get', 'k', '--rev', 'x'], ['status', '-w', 'yaml'],
                                  ['commits', '--namespace', 'n', 'list', '--bogus'],
                                  ['commits', '--namespace', 'n', 'list', '-w', 'table'],
                                  ['commits', '--namespace', 'n', 'show'],
                                  ['commits', 'list']])             # neither --url nor an etcd
def test_usage_errors_exit_2(argv):
    done = cli(*argv, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert b'usage:' in done.stderr and b'Traceback' not in done.stderr + done.stdout, done.stderr


def _fill(etcd, p, count, size):
    """``count`` keys under ``p`` with values of ``size`` bytes, in transactions (a small script)."""
    script = textwrap.dedent('''
        import sys
        from twisted.internet import defer, task
        from txaioetcd import Client, OpSet, Transaction

        async def main(reactor, url, prefix, count, size):
            client = Client(reactor, url=url, timeout=30)
            try:
                for start in range(0, count, 100):
                    await client.submit(Transaction(success=[
                        OpSet(prefix + b'%05d' % i, b'v' * size) for i in range(start, min(count, start + 100))]))
            finally:
                await client.close()

        task.react(lambda reactor: defer.ensureDeferred(
            main(reactor, sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4]))))
    ''')
    done = subprocess.run([sys.executable, '-c', script, etcd.url, p, str(count), str(size)],
                          capture_output=True, env=environment(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _first_line_then_close(*args, env=None):
    """Like ``... | head -1``: read one line of the command's stdout, close the pipe, and wait for
    the command → (the line, exit code, stderr)."""
    proc = subprocess.Popen(COMMAND + [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or environment(), cwd=ROOT)
    try:
        fd, got, deadline = proc.stdout.fileno(), b'', time.monotonic() + 60
        while b'\n' not in got:
            left = deadline - time.monotonic()
            assert left > 0, f'no line from {args} within 60s (got {got[:200]!r})'
            readable, _, _ = select.select([fd], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(fd, 1)                # byte by byte: leave the rest in the pipe
                assert chunk, f'{args} closed stdout before a whole line (got {got!r})'
                got += chunk
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
        return got, proc.returncode, err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if not proc.stdout.closed:
            proc.stdout.close()
        if not proc.stderr.closed:
            proc.stderr.close()


@pytest.mark.parametrize('extra', [[], ['--hex'], ['--keys-only']])
def test_get_into_a_pipe_closed_early_ends_quietly(etcd, p, extra):
    _fill(etcd, p, 2000, 150)       # ~300 KB of output: far more than a pipe holds
    line, code, err = _first_line_then_close('--endpoints', etcd.url, 'get', p, '--prefix', *extra)
    key = (p + '00000').encode()
    assert line == (key.hex().encode() if extra == ['--hex'] else key) + b'\n'
    assert b'BrokenPipeError' not in err and b'Traceback' not in err and b'Exception ignored' not in err, err
    assert code == 0, (code, err)


def test_commits_show_and_log_into_a_pipe_closed_early_end_quietly(etcd, p):
    payload = b''.join(b'line %06d of a long payload\n' % i for i in range(20000))    # ~560 KB
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'big', input=payload))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'big', input=b'changed first line\n' + payload.split(b'\n', 1)[1]))
    base = ['commits', '--endpoints', etcd.url, '--namespace', NS, '--prefix', p]
    for verb, first in ((['show', 'big', '1'], b'line 000000 of a long payload\n'), (['log', 'big'], b'version 2\n')):
        line, code, err = _first_line_then_close(*base, *verb)
        assert line == first
        assert b'BrokenPipeError' not in err and b'Traceback' not in err and b'Exception ignored' not in err, err
        assert code == 0, (verb, code, err)


# ---------------------------------------------------------------------------------------------------
# commits commands against etcd

def test_commit_value_versions_messages_and_conflicts(etcd, p):
    first = b'\x00\x01binary\xfe\xff\nlimit = 10\n'
    assert ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'first',
                      input=first)) == b'committed app.conf version 1\n'
    assert ok(commits(etcd, p, 'show', 'app.conf')) == first
    assert ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', input=b'limit = 20\n')) == \
        b'committed app.conf version 2\n'                   # the default version: the latest + 1
    assert ok(commits(etcd, p, '--author', 'bob', 'commit-value', 'app.conf', '--version', '3', '-m', 'third',
                      input=b'limit = 30\n')) == b'committed app.conf version 3\n'

    for wrong in ('7', '3', '1'):
        text = one_error_line(commits(etcd, p, '--author', 'bob', 'commit-value', 'app.conf', '--version', wrong,
                                      input=b'never\n'))
        assert text.startswith(f"error: commit of 'app.conf': version {wrong} given, but the next version is 4"), text
    assert ok(commits(etcd, p, 'show', 'app.conf')) == b'limit = 30\n'      # nothing was written
    head = heads(etcd, p)['app.conf']
    assert head['version'] == 3 and head['author'] == 'bob' and head['comment'] == 'third'
    assert ok(commits(etcd, p, 'show', 'app.conf', '1')) == first
    assert ok(commits(etcd, p, 'show', 'app.conf', '2')) == b'limit = 20\n'
    assert heads(etcd, p) == {'app.conf': head}

    # a new key starts at version 1, and --version 2 for it is refused
    text = one_error_line(commits(etcd, p, '--author', 'a', 'commit-value', 'new', '--version', '2', input=b'x'))
    assert 'version 2 given, but the next version is 1' in text
    assert ok(commits(etcd, p, '--author', 'a', 'commit-value', 'new', '--version', '1', input=b'')) == \
        b'committed new version 1\n'
    assert ok(commits(etcd, p, 'show', 'new')) == b''


def test_prepare_exact_text(etcd, p):
    assert ok(commits(etcd, p, '--author', 'ann', 'prepare', 'k')) == b'version: 1\nauthor: ann\ncomment: ""\n---\n'
    payload = b'a\x00b\xff\nlast line without newline'
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', '-m', 'a comment', input=payload))
    assert ok(commits(etcd, p, '--author', 'ann', 'prepare', 'k')) == \
        b'version: 2\nauthor: ann\ncomment: ""\n---\n' + payload
    # an author that is not plain text is quoted (JSON), unicode as it is
    assert ok(commits(etcd, p, '--author', 'Łukasz: "x"', 'prepare', 'k')) == \
        'version: 2\nauthor: "Łukasz: \\"x\\""\ncomment: ""\n---\n'.encode() + payload
    # after a removal the next version starts from an empty payload
    ok(commits(etcd, p, '--author', 'ann', 'uncommit', 'k', '-y'))
    assert ok(commits(etcd, p, '--author', 'ann', 'prepare', 'k')) == b'version: 3\nauthor: ann\ncomment: ""\n---\n'


def test_commit_prepared_text(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'first', input=b'limit = 10\n'))
    text = ok(commits(etcd, p, '--author', 'ann', 'prepare', 'app.conf')).decode()
    edited = text.replace('limit = 10', 'limit = 20').replace('comment: ""', 'comment: more room')
    assert ok(commits(etcd, p, 'commit', 'app.conf', input=edited.encode())) == b'committed app.conf version 2\n'
    assert heads(etcd, p)['app.conf']['comment'] == 'more room'
    # the same text again: version 2 is taken
    again = one_error_line(commits(etcd, p, 'commit', 'app.conf', input=edited.encode()))
    assert again.startswith("error: commit of 'app.conf': version 2 given, but the next version is 3"), again

    comment = 'why: because — ünïcödé "quoted" \\ back'
    quoted = ('version: 3\nauthor: "Zoë Ü"\ncomment: ' + json.dumps(comment, ensure_ascii=False) +
              '\n---\n').encode() + b'binary \x00\xff\n'
    assert ok(commits(etcd, p, 'commit', 'app.conf', input=quoted)) == b'committed app.conf version 3\n'
    head = heads(etcd, p)['app.conf']
    assert head['comment'] == comment and head['author'] == 'Zoë Ü' and head['version'] == 3
    assert ok(commits(etcd, p, 'show', 'app.conf')) == b'binary \x00\xff\n'
    assert f'\n    {comment}\n'.encode() in ok(commits(etcd, p, 'log', 'app.conf', '-n', '1'))
    # a YAML single-quoted comment; comment lines ('#') and blank lines in the header are skipped
    single = b"# a note\nversion: 4\n\nauthor: ann\ncomment: 'it''s: fine'\n---\n"
    assert ok(commits(etcd, p, 'commit', 'app.conf', input=single)) == b'committed app.conf version 4\n'
    assert heads(etcd, p)['app.conf']['comment'] == "it's: fine"
    assert ok(commits(etcd, p, 'show', 'app.conf')) == b''          # '---' at the end: an empty payload
    # the rendered header of a comment with ': ' in it parses back to the same comment
    prepared = ok(commits(etcd, p, '--author', 'a: b', 'prepare', 'app.conf'))
    assert prepared.startswith(b'version: 5\nauthor: "a: b"\n')
    assert ok(commits(etcd, p, 'commit', 'app.conf', input=prepared + b'x')) == b'committed app.conf version 5\n'
    assert heads(etcd, p)['app.conf']['author'] == 'a: b'


@pytest.mark.parametrize('text, message', [
    (b'garbage without a header\n', 'error: no line "---" between the header and the payload'),
    (b'version: 5\nauthor: ann\nlimit = 10\n', 'error: no line "---" between the header and the payload'),
    (b'version: two\nauthor: ann\n---\nx', 'error: the header needs "version: N" with N a positive integer'),
    (b'version: 0\nauthor: ann\n---\nx', 'error: the header needs "version: N" with N a positive integer'),
    (b'author: ann\n---\nx', 'error: the header needs "version: N" with N a positive integer'),
    (b'version: 2\n---\nx', 'error: the header needs "author: ..."'),
    (b'version: 2\nauthor: ""\n---\nx', 'error: the header needs "author: ..."'),
    (b'version: 2\nauthor: ann\nlimit: 10\n---\nx', 'error: header line 3: \'limit: 10\' is not "version: N", '
                                                     '"author: ..." or "comment: ..."'),
    (b'version: 2\nauthor: ann\ncomment: "unterminated\n---\nx', 'error: header line 3: a badly quoted value '
                                                                '"unterminated'),
])
def test_commit_with_a_broken_header(etcd, p, text, message):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'v1\n'))
    assert one_error_line(commits(etcd, p, 'commit', 'k', input=text)) == message + '\n'
    assert heads(etcd, p)['k']['version'] == 1 and ok(commits(etcd, p, 'show', 'k')) == b'v1\n'


def test_show_versions_and_errors(etcd, p):
    payloads = [bytes(range(256)), b'\r\n\r\n', b'']
    for payload in payloads:
        ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=payload))
    for version, payload in enumerate(payloads, 1):
        assert ok(commits(etcd, p, 'show', 'k', str(version))) == payload
    assert ok(commits(etcd, p, 'show', 'k')) == b''
    assert one_error_line(commits(etcd, p, 'show', 'k', '9')) == f"error: no version 9 of 'k' in namespace '{NS}'\n"
    assert one_error_line(commits(etcd, p, 'show', 'nope')) == f"error: no commit of 'nope' in namespace '{NS}'\n"
    ok(commits(etcd, p, '--author', 'ann', 'uncommit', 'k', '-y'))
    assert one_error_line(commits(etcd, p, 'show', 'k')) == 'error: k version 4 is removed (an empty commit)\n'
    assert ok(commits(etcd, p, 'show', 'k', '1')) == payloads[0]          # history is kept


def test_list_simple_all_and_json(etcd, p):
    assert ok(commits(etcd, p, 'list')) == b''
    assert heads(etcd, p) == {}
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'b.txt', '-m', 'bee', input=b'b'))
    ok(commits(etcd, p, '--author', 'bob', 'commit-value', 'a.txt', input=b'a1'))
    ok(commits(etcd, p, '--author', 'bob', 'commit-value', 'a.txt', '-m', 'second a', input=b'a2'))
    ok(commits(etcd, p, '--author', 'cy', 'commit-value', 'gone', input=b'g'))
    ok(commits(etcd, p, '--author', 'cy', 'uncommit', 'gone', '-y'))

    lines = ok(commits(etcd, p, 'list')).decode().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r'a\.txt  v2  bob  (\S+)  second a', lines[0]) and \
        MTIME.fullmatch(lines[0].split('  ')[3]), lines
    assert re.fullmatch(r'b\.txt  v1  ann  \S+  bee', lines[1]), lines
    every = ok(commits(etcd, p, 'list', '-A')).decode().splitlines()
    assert every[:2] == lines and re.fullmatch(r'gone  v2 \(removed\)  cy  \S+', every[2]), every
    assert ok(commits(etcd, p, 'list', '--all')).decode().splitlines() == every

    listing = heads(etcd, p)
    assert list(listing) == ['a.txt', 'b.txt']
    a = listing['a.txt']
    assert {k: a[k] for k in ('key', 'version', 'author', 'comment', 'empty')} == \
        {'key': 'a.txt', 'version': 2, 'author': 'bob', 'comment': 'second a', 'empty': False}
    assert MTIME.fullmatch(a['mtime']) and isinstance(a['revision'], int)
    assert a['mtime'] == lines[0].split('  ')[3]
    full = heads(etcd, p, '-A')
    assert list(full) == ['a.txt', 'b.txt', 'gone'] and full['gone']['empty'] is True and full['gone']['version'] == 2


def test_log_newest_first_with_diffs(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'first', input=b'keep\nlimit = 10\n'))
    ok(commits(etcd, p, '--author', 'bob', 'commit-value', 'app.conf', input=b'keep\nlimit = 20\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'third', input=b'keep\nlimit = 30\n'))
    out = ok(commits(etcd, p, 'log', 'app.conf')).decode()
    assert '\x1b[' not in out                       # stdout is not a terminal: no colour
    blocks = re.split(r'^(?=version \d+)', out, flags=re.M)[1:]
    assert [b.split('\n', 1)[0] for b in blocks] == ['version 3', 'version 2', 'version 1']
    for block, author in zip(blocks, ('ann', 'bob', 'ann')):
        lines = block.splitlines()
        assert lines[1] == f'Author: {author}' and lines[2].startswith('Date:   ') and MTIME.fullmatch(lines[2][8:])
    assert '\n    third\n' in blocks[0] and '\n    (no comment)\n' in blocks[1] and '\n    first\n' in blocks[2]
    assert '--- app.conf version 2\n+++ app.conf version 3\n' in blocks[0]
    assert ' keep\n-limit = 20\n+limit = 30\n' in blocks[0]
    assert ' keep\n-limit = 10\n+limit = 20\n' in blocks[1]
    assert '--- /dev/null\n+++ app.conf version 1\n@@ -0,0 +1,2 @@\n+keep\n+limit = 10\n' in blocks[2]

    one = ok(commits(etcd, p, 'log', 'app.conf', '-n', '1')).decode()
    assert one.startswith('version 3\nAuthor: ann\n') and 'version 2\n' not in one.replace('app.conf version 2', '')
    assert '-limit = 20\n+limit = 30\n' in one            # the diff to the one before is still shown
    assert one == blocks[0]
    from_two = ok(commits(etcd, p, 'log', 'app.conf', '2')).decode()
    assert from_two == blocks[1] + blocks[2]
    no_diff = ok(commits(etcd, p, 'log', 'app.conf', '--no-diff')).decode()
    assert '---' not in no_diff and '+limit' not in no_diff and '@@' not in no_diff
    assert re.findall(r'^version \d+', no_diff, flags=re.M) == ['version 3', 'version 2', 'version 1']
    assert ok(commits(etcd, p, 'log', 'app.conf', '-n', '2', '--no-diff')).decode().count('Author: ') == 2

    assert one_error_line(commits(etcd, p, 'log', 'nope')) == "error: no commit of 'nope'\n"
    ok(commits(etcd, p, '--author', 'cy', 'uncommit', 'app.conf', '-y'))
    removed = ok(commits(etcd, p, 'log', 'app.conf', '-n', '1')).decode()
    assert removed.startswith('version 4 (removed)\nAuthor: cy\n') and '-keep\n-limit = 30\n' in removed


def _read_pty(master, proc, timeout=60):
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([master], [], [], 0.5)
        if readable:
            try:
                data = os.read(master, 65536)
            except OSError:             # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        raise AssertionError(f'{proc.args} still writing after {timeout}s')
    return b''.join(chunks).replace(b'\r\n', b'\n')


def test_log_on_a_terminal_has_colours_unless_no_color(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'old\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'new\n'))
    argv = COMMAND + ['commits', '--endpoints', etcd.url, '--namespace', NS, '--prefix', p, 'log', 'k', '-n', '1']
    for extra, coloured in (({}, True), ({'NO_COLOR': '1'}, False)):
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                                env=environment(PAGER='cat', **extra), cwd=ROOT)
        os.close(slave)
        try:
            out = _read_pty(master, proc)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()[-3000:]
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stderr.close()
            os.close(master)
        if coloured:
            assert b'\x1b[33mversion 2\x1b[0m\n' in out and b'\x1b[31m-old\x1b[0m\n' in out, out
            assert b'\x1b[32m+new\x1b[0m\n' in out, out
        else:
            assert b'\x1b[' not in out and out.startswith(b'version 2\nAuthor: ann\n') and b'-old\n+new\n' in out, out


def test_revert(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'\x00one\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'two\n'))
    assert ok(commits(etcd, p, '--author', 'bob', 'revert', 'k', '1')) == b'committed k version 3\n'
    assert ok(commits(etcd, p, 'show', 'k')) == b'\x00one\n'
    head = heads(etcd, p)['k']
    assert head['comment'] == 'Revert to version 1' and head['author'] == 'bob' and head['version'] == 3
    assert ok(commits(etcd, p, '--author', 'bob', 'revert', 'k', '2', '-m', 'back: to two')) == \
        b'committed k version 4\n'
    assert ok(commits(etcd, p, 'show', 'k')) == b'two\n' and heads(etcd, p)['k']['comment'] == 'back: to two'
    assert "no version 9 of 'k'" in one_error_line(commits(etcd, p, '--author', 'bob', 'revert', 'k', '9'))
    assert heads(etcd, p)['k']['version'] == 4
    # reverting a removed key to a version it had brings it back
    ok(commits(etcd, p, '--author', 'bob', 'uncommit', 'k', '-y'))
    assert ok(commits(etcd, p, '--author', 'bob', 'revert', 'k', '1')) == b'committed k version 6\n'
    assert ok(commits(etcd, p, 'show', 'k')) == b'\x00one\n' and 'k' in heads(etcd, p)


def test_uncommit(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'v\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'other', input=b'o\n'))
    # asked, answered no: nothing written
    done = commits(etcd, p, '--author', 'ann', 'uncommit', 'k', input=b'n\n')
    assert done.returncode == 1 and done.stdout == b'Remove k (version 1)? [y/N] Not removed.\n', done
    # no answer at all (stdin at its end) is no as well
    done = commits(etcd, p, '--author', 'ann', 'uncommit', 'k', input=b'')
    assert done.returncode == 1 and done.stdout.endswith(b'Not removed.\n'), done
    assert heads(etcd, p)['k']['version'] == 1 and ok(commits(etcd, p, 'show', 'k')) == b'v\n'

    assert ok(commits(etcd, p, '--author', 'bob', 'uncommit', 'k', '-y')) == b'committed k version 2 (removed)\n'
    assert list(heads(etcd, p)) == ['other']
    removed = heads(etcd, p, '-A')['k']
    assert removed['empty'] is True and removed['version'] == 2 and removed['author'] == 'bob'
    assert one_error_line(commits(etcd, p, '--author', 'bob', 'uncommit', 'k', '-y')) == \
        'error: k is already removed (version 2)\n'
    assert ok(commits(etcd, p, 'show', 'k', '1')) == b'v\n'
    # answered yes
    done = commits(etcd, p, '--author', 'ann', 'uncommit', 'other', input=b'y\n')
    assert ok(done) == b'Remove other (version 1)? [y/N] committed other version 2 (removed)\n'
    assert heads(etcd, p) == {}
    assert "no commit of 'never'" in one_error_line(commits(etcd, p, 'uncommit', 'never', '-y'))


def test_author_from_option_environment_or_login(etcd, p):
    ok(commits(etcd, p, '--author', 'opt', 'commit-value', 'a', input=b'1'))
    ok(commits(etcd, p, 'commit-value', 'b', input=b'1', env=environment(TXAIOETCD_AUTHOR='from-env')))
    ok(commits(etcd, p, '--author', 'opt-wins', 'commit-value', 'c', input=b'1',
               env=environment(TXAIOETCD_AUTHOR='from-env')))
    login_env = environment(LOGNAME='login-name-x', USER='login-name-x')
    ok(commits(etcd, p, 'commit-value', 'd', input=b'1', env=login_env))
    ok(commits(etcd, p, 'commit-value', 'e', input=b'1'))
    listing = heads(etcd, p)
    assert {k: m['author'] for k, m in listing.items()} == {
        'a': 'opt', 'b': 'from-env', 'c': 'opt-wins', 'd': 'login-name-x', 'e': getpass.getuser()}
    # the author given after the verb, and one for prepare from the environment
    ok(commits(etcd, p, 'commit-value', 'a', '--author', 'after', input=b'2'))
    assert heads(etcd, p)['a']['author'] == 'after'
    assert ok(commits(etcd, p, 'prepare', 'a', env=environment(TXAIOETCD_AUTHOR='envy'))).startswith(
        b'version: 3\nauthor: envy\n')
    assert ok(commits(etcd, p, 'prepare', 'a', env=login_env)).startswith(b'version: 3\nauthor: login-name-x\n')


def test_options_after_the_verb_win(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'v'))
    done = cli('commits', '--endpoints', 'http://127.0.0.1:9', '--namespace', 'elsewhere', '--prefix', 'nowhere/',
               'list', '--endpoints', etcd.url, '--namespace', NS, '--prefix', p)
    assert ok(done).startswith(b'k  v1  ann  ')
    env = environment(ETCDCTL_ENDPOINTS=etcd.url)
    assert ok(cli('commits', 'show', 'k', '--namespace', NS, '--prefix', p, env=env)) == b'v'
    env = environment(ETCD_URL=etcd.url)
    assert ok(cli('commits', '--namespace', NS, '--prefix', p, 'show', 'k', env=env)) == b'v'


# ---------------------------------------------------------------------------------------------------
# commits edit, with $EDITOR a script

EDITOR_SCRIPT = '''
import json, os, subprocess, sys
path = sys.argv[1]
with open(path, 'rb') as f:
    text = f.read()
with open(os.environ['EDIT_SEEN'], 'wb') as f:          # what the editor was given
    f.write(text)
mode = os.environ['EDIT_MODE']
if mode == 'fail':
    sys.exit(3)
if mode == 'conflict':                                   # someone commits while we edit
    subprocess.run(json.loads(os.environ['EDIT_OTHER']), input=b'sneaky\\n', check=True, timeout=60,
                   stdout=subprocess.DEVNULL)
if mode in ('change', 'conflict'):
    text = text.replace(b'comment: ""', 'comment: "edited: ünï"'.encode()).replace(b'limit = 10', b'limit = 20')
elif mode == 'broken':
    text = b'no header here\\n'
elif mode == 'new':
    text = text + b'brand new\\n'
with open(path, 'wb') as f:
    f.write(text)
'''


@pytest.fixture
def editor(tmp_path):
    """→ edit(etcd, p, key, mode, *args, stdin=b'') running ``commits edit`` with $EDITOR = the script
    (in a folder with a space in its name: the command is split like a shell's); its temporary files
    go to a folder of the test's own."""
    folder = tmp_path / 'my editor'
    folder.mkdir()
    script = folder / 'edit.py'
    script.write_text(EDITOR_SCRIPT)
    temp = tmp_path / 'tmp'
    temp.mkdir()
    seen = tmp_path / 'seen.txt'

    def edit(etcd, p, key, mode, *args, stdin=b'', variable='EDITOR', **extra):
        other = COMMAND + ['commits', '--endpoints', etcd.url, '--namespace', NS, '--prefix', p, '--author',
                           'intruder', 'commit-value', key]
        env = environment(TMPDIR=str(temp), EDIT_MODE=mode, EDIT_SEEN=str(seen), EDIT_OTHER=json.dumps(other),
                          **{variable: shlex.join([sys.executable, str(script)])}, **extra)
        return commits(etcd, p, '--author', 'ann', 'edit', key, *args, input=stdin, env=env)

    edit.temp = temp
    edit.seen = seen
    return edit


def _kept(text, temp):
    found = re.search(r'your text is in (\S+)\n$', text)
    assert found, text
    path = found.group(1)
    assert os.path.dirname(path) == str(temp) and os.path.basename(path).startswith('txaioetcd-'), path
    assert os.path.exists(path), path
    with open(path, 'rb') as f:
        return path, f.read()


EDITED = 'version: 2\nauthor: ann\ncomment: "edited: ünï"\n---\nkeep\nlimit = 20\n'.encode()


def _seed(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'first', input=b'keep\nlimit = 10\n'))


def test_edit_change_with_yes_commits_it(etcd, p, editor):
    _seed(etcd, p)
    out = ok(editor(etcd, p, 'app.conf', 'change', '-y')).decode()
    assert editor.seen.read_bytes() == b'version: 2\nauthor: ann\ncomment: ""\n---\nkeep\nlimit = 10\n'
    assert '--- app.conf version 1\n+++ app.conf version 2\n' in out
    assert ' keep\n-limit = 10\n+limit = 20\n' in out and '\x1b[' not in out
    assert out.endswith('committed app.conf version 2\n') and '[y/N]' not in out
    head = heads(etcd, p)['app.conf']
    assert head['version'] == 2 and head['comment'] == 'edited: ünï' and head['author'] == 'ann'
    assert ok(commits(etcd, p, 'show', 'app.conf')) == b'keep\nlimit = 20\n'
    assert '\n    edited: ünï\n' in ok(commits(etcd, p, 'log', 'app.conf', '-n', '1')).decode()
    assert list(editor.temp.iterdir()) == []            # committed: the temporary file is gone


def test_edit_change_answered_yes(etcd, p, editor):
    _seed(etcd, p)
    out = ok(editor(etcd, p, 'app.conf', 'change', stdin=b'y\n')).decode()
    assert out.endswith('Commit version 2 of app.conf? [y/N] committed app.conf version 2\n'), out
    assert heads(etcd, p)['app.conf']['comment'] == 'edited: ünï'


def test_edit_visual_wins_over_editor(etcd, p, editor):
    _seed(etcd, p)
    ok(editor(etcd, p, 'app.conf', 'change', '-y', variable='VISUAL', EDITOR='/nonexistent/editor'))
    assert heads(etcd, p)['app.conf']['version'] == 2


def test_edit_a_new_key(etcd, p, editor):
    out = ok(editor(etcd, p, 'fresh', 'new', '-y')).decode()
    assert editor.seen.read_bytes() == b'version: 1\nauthor: ann\ncomment: ""\n---\n'
    assert '--- /dev/null\n+++ fresh version 1\n' in out and '+brand new\n' in out
    assert out.endswith('committed fresh version 1\n')
    assert ok(commits(etcd, p, 'show', 'fresh')) == b'brand new\n'


def test_edit_without_change_commits_nothing(etcd, p, editor):
    _seed(etcd, p)
    done = editor(etcd, p, 'app.conf', 'same', '-y')
    assert ok(done) == b'No change, not committing.\n'
    assert heads(etcd, p)['app.conf']['version'] == 1
    assert list(editor.temp.iterdir()) == []


def test_edit_answered_no_keeps_the_text(etcd, p, editor):
    _seed(etcd, p)
    done = editor(etcd, p, 'app.conf', 'change', stdin=b'n\n')
    assert done.returncode == 1, done
    out = done.stdout.decode()
    assert '-limit = 10\n+limit = 20\n' in out and 'Commit version 2 of app.conf? [y/N] Not committed; ' in out
    path, kept = _kept(out, editor.temp)
    assert kept == EDITED
    assert heads(etcd, p)['app.conf']['version'] == 1 and ok(commits(etcd, p, 'show', 'app.conf')) == \
        b'keep\nlimit = 10\n'
    # the kept text can be committed as it is
    assert ok(commits(etcd, p, 'commit', 'app.conf', input=kept)) == b'committed app.conf version 2\n'


def test_edit_conflict_keeps_the_text(etcd, p, editor):
    _seed(etcd, p)
    done = editor(etcd, p, 'app.conf', 'conflict', '-y')
    assert done.returncode == 1, done
    out = done.stdout.decode()
    assert b'Traceback' not in done.stderr, done.stderr
    last = out.splitlines()[-1]
    assert last.startswith("error: commit of 'app.conf': version 2 given, but the next version is 3"), out
    path, kept = _kept(out, editor.temp)
    assert kept == EDITED
    head = heads(etcd, p)['app.conf']                     # the other commit stands, ours is not written
    assert head['version'] == 2 and head['author'] == 'intruder'
    assert ok(commits(etcd, p, 'show', 'app.conf')) == b'sneaky\n'


def test_edit_with_a_failing_editor_keeps_the_text(etcd, p, editor):
    _seed(etcd, p)
    done = editor(etcd, p, 'app.conf', 'fail', '-y')
    assert done.returncode == 1, done
    out = done.stdout.decode()
    assert out.startswith('error: the editor exited with 3; nothing committed, your text is in '), out
    path, kept = _kept(out, editor.temp)
    assert kept == b'version: 2\nauthor: ann\ncomment: ""\n---\nkeep\nlimit = 10\n'
    assert heads(etcd, p)['app.conf']['version'] == 1


def test_edit_broken_header_keeps_the_text(etcd, p, editor):
    _seed(etcd, p)
    done = editor(etcd, p, 'app.conf', 'broken', '-y')
    assert done.returncode == 1, done
    out = done.stdout.decode()
    assert out.startswith('error: no line "---" between the header and the payload; nothing committed, '
                          'your text is in '), out
    assert _kept(out, editor.temp)[1] == b'no header here\n'
    assert heads(etcd, p)['app.conf']['version'] == 1


def test_edit_with_a_missing_editor(etcd, p, editor):
    _seed(etcd, p)
    env = environment(TMPDIR=str(editor.temp), EDITOR='/nonexistent/editor --flag')
    done = commits(etcd, p, '--author', 'ann', 'edit', 'app.conf', '-y', env=env)
    assert done.returncode == 1, done
    out = done.stdout.decode()
    assert out.startswith("error: cannot run the editor '/nonexistent/editor --flag': "), out
    assert _kept(out, editor.temp)[1].startswith(b'version: 2\n')
    assert heads(etcd, p)['app.conf']['version'] == 1


# ---------------------------------------------------------------------------------------------------
# commits against the HTTP API (``commits serve``, a process of its own)

SERVING = re.compile(r"serving commits of namespace '(.*)' at (http://127\.0\.0\.1:(\d+)/) \(etcd (.*); "
                     r"writes (open|need the token)\); Ctrl-C stops\n")


class Server(Child):
    def serving(self):
        line = self.line(60, 'the "serving" line').decode()
        found = SERVING.fullmatch(line)
        assert found, line
        return found


def test_http_api_gives_the_same_as_etcd(etcd, p, editor):
    first = b'\x00\xffbinary\nlimit = 10\n'
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'app.conf', '-m', 'first: one', input=first))
    ok(commits(etcd, p, '--author', 'Zoë', 'commit-value', 'app.conf', input=b'limit = 20\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'ü x.txt', '-m', 'ünï', input=b'u\n'))
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'gone', input=b'g\n'))
    ok(commits(etcd, p, '--author', 'ann', 'uncommit', 'gone', '-y'))

    with Server('commits', 'serve', '--namespace', NS, '--endpoints', etcd.url, '--prefix', p,
                '--listen', 'tcp:0') as server:
        found = server.serving()
        assert found.group(1) == NS and found.group(4) == etcd.url and found.group(5) == 'open'
        url = found.group(2)

        def http(*args, **kwargs):
            return cli('commits', '--url', url, *args, **kwargs)

        def both(*args):
            direct, remote = commits(etcd, p, *args), http(*args)
            assert (remote.returncode, remote.stdout) == (direct.returncode, direct.stdout), (args, direct, remote)
            return remote

        for args in (['list'], ['list', '-A'], ['show', 'app.conf'], ['show', 'app.conf', '1'], ['show', 'ü x.txt'],
                     ['log', 'app.conf'], ['log', 'app.conf', '-n', '1'], ['log', 'app.conf', '1'],
                     ['log', 'app.conf', '--no-diff'], ['log', 'gone'], ['show', 'gone'],
                     ['prepare', 'app.conf', '--author', 'ann']):
            both(*args)
        assert ok(http('show', 'app.conf', '1')) == first
        # the JSON listing: Rainer's metadata (the etcd revision is not part of it)
        remote = json.loads(ok(http('list', '-A', '-w', 'json')))
        direct = heads(etcd, p, '-A')
        assert remote == {k: {f: v for f, v in m.items() if f != 'revision'} for k, m in direct.items()}

        # writes through the API land in etcd
        assert ok(http('--author', 'Łukasz', 'commit-value', 'app.conf', '-m', 'via http: ü',
                       input=b'limit = 30\n')) == b'committed app.conf version 3\n'
        head = heads(etcd, p)['app.conf']
        assert (head['version'], head['author'], head['comment']) == (3, 'Łukasz', 'via http: ü')
        assert ok(commits(etcd, p, 'show', 'app.conf')) == b'limit = 30\n'
        text = one_error_line(http('--author', 'x', 'commit-value', 'app.conf', '--version', '2', input=b'no'))
        assert text.startswith("error: commit of 'app.conf': version 2 given, but the next version is 4"), text
        assert ok(http('--author', 'bob', 'revert', 'app.conf', '1')) == b'committed app.conf version 4\n'
        assert ok(commits(etcd, p, 'show', 'app.conf')) == first
        assert heads(etcd, p)['app.conf']['comment'] == 'Revert to version 1'
        assert ok(http('--author', 'bob', 'commit-value', 'new', input=b'\x00n')) == b'committed new version 1\n'
        assert ok(commits(etcd, p, 'show', 'new')) == b'\x00n'
        prepared = ok(http('--author', 'ann', 'prepare', 'app.conf'))
        assert prepared == b'version: 5\nauthor: ann\ncomment: ""\n---\n' + first
        assert ok(http('commit', 'app.conf', input=prepared.replace(b'comment: ""', b'comment: prepared') + b'more\n')) \
            == b'committed app.conf version 5\n'
        assert ok(commits(etcd, p, 'show', 'app.conf')) == first + b'more\n'
        done = http('--author', 'bob', 'uncommit', 'new', input=b'n\n')
        assert done.returncode == 1 and done.stdout.endswith(b'Not removed.\n')
        assert ok(http('--author', 'bob', 'uncommit', 'new', '-y')) == b'committed new version 2 (removed)\n'
        assert heads(etcd, p, '-A')['new']['empty'] is True
        both('list', '-A')
        both('log', 'app.conf')

        # edit through the API
        ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'e.conf', input=b'keep\nlimit = 10\n'))
        env = environment(TMPDIR=str(editor.temp), EDIT_MODE='change', EDIT_SEEN=str(editor.seen),
                          EDITOR=shlex.join([sys.executable, str(editor.temp.parent / 'my editor' / 'edit.py')]))
        out = ok(cli('commits', '--url', url, '--author', 'ann', 'edit', 'e.conf', '-y', env=env)).decode()
        assert '-limit = 10\n+limit = 20\n' in out and out.endswith('committed e.conf version 2\n')
        assert heads(etcd, p)['e.conf']['comment'] == 'edited: ünï'

        assert 'app.conf' in one_error_line(http('show', 'app.conf', '99'))

        assert server.interrupt(within=10) == 0, server.stderr()[-3000:]
        assert b'Traceback' not in server.stderr(), server.stderr()[-3000:]


def test_http_api_with_a_token(etcd, p):
    ok(commits(etcd, p, '--author', 'ann', 'commit-value', 'k', input=b'v1\n'))
    with Server('commits', 'serve', '--namespace', NS, '--endpoints', etcd.url, '--prefix', p,
                '--listen', 'tcp:0', '--token', 's3cret') as server:
        found = server.serving()
        assert found.group(5) == 'need the token'
        url = found.group(2)
        for token in ([], ['--token', 'wrong']):
            text = one_error_line(cli('commits', '--url', url, '--author', 'a', 'commit-value', 'k', *token,
                                      input=b'v2\n'))
            assert '401' in text, text
        assert heads(etcd, p)['k']['version'] == 1
        # reads need no token
        assert ok(cli('commits', '--url', url, 'show', 'k')) == b'v1\n'
        assert ok(cli('commits', '--url', url, 'list')).startswith(b'k  v1  ann  ')
        assert ok(cli('commits', '--url', url, '--author', 'a', 'commit-value', 'k', '--token', 's3cret',
                      input=b'v2\n')) == b'committed k version 2\n'
        assert ok(cli('commits', '--url', url, '--token', 's3cret', '--author', 'a', 'revert', 'k', '1')) == \
            b'committed k version 3\n'
        env = environment(TXAIOETCD_COMMITS_TOKEN='s3cret')
        assert ok(cli('commits', '--url', url, '--author', 'a', 'commit-value', 'k', input=b'v4\n', env=env)) == \
            b'committed k version 4\n'
        assert '401' in one_error_line(cli('commits', '--url', url, '--author', 'a', 'uncommit', 'k', '-y'))
        assert ok(commits(etcd, p, 'show', 'k')) == b'v4\n'
        assert server.interrupt(within=10) == 0, server.stderr()[-3000:]
        assert b'Traceback' not in server.stderr(), server.stderr()[-3000:]
