"""The test harness: real etcd servers on loopback for this project's tests and for yours.

``LocalEtcd`` (one member) and ``EtcdCluster`` (several, as one cluster) start a real etcd from the
binary ``find_etcd_binary()`` finds, on free loopback ports with a temporary data directory, and stop
it by its PID. They live in ``txaioetcd.embedded``; this module is the stable place to import them
from in tests (like ``kazoo.testing``). See docs/testing.md.
"""

from ..embedded import EtcdCluster, EtcdNotFound, EtcdStartError, LocalEtcd, etcd_version, find_etcd_binary
from ._stall import stall_reactor
from .history import History, Operation

__all__ = ['EtcdNotFound', 'EtcdStartError', 'find_etcd_binary', 'etcd_version', 'LocalEtcd', 'EtcdCluster',
           'stall_reactor', 'History', 'Operation']
