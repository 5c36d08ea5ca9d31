"""The fault harness end to end: every workload against a real 3-member cluster whose peer links run
through the harness's proxies, while the nemesis partitions, isolates the leader, pauses (SIGSTOP),
kills and restarts members, delays and drops peer connections - and the checkers find nothing wrong
with the library's histories. Fencing is shown to matter: the same lock workload without the fence
breaks mutual exclusion.

The budget per workload is short (``TXAIOETCD_FAULTS_SECONDS``, default 15 s); the seeds are fixed so a
failure can be replayed (``TXAIOETCD_FAULTS_SEED`` overrides them). benchmarks/faults_run.py runs longer.
"""

import os

import pytest
import pytest_twisted

from txaioetcd.testing import EtcdCluster
from txaioetcd.testing.workloads import run_workload

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

SECONDS = float(os.environ.get('TXAIOETCD_FAULTS_SECONDS', '15'))
SEEDS = {'list-append': 11, 'register': 12, 'bank': 13, 'watch': 14, 'lock': 15}


def _seed(workload):
    return int(os.environ.get('TXAIOETCD_FAULTS_SEED', SEEDS[workload]))


@pytest.fixture(scope='module')
def faulty_cluster():
    with EtcdCluster(size=3, proxied=True) as cluster:
        yield cluster


def _explain(result):
    lines = [result.summary(), str(result.report), 'faults: ' + '; '.join(
        f'{fault.kind} ({fault.detail}) {fault.end - fault.start if fault.end else 0:.1f} s'
        for fault in result.fault_log),
        f'replay with TXAIOETCD_FAULTS_SEED={result.seed}']
    return '\n'.join(lines)


async def _run_clean(reactor, cluster, workload, least_ok, **options):
    result = await run_workload(reactor, cluster, workload, seconds=SECONDS, seed=_seed(workload), **options)
    print(_explain(result))
    assert result.valid, _explain(result)
    assert result.history.counts()['ok'] >= least_ok, _explain(result)
    assert sum(result.faults.values()) >= 3, _explain(result)
    return result


@pytest_twisted.ensureDeferred
async def test_list_append_is_serializable_under_faults(reactor, faulty_cluster):
    await _run_clean(reactor, faulty_cluster, 'list-append', least_ok=30)


@pytest_twisted.ensureDeferred
async def test_registers_are_linearizable_under_faults(reactor, faulty_cluster):
    await _run_clean(reactor, faulty_cluster, 'register', least_ok=50)


@pytest_twisted.ensureDeferred
async def test_bank_keeps_its_total_under_faults(reactor, faulty_cluster):
    result = await _run_clean(reactor, faulty_cluster, 'bank', least_ok=30)
    assert any(op.f == 'read' and op.ok for op in result.history)


@pytest_twisted.ensureDeferred
async def test_watchers_see_every_write_once_under_faults(reactor, faulty_cluster):
    result = await _run_clean(reactor, faulty_cluster, 'watch', least_ok=50)
    assert result.report.counts['watchers'] == 3


@pytest_twisted.ensureDeferred
async def test_fenced_lock_writes_stay_inside_the_lock_under_pauses_and_faults(reactor, faulty_cluster):
    result = await _run_clean(reactor, faulty_cluster, 'lock', least_ok=10, fenced=True, stall_every=2)
    refused = [op for op in result.history if op.f == 'write' and op.failed]
    assert refused, 'no stall hit a critical section: the fence was never put to the test\n' + _explain(result)


@pytest_twisted.ensureDeferred
async def test_unfenced_lock_writes_break_mutual_exclusion_under_pauses(reactor, faulty_cluster):
    """What the fence prevents: stalled past its lease, a holder's plain write lands in the next
    holder's tenure. No member faults here, only the holders' own pauses, so it shows every time."""
    result = await run_workload(reactor, faulty_cluster, 'lock', seconds=min(SECONDS, 10), seed=_seed('lock'),
                                faults=(), fenced=False, stall_every=2)
    print(_explain(result))
    assert 'unfenced-write-outside-lock' in result.report.kinds(), _explain(result)
    assert 'hold-without-tenure' not in result.report.kinds(), _explain(result)
