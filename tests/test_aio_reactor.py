"""The reactor under the asyncio face (txaioetcd._asyncio_reactor.LoopReactor), without etcd: it keeps
Twisted's timers on the loop's clock without moving the loop's timer for every call, holds no file
descriptor of its own, and resolves host names through the loop. Each test runs in a fresh
``asyncio.run``."""

import asyncio
import os

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

from txaioetcd._asyncio_reactor import LoopReactor

from _aio import eventually, run


def _open_fds() -> int:
    return len(os.listdir('/proc/self/fd'))


def test_delayed_calls_fire_in_order_on_the_loop():
    async def main():
        reactor = LoopReactor(asyncio.get_running_loop())
        fired = []
        start = reactor.seconds()
        for delay in (0.06, 0.01, 0.03):
            reactor.callLater(delay, lambda d=delay: fired.append((d, reactor.seconds() - start)))
        cancelled = reactor.callLater(0.02, fired.append, 'cancelled')
        cancelled.cancel()
        await eventually(lambda: len(fired) == 3, timeout=5)
        assert [d for d, _ in fired] == [0.01, 0.03, 0.06]
        assert all(elapsed >= d - 0.002 for d, elapsed in fired), fired     # none early
    run(main(), timeout=10)


def test_a_later_call_leaves_the_loop_timer_alone_and_an_earlier_one_moves_it():
    async def main():
        reactor = LoopReactor(asyncio.get_running_loop())
        first = reactor.callLater(5, lambda: None)
        timer = reactor._timerHandle
        assert timer is not None
        for _ in range(100):                      # a request's deadline each: due after the timer
            reactor.callLater(10, lambda: None).cancel()
        assert reactor._timerHandle is timer       # not replaced (it was, once per call)
        fired = asyncio.Event()
        reactor.callLater(0.01, fired.set)
        assert reactor._timerHandle is not timer   # an earlier call moves it...
        await asyncio.wait_for(fired.wait(), 5)    # ... and fires on time
        first.cancel()
    run(main(), timeout=10)


def test_reactors_hold_no_file_descriptors():
    async def main():
        loop = asyncio.get_running_loop()
        before = _open_fds()
        reactors = [LoopReactor(loop) for _ in range(50)]
        assert _open_fds() == before               # no waker pipe per reactor
        assert all(r.waker is None for r in reactors)
    run(main(), timeout=10)


@implementer(IResolutionReceiver)
class _Receiver:
    def __init__(self):
        self.addresses = []
        self.complete = False

    def resolutionBegan(self, resolution):
        self.name = resolution.name

    def addressResolved(self, address):
        self.addresses.append(address)

    def resolutionComplete(self):
        self.complete = True


def test_host_names_resolve_through_the_loop():
    async def main():
        reactor = LoopReactor(asyncio.get_running_loop())
        found = _Receiver()
        reactor.nameResolver.resolveHostName(found, 'localhost', 2379, [IPv4Address])
        await eventually(lambda: found.complete, timeout=10)
        assert found.name == 'localhost'
        assert IPv4Address('TCP', '127.0.0.1', 2379) in found.addresses
        missing = _Receiver()
        reactor.nameResolver.resolveHostName(missing, 'a..b', 2379)      # refused locally: no DNS traffic
        await eventually(lambda: missing.complete, timeout=10)
        assert missing.addresses == []             # reported as "no address", as Twisted's own does
    run(main(), timeout=20)


def test_an_aio_client_needs_a_running_loop_and_takes_no_reactor():
    from txaioetcd import aio
    with pytest.raises(RuntimeError, match='inside a running asyncio loop'):
        aio.Client(url='http://127.0.0.1:2379')

    async def main():
        reactor = LoopReactor(asyncio.get_running_loop())
        with pytest.raises(TypeError, match='takes no reactor'):
            aio.Client(reactor)
        with pytest.raises(TypeError, match='takes no reactor'):
            aio.Client(url='http://127.0.0.1:2379', reactor=reactor)
    run(main(), timeout=10)
