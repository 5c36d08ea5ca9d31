"""A client-side pause: the reactor runs nothing for a while, as in a long GC pause, a swapped-out
process or a laptop lid closed. Timers, keepalives and answers wait; etcd's clock does not."""

from __future__ import annotations

import time

__all__ = ('stall_reactor',)


def stall_reactor(seconds: float | None = None, *, until=None, timeout: float = 30.0,
                  poll: float = 0.05) -> float:
    """Block the calling thread - the reactor's, when called from reactor code - for ``seconds``, or
    until ``until()`` (a plain blocking function) returns true, at most ``timeout`` seconds → the
    seconds stalled. With ``until``, not true within ``timeout`` raises TimeoutError: a pause that
    waits for an event says so when the event never comes."""
    started = time.monotonic()
    if until is None:
        if seconds is None or seconds < 0:
            raise ValueError(f'give seconds >= 0 or until=, not seconds={seconds!r}')
        time.sleep(seconds)
        return time.monotonic() - started
    deadline = started + timeout
    while not until():
        if time.monotonic() >= deadline:
            raise TimeoutError(f'stall_reactor: the awaited condition did not hold within {timeout:g} s')
        time.sleep(poll)
    if seconds is not None:
        time.sleep(max(0.0, started + seconds - time.monotonic()))
    return time.monotonic() - started
