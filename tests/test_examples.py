"""Every example in examples/ runs against the session etcd and does what it says."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'

EXPECTED = {
    'etcdb/tut1.py': ['etcd 3.', 'member default', 'database revision:'],
    'etcdb/tut2.py': ["stored User('alice'", "the table has 1 user(s)", 'loading it again gives None'],
    'etcdb/tut3.py': ['by name "bob": 2 users', 'refused: unique index by_email'],
    'etcdb/counter.py': ['second commit refused: conflict', '20 workers x 10 increments = 200'],
    'etcdb/shop_demo.py': ['order service (v1) attached, recorded: customers, customers_by_email, orders',
                           'billing (v1) invoiced [(1, 900), (2, 1650)]',
                           'order service (v2) attached, catalog updated: orders',
                           'billing (v1) still works: invoiced (3, 3000)',
                           "v2 reads order 1 (written by v1): coupon=None gift=False; order 3: coupon=b'WINTER' gift=True",
                           'order service (v1) attaches again: accepted, catalog unchanged',
                           "refused: slot 3 (orders) does not match the catalog: value_type: catalog has 'FlatBuffers'"],
    'commits/config_service.py': ["service runs with version 1 by ops (initial configuration): {'limit': '10'",
                                  "service runs with version 2 by ann (more room): {'limit': '25'",
                                  'commits edit said: committed service.conf version 2 (exit 0)',
                                  'the service now has limit=25 (version 2)', 'history: v2 ann, v1 ops'],
    'live_config.py': ['service starts with log_level=info, workers=4',
                       'service now runs with log_level=warning, workers=16'],
    'asyncio/notes_service.py': ['instance-a holds the janitor lock', 'PUT long  -> 413', 'PUT long  -> 200 stored',
                                 "GET /notes -> 200 ['hello', 'long']",
                                 'instance-b took over the janitor and removed 2 notes'],
    'leader_worker.py': ['worker-0 leads', 'worker-1 took over after worker-0 died',
                         '15 jobs done by workers 0, 1, 2'],
}


def test_every_example_is_checked():
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob('*.py')
             if p.name != 'user.py' and 'def main' in p.read_text()}
    assert found == set(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_example_runs(name, etcd):
    path = EXAMPLES / name
    env = dict(os.environ, ETCD_URL=etcd.url)
    for _ in range(2):      # twice: examples must be rerunnable against the same etcd
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120,
                              cwd=path.parent, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        for text in EXPECTED[name]:
            assert text in done.stdout, (text, done.stdout)
