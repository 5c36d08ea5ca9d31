"""One asynchronous idiom: every public asynchronous method returns a Deferred.

A Deferred runs whether it is awaited or not, can be cancelled, is awaited from ``async def`` code run
with ``Deferred.fromCoroutine``/``ensureDeferred`` and yielded under ``inlineCallbacks``. Coroutines are
how this package writes its composite calls, never what it hands out:

- ``returns_deferred`` turns an ``async def`` method into one that returns a Deferred (a coroutine
  that nobody awaits would silently never run - an un-awaited ``lock.release()`` would keep the lock).
- ``Forwarding`` is a Deferred with the result of another one; cancelling it cancels the other and
  fires once that one has settled (so a cancelled lock attempt fires after it left nothing behind).
- ``Scoped`` is a Forwarding Deferred that is also an ``async with`` scope, for calls whose result is
  already "entered": ``async with client.lock(b'jobs'):`` waits for the lock and releases it on exit,
  ``async with client.lease(10) as lease:`` revokes it on exit.
"""

from __future__ import annotations

import functools

from twisted.internet.defer import Deferred

__all__ = ('returns_deferred', 'Forwarding', 'Scoped')


def returns_deferred(fn):
    """Decorate an ``async def`` function: calling it starts the coroutine and returns its Deferred."""
    @functools.wraps(fn)
    def run(*args, **kwargs) -> Deferred:
        return Deferred.fromCoroutine(fn(*args, **kwargs))
    return run


class Forwarding(Deferred):
    """A Deferred that fires with ``source``'s result. Cancelling it cancels ``source``, and it fires
    (with the CancelledError, or whatever ``source`` ends with) only once ``source`` has settled."""

    def __init__(self, source: Deferred):
        super().__init__()
        self._source = source
        source.chainDeferred(self)

    def cancel(self) -> None:
        if self.called:
            super().cancel()
        else:
            self._source.cancel()


class Scoped(Forwarding):
    """A Deferred of an async context manager that is already entered (an acquired Lock, a granted
    Lease): ``value = await it``, or ``async with it as value:``, which awaits it and on the way out
    calls ``value.__aexit__`` (releasing the lock, revoking the lease)."""

    def __init__(self, source: Deferred):
        self._value = None
        super().__init__(source)
        # Kept apart: whoever awaits a Deferred first takes its result from the callback chain.
        self.addCallback(self._keep)

    def _keep(self, value):
        self._value = value
        return value

    async def __aenter__(self):
        return await self

    async def __aexit__(self, *exc_info):
        return await self._value.__aexit__(*exc_info)
