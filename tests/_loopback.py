"""Helpers for tests that talk to servers on 127.0.0.1: clients closed after use, and the HTTP/1.1
request framing the small fake servers and proxies written in the tests need."""

from contextlib import asynccontextmanager
from typing import NamedTuple

from txaioetcd import Client


@asynccontextmanager
async def connected(reactor, url=None, *, endpoints=None, timeout=5):
    """``async with connected(reactor, url) as client:`` a Client, closed (and awaited) afterwards."""
    if endpoints is None:
        client = Client(reactor, url=url, timeout=timeout)
    else:
        client = Client(reactor, endpoints=endpoints, timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


class HttpRequest(NamedTuple):
    """One complete HTTP request as it arrived: ``head`` (up to, without, the blank line), ``body``
    (Content-Length bytes) and ``raw`` (all of it, to forward as it was)."""

    head: bytes
    body: bytes
    raw: bytes

    @property
    def request_line(self) -> str:
        """``'POST /v3/kv/range HTTP/1.1'``"""
        return self.head.split(b'\r\n', 1)[0].decode('ascii')

    @property
    def path(self) -> bytes:
        return self.head.split(b' ')[1]


def split_http_requests(buffer: bytes) -> tuple[list[HttpRequest], bytes]:
    """The complete requests at the front of ``buffer`` (in order), and what is left after them."""
    requests = []
    while True:
        head_end = buffer.find(b'\r\n\r\n')
        if head_end < 0:
            break
        head = buffer[:head_end]
        length = 0
        for line in head.split(b'\r\n')[1:]:
            name, _, value = line.partition(b':')
            if name.strip().lower() == b'content-length':
                length = int(value)
        end = head_end + 4 + length
        if len(buffer) < end:
            break
        raw, buffer = buffer[:end], buffer[end:]
        requests.append(HttpRequest(head, raw[head_end + 4:], raw))
    return requests, buffer


async def within(reactor, d, timeout, what):
    """The result of Deferred ``d`` (raised if it failed), or AssertionError after ``timeout`` s.

    ``d`` itself is neither cancelled nor changed (cancelling a watch's ``done`` would end the
    watch), except that a failure it ends with is taken over here, not left unhandled.
    """
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    result = Deferred()

    def expired():
        if not result.called:
            result.errback(AssertionError(f'waited {timeout} s for {what}'))
    timer = reactor.callLater(timeout, expired)

    def settled(value):
        if timer.active():
            timer.cancel()
        if not result.called:
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value)
        return None if isinstance(value, Failure) else value
    d.addBoth(settled)
    return await result


def sleep(reactor, seconds: float):
    """A Deferred that fires after ``seconds`` (the reactor keeps running meanwhile)."""
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)


async def until(reactor, condition, timeout: float = 5.0, what='condition', interval: float = 0.02):
    """Poll ``condition()`` - a bool, or a Deferred or coroutine of one - every ``interval`` s until it
    holds; AssertionError after ``timeout`` s. ``what`` (text, or a function giving it) names what was
    awaited."""
    import time

    from twisted.internet.defer import maybeDeferred

    deadline = time.monotonic() + timeout
    while not await maybeDeferred(condition):
        if time.monotonic() >= deadline:
            raise AssertionError(f'waited {timeout} s for {what() if callable(what) else what}')
        await sleep(reactor, interval)
