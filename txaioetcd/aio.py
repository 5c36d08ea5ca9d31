"""txaioetcd on asyncio: ``from txaioetcd.aio import Client, Database, KeySet, pmap, ...``.

Every public name of ``txaioetcd``, with the same meaning; only ``Client`` differs: it is created
inside a running asyncio loop and takes no reactor (``Client(url=...)``, ``await Client.connect(...)``).
It is the same class underneath (a subclass), running on a Twisted reactor that is driven by that
loop (``_asyncio_reactor.LoopReactor``, one per client, never installed globally), and every Deferred
it hands out can be awaited from a plain asyncio Task: cancelling the Task (``asyncio.wait_for``
included) cancels the call underneath. See docs/asyncio.md.
"""

from __future__ import annotations

import asyncio

from . import *  # noqa: F401,F403 - every public name, the same objects
from . import __all__ as _all
from . import client as _client
from ._asyncio_reactor import LoopReactor
from ._defer import Deferred

__all__ = _all


class Client(_client.Client):
    """An etcd v3 client on the running asyncio loop: ``Client(url='http://127.0.0.1:2379')`` or
    ``Client(endpoints=[...])`` and every option of ``txaioetcd.Client`` but the reactor."""

    def __init__(self, url: str | None = None, **options):
        if 'reactor' in options or not (url is None or isinstance(url, str)):
            raise TypeError('txaioetcd.aio.Client takes no reactor: it runs on the running asyncio loop '
                            "(Client(url='http://127.0.0.1:2379'); txaioetcd.Client(reactor, ...) is "
                            'the Twisted face)')
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError('txaioetcd.aio.Client must be created inside a running asyncio loop '
                               '(in a coroutine run by asyncio.run(), say)') from None
        super().__init__(LoopReactor(loop), url, **options)

    @classmethod
    def connect(cls, url: str | None = None, *, timeout: float = 10.0, **options) -> Deferred:
        """A Client whose endpoints answered: ``etcd = await Client.connect(url)``; Timeout after
        ``timeout`` seconds."""
        client = cls(url, timeout=timeout, **options)
        return client.wait_until_connected(timeout).addCallback(lambda _: client)
