"""Checkers of recorded histories (``txaioetcd.testing.history``), after Jepsen's Elle and Knossos:
each takes a History (and the ground truth it needs) and returns a ``Report`` of anomalies.

- ``check_list_append(history)``: serializability of list-append transactions (G0, G1a, G1b, G1c,
  G-single, G2, '-realtime' variants for strict serializability, lost writes, ...);
- ``check_register(history)``: linearizable registers, using etcd's revisions;
- ``check_bank(history, initial)``: totals, transfers not lost nor applied twice;
- ``check_watch(history, truth)``: watchers see exactly etcd's events, in order;
- ``check_lock(history, deletions)``: writes inside their holder's tenure.
"""

from ._bank import check_bank
from ._list_append import check_list_append
from ._lock import check_lock
from ._register import check_register
from ._report import Anomaly, Report
from ._watch import check_watch

__all__ = ('Anomaly', 'Report', 'check_list_append', 'check_register', 'check_bank', 'check_watch', 'check_lock')
