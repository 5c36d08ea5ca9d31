"""The README's quick-start demo runs for real: it starts its own etcd, shows the object-relational
layer at work (tables, transactions, a conflict retried, an index, a mirror) and the raw client, and
stops the etcd it started."""

import os
import re
import subprocess
import sys


def test_demo_runs_against_a_private_etcd():
    env = {k: v for k, v in os.environ.items() if k != 'ETCD_URL'}
    done = subprocess.run([sys.executable, '-m', 'txaioetcd', 'demo'], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    pid = int(re.search(r'etcd \(pid (\d+)\)', out).group(1))
    assert 'connected to etcd 3.' in out
    _shows_the_main_job(out)
    assert re.search(r'etcd compacted its history at revision \d+', out)
    assert out.rstrip().endswith('private etcd stopped')
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f'the demo left etcd (pid {pid}) running')


def _shows_the_main_job(out):
    assert 'newly recorded: accounts, accounts_by_email; attaching again checks: all match' in out
    assert re.search(r'wrote alice \(100\) and bob \(50\), index entries included -> committed at '
                     r'revision \d+', out)
    assert re.search(r'index lookup: accounts_by_email\["bob@example.com"\] -> [0-9a-f-]{36} -> bob', out)
    read, committed = map(int, re.search(r'alice -10, bob \+10: read at revision (\d+), committed at (\d+)',
                                         out).groups())
    assert committed > read
    assert 'the second: TransactionConflict, nothing written (accounts[UUID(' in out
    attempts = re.findall(r'\+[57] after (\d) attempt', out)
    assert sorted(attempts) == ['1', '2'], out        # one deposit conflicted and was run again
    assert 'alice now has 103 = 90 + 1 + 5 + 7, nothing lost' in out
    assert "the mirror saw 'bob' -> 'Bob Builder' and now reads 'Bob Builder'" in out
    assert re.search(r'compare-and-set "unchanged since \d+\?" -> yes, revision \d+', out)
    assert 'carol also committed "version 2": refused, the next version is 3; nothing was written' in out
    assert 'history still complete (log keys are never rewritten): v2 bob: more users; v1 alice: first limits' in out
    assert 'alice reverted to version 1: version 3 "Revert to version 1" now reads \'max_users = 10\'' in out
    assert 'demo finished' in out


def test_demo_against_a_given_etcd(etcd):
    done = subprocess.run([sys.executable, '-m', 'txaioetcd', 'demo', '--url', etcd.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'at {etcd.url}' in done.stdout
    _shows_the_main_job(done.stdout)
    assert 'etcd compacted' not in done.stdout          # never the history of an etcd it was given
