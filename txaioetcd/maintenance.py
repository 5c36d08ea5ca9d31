"""The Maintenance and Cluster services: status, alarms, defragmentation, hashes, member list.

Status, defragment and the hashes concern the member the client is talking to at that moment
(``client.endpoint``); alarms and the member list are cluster-wide.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from .results import Alarm, Hash, Header, Member, Status

__all__ = ('Maintenance',)

_ALARMS = ('NOSPACE', 'CORRUPT')


class Maintenance:
    """Maintenance and Cluster calls of the Client (mixed into it; needs ``_call``)."""

    def status(self, *, timeout: float | None = None) -> Deferred:
        """The answering member's status → ``Status`` (version, revision, leader, db size ...)."""
        d = self._call('maintenance/status', {}, 'status', True, timeout)
        d.addCallback(Status.parse)
        return d

    def members(self, *, timeout: float | None = None) -> Deferred:
        """The cluster's members → list of ``Member``."""
        d = self._call('cluster/member/list', {}, 'member list', True, timeout)
        d.addCallback(lambda response: [Member.parse(m) for m in response.get('members', ())])
        return d

    def alarms(self, *, timeout: float | None = None) -> Deferred:
        """Active alarms on any member → list of ``Alarm`` (empty when all is well)."""
        d = self._call('maintenance/alarm', {'action': 'GET'}, 'alarm list', True, timeout)
        d.addCallback(_parse_alarms)
        return d

    def disarm(self, alarm: Alarm, *, timeout: float | None = None) -> Deferred:
        """Clear one alarm (as listed by ``alarms()``) → list of the ``Alarm`` values cleared."""
        if not isinstance(alarm, Alarm) or alarm.alarm not in _ALARMS:
            raise TypeError(f'disarm takes an Alarm from alarms(), not {alarm!r}')
        request = {'action': 'DEACTIVATE', 'memberID': alarm.member_id, 'alarm': alarm.alarm}
        d = self._call('maintenance/alarm', request, f'disarm {alarm.alarm} on member {alarm.member_id:x}',
                       True, timeout)
        d.addCallback(_parse_alarms)
        return d

    def defragment(self, *, timeout: float | None = 60.0) -> Deferred:
        """Defragment the answering member's backend (it blocks that member meanwhile) → None."""
        d = self._call('maintenance/defragment', {}, 'defragment', True, timeout)
        d.addCallback(lambda response: None)
        return d

    def hash(self, *, timeout: float | None = None) -> Deferred:
        """Hash of the answering member's whole backend → ``Hash``."""
        d = self._call('maintenance/hash', {}, 'hash', True, timeout)
        d.addCallback(Hash.parse)
        return d

    def hash_kv(self, revision: int = 0, *, timeout: float | None = None) -> Deferred:
        """Hash of the MVCC key space up to ``revision`` → dict(hash, compact_revision, header).

        etcd's JSON gateway (3.3 - 3.6) routes HashKV to the same path as Hash, so through the
        gateway transport this fails with ``Unsupported``; a gRPC transport can carry it.
        """
        d = self._call('maintenance/hashkv', {'revision': revision}, f'hash_kv at revision {revision}',
                       True, timeout)
        d.addCallback(lambda r: {'header': Header.parse(r.get('header')), 'hash': int(r.get('hash', 0)),
                                 'compact_revision': int(r.get('compact_revision', 0))})
        return d


def _parse_alarms(response: dict) -> list:
    return [Alarm.parse(a) for a in response.get('alarms', ())]
