"""The Maintenance and Cluster services: status, alarms, defragmentation, hashes, member list.

Status, defragment and the hashes concern the member the client is talking to at that moment
(``client.endpoint``); alarms and the member list are cluster-wide.
"""

from __future__ import annotations


from . import rpc
from ._defer import Deferred
from .results import Alarm

__all__ = ('Maintenance',)

_ALARMS = ('NOSPACE', 'CORRUPT')


class Maintenance:
    """Maintenance and Cluster calls of the Client (mixed into it; needs ``_call``)."""

    def status(self, *, timeout: float | None = None) -> Deferred:
        """The answering member's status → ``Status`` (version, revision, leader, db size ...)."""
        return self._call(rpc.MaintenanceStatus(), timeout)

    def members(self, *, timeout: float | None = None) -> Deferred:
        """The cluster's members → list of ``Member``."""
        return self._call(rpc.MemberList(), timeout)

    def alarms(self, *, timeout: float | None = None) -> Deferred:
        """Active alarms on any member → list of ``Alarm`` (empty when all is well)."""
        return self._call(rpc.AlarmList(), timeout)

    def disarm(self, alarm: Alarm, *, timeout: float | None = None) -> Deferred:
        """Clear one alarm (as listed by ``alarms()``) → list of the ``Alarm`` values cleared."""
        if not isinstance(alarm, Alarm) or alarm.alarm not in _ALARMS:
            raise TypeError(f'disarm takes an Alarm from alarms(), not {alarm!r}')
        return self._call(rpc.AlarmDisarm(alarm.member_id, alarm.alarm), timeout)

    def defragment(self, *, timeout: float | None = 60.0) -> Deferred:
        """Defragment the answering member's backend (it blocks that member meanwhile) → None."""
        return self._call(rpc.Defragment(), timeout).addCallback(lambda _: None)

    def hash(self, *, timeout: float | None = None) -> Deferred:
        """Hash of the answering member's whole backend → ``Hash``."""
        return self._call(rpc.MaintenanceHash(), timeout)

    def hash_kv(self, revision: int = 0, *, timeout: float | None = None) -> Deferred:
        """Hash of the MVCC key space up to ``revision`` (0: the newest) → ``KVHash`` (hash,
        compact_revision, header).

        etcd's JSON gateway (3.3 - 3.6) routes HashKV to the same path as Hash, so through the
        gateway transport this fails with ``Unsupported``; the gRPC transport carries it.
        """
        return self._call(rpc.MaintenanceHashKV(revision), timeout)
