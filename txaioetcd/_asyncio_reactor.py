"""A Twisted reactor on a running asyncio loop, for ``txaioetcd.aio``: never run, never installed.

``LoopReactor(loop)`` is Twisted's ``AsyncioSelectorReactor`` driven by the loop the application
already runs (``asyncio.run``), with two changes that make it fit there:

- no waker: Twisted's self-pipe only wakes its own ``run()`` loop (the asyncio reactor's
  ``callFromThread`` goes through ``call_soon_threadsafe``), so it would be two file descriptors per
  client with nothing to close them;
- host names are resolved by ``loop.getaddrinfo`` (the loop's executor, which ``asyncio.run`` shuts
  down), not by Twisted's thread pool, which only starts inside ``reactor.run()`` - without this a
  ``localhost`` endpoint would wait forever.

Nothing global changes: the process's own Twisted reactor (if any) is not touched, and no signal
handler is installed.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.posixbase import PosixReactorBase
from zope.interface import implementer

__all__ = ('LoopReactor',)


class LoopReactor(AsyncioSelectorReactor):
    """A reactor whose events are the asyncio loop's (see the module's docstring)."""

    def __init__(self, loop):
        super().__init__(eventloop=loop)
        self.installNameResolver(LoopResolver(loop))

    def installWaker(self) -> None:
        """No waker (see the module's docstring)."""

    def callLater(self, delay, callable, *args, **kwargs):
        """Twisted's, without moving the loop's timer for a call due after it. (The base class compares
        the new call's due time computed on two clocks read one after the other with the timer's
        computed the other way round, so every call looked earlier and moved the timer: a cancelled
        and a new asyncio TimerHandle per request.)"""
        call = PosixReactorBase.callLater(self, delay, callable, *args, **kwargs)
        if self._scheduledAt is None or self._asyncioEventloop.time() + delay < self._scheduledAt:
            self._reschedule()
        return call


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str):
        self.name = name

    def cancel(self) -> None:
        raise NotImplementedError('a host name lookup cannot be cancelled')


_FAMILIES = {IPv4Address: socket.AF_INET, IPv6Address: socket.AF_INET6}


@implementer(IHostnameResolver)
class LoopResolver:
    """Twisted's IHostnameResolver over ``loop.getaddrinfo``."""

    def __init__(self, loop):
        self._loop = loop

    def resolveHostName(self, resolutionReceiver, hostName: str, portNumber: int = 0,
                        addressTypes=None, transportSemantics: str = 'TCP'):
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        families = {_FAMILIES[t] for t in addressTypes or _FAMILIES if t in _FAMILIES}
        family = families.pop() if len(families) == 1 else socket.AF_UNSPEC
        kind, protocol = (socket.SOCK_STREAM, 'TCP') if transportSemantics == 'TCP' else (socket.SOCK_DGRAM, 'UDP')
        lookup = self._loop.create_task(self._loop.getaddrinfo(hostName, portNumber, family=family, type=kind))

        def resolved(task) -> None:
            try:
                answers = task.result()
            except Exception:       # noqa: BLE001 - any failed lookup (OSError, UnicodeError, ...)
                answers = []        # is "no address", as Twisted's own resolver reports it
            for answer_family, _, _, _, sockaddr in answers:
                if answer_family == socket.AF_INET:
                    resolutionReceiver.addressResolved(IPv4Address(protocol, *sockaddr))
                elif answer_family == socket.AF_INET6:
                    resolutionReceiver.addressResolved(IPv6Address(protocol, *sockaddr))
            resolutionReceiver.resolutionComplete()
        lookup.add_done_callback(resolved)
        return resolution
