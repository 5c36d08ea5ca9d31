"""The Lease service: grant, keep alive, revoke, inspect.

``await client.lease(ttl)`` grants a lease and keeps it alive in the background - a keepalive about
every third of its TTL, retried (on any endpoint) when one fails - until ``revoke()``. If keepalives
cannot get through for longer than the TTL, or etcd says the lease is gone, the lease counts as lost:
``lease.expired`` fires with the reason and ``on_expired`` callbacks run.
"""

from __future__ import annotations

from twisted.logger import Logger

from ._defer import Deferred, Scoped, succeed
from .retry import KEEPALIVE_RETRY
from .errors import ClientClosed, LeaseLost, NotFound
from .results import Header
from .rpc import LeaseGrant, LeaseKeepAlive, LeaseLeases, LeaseRevoke, LeaseTimeToLive

__all__ = ('Lease', 'LeaseService', 'LeaseLost')

_log = Logger()


class Lease:
    """A granted lease. Pass it (or ``lease.lease_id``) as ``lease=`` to ``set``; keys attached to it
    vanish when it expires or is revoked. ``async with client.lease(ttl) as lease:`` (or ``async with``
    a Lease you hold) revokes it on exit."""

    def __init__(self, client, lease_id: int, ttl: int, header: Header, keepalive: bool):
        self._client = client
        self._reactor = client.reactor
        self.lease_id = lease_id
        self.ttl = ttl
        self.header = header
        self.expired = Deferred()          # fires with a LeaseLost when the lease is lost
        self.state = 'alive'               # alive | revoked | expired
        self.keepalives = 0
        self._callbacks = []
        self._timer = None
        self._last_ok = self._reactor.seconds()     # the reactor's clock, like every timer here
        self._failures = 0
        if keepalive:
            self._schedule(self._interval())

    def __repr__(self):
        return f'<Lease {self.lease_id:x} ttl={self.ttl} {self.state}>'

    def __aenter__(self) -> Deferred:
        return succeed(self)

    def __aexit__(self, *exc_info) -> Deferred:
        if self.state == 'alive':
            return self.revoke().addCallback(lambda _: False)
        return succeed(False)

    def on_expired(self, callback) -> None:
        """Call ``callback(lease, reason)`` if the lease is lost while kept alive."""
        self._callbacks.append(callback)

    # -- keepalive

    def _interval(self) -> float:
        return max(0.2, self.ttl / 3.0)

    def _schedule(self, delay: float) -> None:
        self._timer = self._reactor.callLater(delay, self._keepalive)

    def _keepalive(self) -> None:
        self._timer = None
        if self.state != 'alive':
            return
        d = self.refresh(timeout=max(0.5, min(self._client.timeout, self.ttl / 3.0)))
        d.addCallbacks(self._kept, self._keepalive_failed)

    def _kept(self, ttl: int) -> None:
        if self.state != 'alive':
            return
        self._failures = 0
        self.keepalives += 1
        self._schedule(self._interval())

    def _keepalive_failed(self, failure) -> None:
        if self.state != 'alive':
            return
        error = failure.value
        if isinstance(error, LeaseLost):
            self._lost(error)
            return
        if isinstance(error, ClientClosed):
            self._stop()
            return
        silent = self._reactor.seconds() - self._last_ok
        if silent > self.ttl:
            self._lost(LeaseLost(f'no keepalive got through for {silent:.1f} s, longer than the TTL of '
                                 f'{self.ttl} s ({error}); the lease has expired', self._describe()))
            return
        self._failures += 1
        _log.info('keepalive of lease {lease_id:x} failed ({error}); retrying', lease_id=self.lease_id,
                  error=error)
        self._schedule(min(self._interval(), KEEPALIVE_RETRY.pause(self._failures)))

    def _lost(self, reason: LeaseLost) -> None:
        self.state = 'expired'
        self._stop()
        for callback in self._callbacks:
            try:
                callback(self, reason)
            except Exception:
                _log.failure('on_expired callback of lease {lease_id:x} raised', lease_id=self.lease_id)
        self.expired.callback(reason)

    def _stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _describe(self) -> str:
        return f'lease {self.lease_id:x}'

    # -- calls

    def refresh(self, *, timeout: float | None = None) -> Deferred:
        """Send one keepalive now → the TTL etcd granted. Fails with LeaseLost if the lease is gone."""
        d = self._client._call(LeaseKeepAlive(self.lease_id), timeout)

        def answered(kept):
            if kept.ttl <= 0:
                raise LeaseLost('etcd says the lease does not exist any more (expired or revoked)',
                                f'keepalive of {self._describe()}')
            self._last_ok = self._reactor.seconds()
            return kept.ttl
        return d.addCallback(answered)

    def revoke(self, *, timeout: float | None = None) -> Deferred:
        """Revoke the lease (its keys are deleted) and stop keeping it alive → the response header."""
        self._stop()
        if self.state == 'alive':
            self.state = 'revoked'

        def gone(failure):
            failure.trap(NotFound)      # already expired: what revoke wanted
            return None
        return self._client._call(LeaseRevoke(self.lease_id), timeout).addErrback(gone)

    def remaining(self, *, timeout: float | None = None) -> Deferred:
        """Seconds the lease has left (-1: it does not exist any more)."""
        d = self._client._call(LeaseTimeToLive(self.lease_id), timeout)
        return d.addCallback(lambda info: info.ttl)

    def keys(self, *, timeout: float | None = None) -> Deferred:
        """The keys attached to the lease → list of bytes."""
        d = self._client._call(LeaseTimeToLive(self.lease_id, keys=True), timeout)
        return d.addCallback(lambda info: list(info.keys))


class LeaseService:
    """Lease calls of the Client (mixed into it)."""

    def lease(self, ttl: int, *, lease_id: int = 0, keepalive: bool = True,
              timeout: float | None = None) -> Scoped:
        """Grant a lease of ``ttl`` seconds → ``Lease``; kept alive in the background unless
        ``keepalive=False``. ``lease_id`` asks for a specific id (0: etcd chooses).

        ``lease = await client.lease(10)``, or ``async with client.lease(10) as lease:``, which
        revokes it when the block ends."""
        if type(ttl) is not int or ttl < 1:
            raise ValueError(f'lease ttl must be a whole number of seconds >= 1, not {ttl!r}')
        d = self._call(LeaseGrant(ttl, lease_id), timeout)
        d.addCallback(lambda granted: Lease(self, granted.lease_id, granted.ttl, granted.header, keepalive))
        return Scoped(d)

    def leases(self, *, timeout: float | None = None) -> Deferred:
        """Ids of every lease etcd holds → list of int."""
        return self._call(LeaseLeases(), timeout)
