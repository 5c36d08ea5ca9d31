"""Helpers for the tests of the asyncio face (txaioetcd.aio): each test is a plain function that runs
its coroutine in a fresh ``asyncio.run`` (no Twisted reactor running), bounded in time."""

import asyncio
from contextlib import asynccontextmanager

from txaioetcd import aio


def run(coro, timeout: float = 60.0):
    """``asyncio.run(coro)``, failing with asyncio.TimeoutError after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def aio_client(url=None, *, endpoints=None, timeout: float = 10.0, **options):
    """``async with aio_client(url) as client:`` an asyncio-face Client, closed (and awaited) afterwards."""
    if endpoints is None:
        client = aio.Client(url, timeout=timeout, **options)
    else:
        client = aio.Client(endpoints=endpoints, timeout=timeout, **options)
    try:
        yield client
    finally:
        await client.close()


async def eventually(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Wait (bounded) until ``predicate()`` is true; fail with AssertionError naming it otherwise."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f'not true within {timeout} s: {predicate}')
        await asyncio.sleep(interval)
