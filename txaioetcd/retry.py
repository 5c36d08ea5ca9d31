"""One retry policy and one deadline, shared by everything that waits and tries again.

``Backoff`` says how long to pause before attempt number ``n`` (growing, capped, jittered so that many
clients do not retry in step). The named policies below are the only ones in the package: reconnecting
a watch or a mirror, a read waiting out an election, a lease keepalive retried, a transaction run
again after a conflict, a client waiting to be connected.

``Deadline`` is one point in time on the reactor's clock that a composite call (``Lock.acquire``,
``Database.run``, a mirror's start) passes down to every request it makes, like Go's context: each
request gets what is left, never more.
"""

from __future__ import annotations

import random

__all__ = ('Backoff', 'Deadline', 'RECONNECT', 'READ_RETRY', 'KEEPALIVE_RETRY', 'CONNECT_RETRY')


class Backoff:
    """Pause before attempt ``n`` (0 for the first retry): ``first * factor**n``, at most ``most``,
    times a random factor in ``[jitter, 1]`` (``jitter=1``: no jitter; ``jitter=0``: "full jitter")."""

    __slots__ = ('first', 'most', 'factor', 'jitter')

    def __init__(self, first: float, most: float, *, factor: float = 2.0, jitter: float = 0.5):
        if not (0 < first <= most and factor >= 1 and 0 <= jitter <= 1):
            raise ValueError(f'Backoff needs 0 < first <= most, factor >= 1, 0 <= jitter <= 1; got '
                             f'first={first!r}, most={most!r}, factor={factor!r}, jitter={jitter!r}')
        self.first = first
        self.most = most
        self.factor = factor
        self.jitter = jitter

    def pause(self, attempt: int) -> float:
        # The exponent is capped before it is used: a long outage must not overflow a float.
        limit = min(self.most, self.first * self.factor ** min(attempt, 64))
        return limit if self.jitter == 1 else random.uniform(self.jitter * limit, limit)

    def __repr__(self):
        return f'Backoff({self.first}, {self.most}, factor={self.factor}, jitter={self.jitter})'


RECONNECT = Backoff(0.025, 2.0)          # a broken watch or mirror stream, opened again
READ_RETRY = Backoff(0.025, 1.0)         # a read (or a lazy client's request) waiting for an endpoint
KEEPALIVE_RETRY = Backoff(0.1, 10.0, jitter=1.0)   # capped further by the lease's own interval
CONNECT_RETRY = Backoff(0.05, 1.0, jitter=1.0)     # wait_until_connected asking again


class Deadline:
    """A point in time on ``reactor``'s clock, ``seconds`` from now (None: no deadline)."""

    __slots__ = ('_reactor', 'at', 'seconds')

    def __init__(self, reactor, seconds: float | None):
        if seconds is not None and not seconds >= 0:
            raise ValueError(f'a timeout is None or seconds >= 0, not {seconds!r}')
        self._reactor = reactor
        self.seconds = seconds
        self.at = None if seconds is None else reactor.seconds() + seconds

    def remaining(self) -> float | None:
        """Seconds left (0 when passed), or None without a deadline."""
        if self.at is None:
            return None
        return max(0.0, self.at - self._reactor.seconds())

    def bound(self, timeout: float | None) -> float | None:
        """``timeout`` (None: the client's default), cut to what is left of the deadline."""
        left = self.remaining()
        if left is None:
            return timeout
        return left if timeout is None else min(timeout, left)

    @property
    def expired(self) -> bool:
        return self.at is not None and self._reactor.seconds() >= self.at

    def __repr__(self):
        return f'<Deadline {self.seconds} s, {self.remaining()} s left>'
