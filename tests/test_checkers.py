"""The history checkers judged themselves: every anomaly they claim to find is planted in a small
hand-built history and must be flagged; clean histories - concurrent, with failed and unknown
operations resolved either way - must pass. A checker that cannot fail proves nothing.

Pure: no etcd. A fake clock makes real-time order exact."""

import random
import time

import pytest

from txaioetcd.testing import History
from txaioetcd.testing.checkers import (check_bank, check_list_append, check_lock, check_register,
                                        check_watch)
from txaioetcd.testing.checkers._realtime import realtime_edges


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.fixture
def history():
    return History(clock=Clock())


def txn(history, process, micro, result=None, outcome='ok'):
    """One list-append transaction, invoked and completed at once (serial in real time)."""
    op = history.invoke(process, 'txn', micro)
    return _complete(history, op, outcome, result)


def _complete(history, op, outcome, result=None, revision=None):
    if outcome == 'ok':
        history.ok(op, result, revision)
    elif outcome == 'fail':
        history.fail(op, 'refused')
    else:
        history.unknown(op, 'answer lost')
    return op


def kinds(report):
    return report.kinds()


# -- list-append: clean

def test_list_append_empty_and_serial_histories_pass(history):
    assert check_list_append(history).valid
    txn(history, 0, [('append', 'x', 1)], [('append', 'x', 1)])
    txn(history, 1, [('r', 'x', None), ('append', 'x', 2)], [('r', 'x', [1]), ('append', 'x', 2)])
    txn(history, 0, [('append', 'y', 3), ('r', 'y', None)], [('append', 'y', 3), ('r', 'y', [3])])
    txn(history, 2, [('append', 'x', 4)], outcome='fail')
    txn(history, 1, [('r', 'x', None), ('r', 'y', None)], [('r', 'x', [1, 2]), ('r', 'y', [3])])
    report = check_list_append(history)
    assert report.valid, report
    assert report.counts['failed'] == 1


def test_list_append_unknown_resolved_both_ways_passes(history):
    seen = txn(history, 0, [('append', 'x', 1)], outcome='unknown')
    lost = txn(history, 1, [('append', 'x', 2)], outcome='unknown')
    txn(history, 2, [('r', 'x', None)], [('r', 'x', [1])])
    report = check_list_append(history)
    assert report.valid, report
    assert report.counts['unknown_committed'] == 1
    assert seen.unknown and lost.unknown


def test_concurrent_transactions_in_either_order_pass(history):
    # Two overlapping transactions: no real-time order between them, either serial order is fine.
    a = history.invoke(0, 'txn', [('append', 'x', 1)])
    b = history.invoke(1, 'txn', [('r', 'x', None), ('append', 'x', 2)])
    history.ok(b, [('r', 'x', []), ('append', 'x', 2)])
    history.ok(a, [('append', 'x', 1)])
    txn(history, 2, [('r', 'x', None)], [('r', 'x', [2, 1])])
    assert check_list_append(history).valid


# -- list-append: planted anomalies

def test_lost_update_is_a_cycle(history):
    # Both read x=[] and both append: whichever came second should have seen the first.
    a = history.invoke(0, 'txn', [('r', 'x', None), ('append', 'x', 1)])
    b = history.invoke(1, 'txn', [('r', 'x', None), ('append', 'x', 2)])
    history.ok(a, [('r', 'x', []), ('append', 'x', 1)])
    history.ok(b, [('r', 'x', []), ('append', 'x', 2)])
    txn(history, 2, [('r', 'x', None)], [('r', 'x', [1, 2])])
    report = check_list_append(history)
    assert 'G-single' in kinds(report), report
    assert "'x'" in str(report) or 'x' in report.anomalies[0].message


def test_write_skew_is_g2(history):
    # T1 reads y=[] and appends x; T2 reads x=[] and appends y: two rw edges.
    a = history.invoke(0, 'txn', [('r', 'y', None), ('append', 'x', 1)])
    b = history.invoke(1, 'txn', [('r', 'x', None), ('append', 'y', 2)])
    history.ok(a, [('r', 'y', []), ('append', 'x', 1)])
    history.ok(b, [('r', 'x', []), ('append', 'y', 2)])
    txn(history, 2, [('r', 'x', None), ('r', 'y', None)], [('r', 'x', [1]), ('r', 'y', [2])])
    assert 'G2' in kinds(check_list_append(history))


def test_write_cycle_is_g0(history):
    a = history.invoke(0, 'txn', [('append', 'x', 1), ('append', 'y', 1)])
    b = history.invoke(1, 'txn', [('append', 'x', 2), ('append', 'y', 2)])
    history.ok(a, [('append', 'x', 1), ('append', 'y', 1)])
    history.ok(b, [('append', 'x', 2), ('append', 'y', 2)])
    # x says a before b; y says b before a.
    txn(history, 2, [('r', 'x', None), ('r', 'y', None)], [('r', 'x', [1, 2]), ('r', 'y', [2, 1])])
    report = check_list_append(history)
    assert 'G0' in kinds(report), report


def test_circular_information_flow_is_g1c(history):
    # a reads b's y and b reads a's x: ww/wr only.
    a = history.invoke(0, 'txn', [('append', 'x', 1), ('r', 'y', None)])
    b = history.invoke(1, 'txn', [('append', 'y', 2), ('r', 'x', None)])
    history.ok(a, [('append', 'x', 1), ('r', 'y', [2])])
    history.ok(b, [('append', 'y', 2), ('r', 'x', [1])])
    assert 'G1c' in kinds(check_list_append(history))


def test_stale_read_is_a_realtime_cycle(history):
    txn(history, 0, [('append', 'x', 1)], [('append', 'x', 1)])
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [])])       # began after the append ended
    report = check_list_append(history)
    assert kinds(report) & {'G-single-realtime', 'lost-write'}, report
    assert 'G-single-realtime' in kinds(report)


def test_aborted_read_is_g1a(history):
    txn(history, 0, [('append', 'x', 1)], outcome='fail')
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [1])])
    report = check_list_append(history)
    assert 'G1a' in kinds(report)
    assert 'failed' in report.anomalies[0].message


def test_intermediate_read_is_g1b(history):
    a = history.invoke(0, 'txn', [('append', 'x', 1), ('append', 'x', 2)])
    b = history.invoke(1, 'txn', [('r', 'x', None)])
    history.ok(b, [('r', 'x', [1])])
    history.ok(a, [('append', 'x', 1), ('append', 'x', 2)])
    assert 'G1b' in kinds(check_list_append(history))


def test_intermediate_read_behind_own_appends_is_g1b(history):
    # The reader appended first: its list ends on its own element; the part others wrote ends on 1.
    a = history.invoke(0, 'txn', [('append', 'x', 1), ('append', 'x', 2)])
    b = history.invoke(1, 'txn', [('append', 'x', 5), ('r', 'x', None)])
    history.ok(b, [('append', 'x', 5), ('r', 'x', [1, 5])])
    history.ok(a, [('append', 'x', 1), ('append', 'x', 2)])
    report = check_list_append(history)
    g1b = [anomaly for anomaly in report.anomalies if anomaly.kind == 'G1b']
    assert g1b and g1b[0].ops == (b.index, a.index) and 'ends on 1' in g1b[0].message, report


def test_garbage_duplicate_incompatible_and_internal(history):
    txn(history, 0, [('append', 'x', 1)], [('append', 'x', 1)])
    txn(history, 0, [('append', 'x', 2)], [('append', 'x', 2)])
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [1, 2, 99])])
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [1, 1])])
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [2, 1])])
    txn(history, 2, [('append', 'y', 5), ('r', 'y', None)], [('append', 'y', 5), ('r', 'y', [])])
    found = kinds(check_list_append(history))
    assert {'garbage-read', 'duplicate', 'incompatible-order', 'internal'} <= found, found


def test_lost_write(history):
    txn(history, 0, [('append', 'x', 1)], [('append', 'x', 1)])
    txn(history, 0, [('append', 'x', 2)], [('append', 'x', 2)])
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [2])])     # 1 vanished
    found = kinds(check_list_append(history))
    assert 'lost-write' in found or 'incompatible-order' in found
    assert 'lost-write' in found, found


def test_unknown_half_visible_is_a_lost_write(history):
    # An unknown txn appended to x and y; x shows it, a later read of y does not: not atomic.
    txn(history, 0, [('append', 'x', 1), ('append', 'y', 1)], outcome='unknown')
    txn(history, 1, [('r', 'x', None)], [('r', 'x', [1])])
    txn(history, 1, [('r', 'y', None)], [('r', 'y', [])])
    assert 'lost-write' in kinds(check_list_append(history))


def test_realtime_edges_are_reduced():
    h = History(clock=Clock())
    ops = [h.invoke(0, 'txn', []) for _ in range(1)]
    h.ok(ops[0])
    b = h.invoke(1, 'txn', [])
    h.ok(b)
    c = h.invoke(2, 'txn', [])
    h.ok(c)
    assert sorted(realtime_edges(h)) == [(0, 1), (1, 2)]      # 0 -> 2 is implied


def test_large_clean_history_is_checked_fast():
    """A serializable simulation: 4 workers, overlapping in time, each transaction applied atomically
    at one instant inside its interval; some fail (not applied) or end unknown (applied or not)."""
    rng = random.Random(5)
    clock = [0.0]
    h = History(clock=lambda: clock[0])
    state = {f'k{i}': [] for i in range(8)}
    active = list(state)
    running, next_element = [], 0
    for _ in range(60000):
        clock[0] += 1.0
        if len(running) < 4:
            micro = []
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(len(active))
                key = active[position]
                if rng.random() < 0.5:
                    micro.append(('r', key, None))
                else:
                    next_element += 1
                    micro.append(('append', key, next_element))
                    if next_element % 40 == 0:            # keys retire, as in the workload
                        active[position] = f'k{len(state)}'
                        state[active[position]] = []
            running.append(h.invoke(len(running), 'txn', micro))
            continue
        op = running.pop(rng.randrange(len(running)))
        outcome = rng.choices(['ok', 'fail', 'unknown'], [0.9, 0.05, 0.05])[0]
        applied = outcome == 'ok' or (outcome == 'unknown' and rng.random() < 0.5)
        result = []
        if applied:
            for f, key, element in op.value:
                if f == 'r':
                    result.append(('r', key, list(state[key])))
                else:
                    state[key].append(element)
                    result.append(('append', key, element))
        _complete(h, op, outcome, result if outcome == 'ok' else None)
    started = time.perf_counter()
    report = check_list_append(h)
    took = time.perf_counter() - started
    assert report.valid, report
    assert report.counts['txns'] > 29000
    assert took < 20, f'{took:.1f} s for {len(h)} operations'


def test_a_stale_read_after_a_long_chain_is_found_fast(history):
    """A stale read puts every transaction that ran in between into one component (real-time edges
    chain them): the cycle search must stay linear in it, not start over from each of its nodes
    (which took ~30 s here)."""
    txn(history, 0, [('append', 'x', 0), ('append', 'k0', 0)], [('append', 'x', 0), ('append', 'k0', 0)])
    for i in range(1, 5000):             # each reads what the one before appended: 5,000 wr edges
        txn(history, i % 3, [('r', f'k{i - 1}', None), ('append', f'k{i}', i)],
            [('r', f'k{i - 1}', [i - 1]), ('append', f'k{i}', i)])
    txn(history, 3, [('r', 'x', None)], [('r', 'x', [])])
    started = time.perf_counter()
    report = check_list_append(history)
    took = time.perf_counter() - started
    assert kinds(report) == {'G-single-realtime', 'lost-write'}, report
    assert report.counts['cycles'] == 1
    (cycle,) = [a for a in report.anomalies if a.kind == 'G-single-realtime']
    assert 5000 in cycle.ops and 0 in cycle.ops
    assert '-rw(x)->' in cycle.message and 'more ...' in cycle.message and len(cycle.message) < 400
    assert took < 5, f'{took:.1f} s'


# -- register

def reg(history, process, f, value, result=None, revision=None, outcome='ok'):
    op = history.invoke(process, f, value)
    return _complete(history, op, outcome, result, revision)


def test_register_clean(history):
    reg(history, 0, 'read', ('r', None), (None, 0))
    reg(history, 0, 'write', ('r', 1), revision=5)
    reg(history, 1, 'read', ('r', None), (1, 5))
    reg(history, 1, 'cas', ('r', 1, 2), revision=7)
    reg(history, 2, 'cas', ('r', 1, 3), outcome='fail')
    reg(history, 2, 'write', ('r', 4), outcome='unknown')
    reg(history, 0, 'read', ('r', None), (4, 9))                 # the unknown write applied
    report = check_register(history)
    assert report.valid, report
    assert report.counts['unknown_resolved_applied'] == 1


def test_register_concurrent_read_may_see_old_or_new(history):
    reg(history, 0, 'write', ('r', 1), revision=5)
    w = history.invoke(0, 'write', ('r', 2))
    read = history.invoke(1, 'read', ('r', None))
    history.ok(read, (1, 5))
    history.ok(w, None, 6)
    assert check_register(history).valid


@pytest.mark.parametrize('plant, kind', [
    ('stale', 'stale-read'), ('garbage', 'garbage-read'), ('wrong', 'wrong-value'), ('future', 'future-read'),
    ('order', 'revision-order'), ('same', 'duplicate-revision'), ('cas', 'cas-precondition'),
    ('aborted', 'aborted-read')])
def test_register_planted(history, plant, kind):
    reg(history, 0, 'write', ('r', 1), revision=5)
    if plant == 'stale':
        reg(history, 0, 'write', ('r', 2), revision=6)
        reg(history, 1, 'read', ('r', None), (1, 5))
    elif plant == 'garbage':
        reg(history, 1, 'read', ('r', None), (77, 8))
    elif plant == 'wrong':
        reg(history, 1, 'read', ('r', None), (2, 5))
        reg(history, 0, 'write', ('r', 2), revision=6)
    elif plant == 'future':
        read = history.invoke(1, 'read', ('r', None))
        history.ok(read, (3, 9))
        reg(history, 0, 'write', ('r', 3), outcome='unknown')
    elif plant == 'order':
        reg(history, 0, 'write', ('r', 2), revision=4)
    elif plant == 'same':
        w = history.invoke(1, 'write', ('r', 2))
        history.ok(w, None, 5)
    elif plant == 'cas':
        reg(history, 0, 'cas', ('r', 9, 2), revision=6)
    elif plant == 'aborted':
        reg(history, 0, 'write', ('r', 2), outcome='fail')
        reg(history, 1, 'read', ('r', None), (2, 6))
    report = check_register(history)
    assert kind in kinds(report), report
    assert "'r'" in report.anomalies[0].message



def test_register_revision_order_spans_keys(history):
    # etcd has one revision counter: a put that ended before another began has the lower revision,
    # whichever keys they wrote.
    reg(history, 0, 'write', ('a', 1), revision=8)
    reg(history, 1, 'write', ('b', 1), revision=7)
    report = check_register(history)
    assert kinds(report) == {'revision-order'}, report
    assert report.anomalies[0].ops == (0, 1) and "'a'" in report.anomalies[0].message
    reg(history, 2, 'write', ('c', 1), revision=7)
    assert 'duplicate-revision' in kinds(check_register(history))


def test_register_unknown_write_read_at_two_revisions(history):
    reg(history, 0, 'write', ('r', 1), outcome='unknown')
    reg(history, 1, 'read', ('r', None), (1, 5))
    reg(history, 1, 'read', ('r', None), (1, 6))
    report = check_register(history)
    assert kinds(report) == {'wrong-value'}, report
    assert 'revision 5' in report.anomalies[0].message and report.counts['unknown_resolved_applied'] == 1


# -- bank

INITIAL = {'a': 10, 'b': 10}


def bank_read(history, balances, transfers, process=9):
    return reg(history, process, 'read', None, {'balances': balances, 'transfers': transfers})


def test_bank_clean(history):
    reg(history, 0, 'transfer', (1, 'a', 'b', 3))
    reg(history, 1, 'transfer', (2, 'b', 'a', 1), outcome='fail')
    reg(history, 1, 'transfer', (3, 'b', 'a', 2), outcome='unknown')
    reg(history, 1, 'transfer', (4, 'b', 'a', 5), outcome='unknown')
    bank_read(history, {'a': 9, 'b': 11}, [1, 3])
    report = check_bank(history, INITIAL)
    assert report.valid, report
    assert (report.counts['unknown_applied'], report.counts['unknown_not_applied']) == (1, 1)


@pytest.mark.parametrize('plant, kind', [
    ('total', 'wrong-total'), ('negative', 'negative-balance'), ('twice', 'balances-mismatch'),
    ('aborted', 'aborted-transfer-applied'), ('lost', 'lost-transfer'), ('unknown-id', 'unknown-id'),
    ('unlogged', 'transfer-unlogged')])
def test_bank_planted(history, plant, kind):
    reg(history, 0, 'transfer', (1, 'a', 'b', 3))
    if plant == 'total':
        bank_read(history, {'a': 7, 'b': 14}, [1])
    elif plant == 'negative':
        reg(history, 0, 'transfer', (2, 'a', 'b', 12))
        bank_read(history, {'a': -5, 'b': 25}, [1, 2])
    elif plant == 'twice':
        bank_read(history, {'a': 4, 'b': 16}, [1])           # applied twice, logged once
    elif plant == 'aborted':
        reg(history, 0, 'transfer', (2, 'b', 'a', 1), outcome='fail')
        bank_read(history, {'a': 8, 'b': 12}, [1, 2])
    elif plant == 'lost':
        bank_read(history, {'a': 10, 'b': 10}, [])
    elif plant == 'unknown-id':
        bank_read(history, {'a': 7, 'b': 13}, [1, 42])
    elif plant == 'unlogged':
        bank_read(history, {'a': 7, 'b': 13}, [1])
        reg(history, 0, 'transfer', (2, 'b', 'a', 3), outcome='unknown')
        bank_read(history, {'a': 10, 'b': 10}, [2])          # 1 gone again, although balances add up
    report = check_bank(history, INITIAL)
    assert kind in kinds(report), report


# -- watch

TRUTH = [(5, 'PUT', b'k1', b'1'), (6, 'PUT', b'k2', b'2'), (7, 'PUT', b'k1', b'3'), (8, 'DELETE', b'k2', b'')]


def watch_history(history, events, start=5, error=None):
    reg(history, 0, 'put', (b'k1', b'1'), revision=5)
    reg(history, 0, 'put', (b'k2', b'2'), revision=6)
    reg(history, 1, 'put', (b'k1', b'3'), outcome='unknown')
    return reg(history, 7, 'watch', {'start_revision': start}, {'events': events, 'error': error})


def test_watch_clean(history):
    watch_history(history, list(TRUTH))
    watch_history(history, TRUTH[1:3], start=6)                     # stopped early: no gap after it
    watch_history(history, TRUTH[:2], error='Compacted: revision 7 compacted')
    report = check_watch(history, TRUTH)
    assert report.valid, report
    assert report.counts['watchers_ended_by_error'] == {'Compacted': 1}
    assert (report.counts['unknown_puts'], report.counts['unknown_puts_applied']) == (3, 3)


def test_watch_keys_of_mixed_types_in_one_revision(history):
    # One txn's events share a revision; their keys are never compared with each other.
    truth = [(5, 'PUT', 'a', b'1'), (5, 'PUT', b'b', b'2'), (6, 'PUT', 'a', b'3')]
    reg(history, 7, 'watch', {'start_revision': 5}, {'events': truth[::2], 'error': None})
    report = check_watch(history, truth)
    assert kinds(report) == {'gap'} and "(b'b')" in report.anomalies[0].message, report


@pytest.mark.parametrize('events, kind', [
    ([TRUTH[0], TRUTH[2], TRUTH[3]], 'gap'),
    ([TRUTH[0], TRUTH[1], TRUTH[1], TRUTH[2]], 'duplicate'),
    ([TRUTH[1], TRUTH[0], TRUTH[2]], 'reorder'),
    ([TRUTH[0], (6, 'PUT', b'k3', b'x')], 'phantom'),
    ([TRUTH[0], (6, 'PUT', b'k2', b'other')], 'wrong-event'),
])
def test_watch_planted(history, events, kind):
    watch_history(history, events)
    report = check_watch(history, TRUTH)
    assert kind in kinds(report), report


def test_watch_that_never_caught_up_is_flagged(history):
    watch_history(history, TRUTH[:2], error='Stalled: did not reach the sentinel within 30 s')
    assert 'stalled-watcher' in kinds(check_watch(history, TRUTH))


def test_watch_acknowledged_put_missing_from_etcd(history):
    watch_history(history, list(TRUTH))
    reg(history, 2, 'put', (b'k9', b'9'), revision=9)
    assert 'lost-write' in kinds(check_watch(history, TRUTH))


# -- lock

def test_lock_tenures_and_writes(history):
    keys = {b'l/a': (10, 20), b'l/b': (12, 30), b'l/c': (31, None)}
    a = reg(history, 0, 'hold', {'holder': 0}, {'key': b'l/a', 'created': 10})
    reg(history, 0, 'write', {'hold': a.index, 'fenced': True, 'data': 1}, revision=15)
    b = reg(history, 1, 'hold', {'holder': 1}, {'key': b'l/b', 'created': 12})
    reg(history, 1, 'write', {'hold': b.index, 'fenced': True, 'data': 2}, revision=25)
    reg(history, 1, 'write', {'hold': b.index, 'fenced': True, 'data': 3}, outcome='fail')
    c = reg(history, 2, 'hold', {'holder': 2}, {'key': b'l/c', 'created': 31})
    reg(history, 2, 'write', {'hold': c.index, 'fenced': False, 'data': 4}, revision=40)
    report = check_lock(history, keys)
    assert report.valid, report
    assert report.counts['fenced_fail'] == 1


@pytest.mark.parametrize('fenced', [True, False])
def test_lock_write_in_the_next_tenure(history, fenced):
    # b queued at 12 but held only from 20 (a's deletion): a write under a at 22 is in b's tenure,
    # and so is a write under b at 15 - before b held the lock.
    keys = {b'l/a': (10, 20), b'l/b': (12, 30)}
    a = reg(history, 0, 'hold', {'holder': 0}, {'key': b'l/a', 'created': 10})
    b = reg(history, 1, 'hold', {'holder': 1}, {'key': b'l/b', 'created': 12})
    reg(history, 0, 'write', {'hold': a.index, 'fenced': fenced, 'data': 1}, revision=22)
    reg(history, 1, 'write', {'hold': b.index, 'fenced': fenced, 'data': 2}, revision=15)
    report = check_lock(history, keys)
    kind = 'fenced-write-outside-lock' if fenced else 'unfenced-write-outside-lock'
    assert kinds(report) == {kind}, report
    assert report.counts['anomalies'][kind] == 2


def test_lock_hold_that_never_held(history):
    keys = {b'l/a': (10, None), b'l/b': (12, 14)}                   # b deleted while a still held
    reg(history, 0, 'hold', {'holder': 0}, {'key': b'l/a', 'created': 10})
    reg(history, 1, 'hold', {'holder': 1}, {'key': b'l/b', 'created': 12})
    assert 'hold-without-tenure' in kinds(check_lock(history, keys))
