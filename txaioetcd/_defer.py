"""One asynchronous idiom: every public asynchronous method returns a Deferred - this module's.

A Deferred runs whether it is awaited or not, can be cancelled, is awaited from ``async def`` code run
with ``Deferred.fromCoroutine``/``ensureDeferred`` and yielded under ``inlineCallbacks``. Coroutines are
how this package writes its composite calls, never what it hands out:

- ``Deferred`` is Twisted's, with one addition: an asyncio Task can ``await`` it too (it then awaits
  ``asFuture(loop)``, so cancelling the Task cancels the Deferred). The package creates its Deferreds
  from this class only (``succeed``, ``fail``, ``Deferred.fromCoroutine`` included), which is what lets
  ``txaioetcd.aio`` hand the same objects to asyncio code - see docs/asyncio.md.
- ``returns_deferred`` turns an ``async def`` method into one that returns a Deferred (a coroutine
  that nobody awaits would silently never run - an un-awaited ``lock.release()`` would keep the lock).
- ``Forwarding`` is a Deferred with the result of another one; cancelling it cancels the other and
  fires once that one has settled (so a cancelled lock attempt fires after it left nothing behind).
- ``Scoped`` is a Forwarding Deferred that is also an ``async with`` scope, for calls whose result is
  already "entered": ``async with client.lock(b'jobs'):`` waits for the lock and releases it on exit,
  ``async with client.lease(10) as lease:`` revokes it on exit.

Who drives a coroutine decides how an awaited Deferred is waited for. Twisted's driver (the one
behind ``fromCoroutine``) needs the Deferred itself yielded; an asyncio Task needs a Future. The
package's own coroutines run in a context where ``_TWISTED_DRIVEN`` is set, because the first step of
one started from inside an asyncio Task runs in that Task; any other coroutine awaiting while an
asyncio Task is current is that Task's own code.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools

from twisted.internet import defer as _twisted

__all__ = ('Deferred', 'succeed', 'fail', 'returns_deferred', 'Forwarding', 'Scoped', 'CallerStyle')

_TWISTED_DRIVEN = contextvars.ContextVar('txaioetcd_twisted_driven', default=False)
_running_loop = asyncio.events._get_running_loop       # the C function behind get_running_loop(), no raise
_current_task = asyncio.current_task


class Deferred(_twisted.Deferred):
    """Twisted's Deferred, also awaitable from an asyncio Task (see the module's docstring)."""

    def __await__(self):
        if (not self.called or self.paused) and not _TWISTED_DRIVEN.get():   # a fired one: result now
            loop = _running_loop()
            if loop is not None and _current_task(loop) is not None:
                return self._await_in_task(loop)
        return _twisted.Deferred.__iter__(self)

    def _await_in_task(self, loop):
        """What an asyncio Task awaits: a Future of this result. If the Task is cancelled meanwhile,
        this Deferred is cancelled and the Task waits until it has settled before it sees its
        CancelledError - as a cancelled Twisted coroutine does: a cancelled lock attempt has removed
        its waiter key when ``wait_for`` returns. (Cancelling the Task again stops that wait.)"""
        future = loop.create_future()
        self.addCallbacks(_set_result, _set_exception, callbackArgs=(future,), errbackArgs=(future,))
        try:
            return (yield from future.__await__())
        except asyncio.CancelledError:
            if not self.called:
                settled = loop.create_future()
                self.addBoth(_set_result, settled)
                self.cancel()
                if not settled.done():
                    yield from settled.__await__()
            raise

    @classmethod
    def fromCoroutine(cls, coro) -> Deferred:
        """Run ``coro`` under Twisted's driver (marked as such) → this class's Deferred of its result."""
        return contextvars.copy_context().run(_drive, coro)


class CallerStyle:
    """How the code calling us now awaits, kept to run a coroutine it hands us (``db.run(fn)``) its
    way: as an asyncio Task in the caller's context when an asyncio Task is calling, else under
    Twisted's driver. (Awaited inside one of our coroutines, an asyncio program's ``fn`` could not
    await ``asyncio.sleep`` or ``gather``: Twisted's driver takes only Deferreds.)"""

    __slots__ = ('_loop', '_context')

    def __init__(self):
        loop = None if _TWISTED_DRIVEN.get() else _running_loop()
        self._loop = loop if loop is not None and _current_task(loop) is not None else None
        self._context = contextvars.copy_context() if self._loop is not None else None

    def run(self, awaitable):
        """``awaitable`` (a coroutine of the caller's, say) as something our coroutines can await."""
        if self._loop is None or not asyncio.iscoroutine(awaitable):
            return awaitable
        return Deferred.fromFuture(self._context.run(self._loop.create_task, awaitable))


def _set_result(result, future) -> None:
    if not future.cancelled():
        future.set_result(result)


def _set_exception(failure, future) -> None:
    if not future.cancelled():
        future.set_exception(failure.value)


def _drive(coro) -> Deferred:
    _TWISTED_DRIVEN.set(True)      # in the caller's context copy; Twisted runs every step in a copy of it
    return Forwarding(_twisted.Deferred.fromCoroutine(coro))


def succeed(result) -> Deferred:
    """A Deferred that has fired with ``result``."""
    d = Deferred()
    d.callback(result)
    return d


def fail(error) -> Deferred:
    """A Deferred that has failed with ``error`` (an exception or a Failure)."""
    d = Deferred()
    d.errback(error)
    return d


def returns_deferred(fn):
    """Decorate an ``async def`` function: calling it starts the coroutine and returns its Deferred."""
    @functools.wraps(fn)
    def run(*args, **kwargs) -> Deferred:
        return Deferred.fromCoroutine(fn(*args, **kwargs))
    return run


class Forwarding(Deferred):
    """A Deferred that fires with ``source``'s result. Cancelling it cancels ``source``, and it fires
    (with the CancelledError, or whatever ``source`` ends with) only once ``source`` has settled."""

    def __init__(self, source: _twisted.Deferred):
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

    def __init__(self, source: _twisted.Deferred):
        self._value = None
        super().__init__(source)
        # Kept apart: whoever awaits a Deferred first takes its result from the callback chain.
        self.addCallback(self._keep)

    def _keep(self, value):
        self._value = value
        return value

    @returns_deferred
    async def __aenter__(self):
        return await self

    @returns_deferred
    async def __aexit__(self, *exc_info):
        return await self._value.__aexit__(*exc_info)
