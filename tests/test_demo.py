"""The README's quick-start demo runs for real: it starts its own etcd, works, and stops it."""

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
    assert "-> b'hello, etcd' (version 2" in out
    assert '5 keys: items/0, items/1, items/2, items/3, items/4' in out
    assert '-> Failed, current value' in out
    assert 'Compacted, as expected' in out
    assert out.rstrip().endswith('private etcd stopped')
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f'the demo left etcd (pid {pid}) running')


def test_demo_against_a_given_etcd(etcd):
    done = subprocess.run([sys.executable, '-m', 'txaioetcd', 'demo', '--url', etcd.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'at {etcd.url}' in done.stdout and 'demo finished' in done.stdout
