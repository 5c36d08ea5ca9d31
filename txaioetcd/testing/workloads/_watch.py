"""Watches across faults: several watchers, each on its own client (so each prefers another member),
follow one prefix from one revision while workers put unique values; every watcher must see exactly
the revision sequence of the writes - no gap, no repeat, no reorder - or report Compacted."""

from __future__ import annotations

from ..._defer import Deferred
from ...keyset import KeySet
from ..checkers import check_watch
from ._common import Workload, record, replay


class Watch(Workload):
    name = 'watch'

    def __init__(self, history, prefix, rng, keys: int = 4, watchers: int = 3):
        super().__init__(history, prefix, rng)
        self.keyset = KeySet(prefix, prefix=True)
        self.keys = [prefix + b'w%d' % i for i in range(keys)]
        self.watcher_count = watchers
        self.sentinel = prefix + b'~sentinel'
        self._next = 0
        self._watchers = []
        self.truth = []

    async def setup(self, client, clients=()) -> None:
        self.start = (await client.status()).header.revision + 1
        for i in range(self.watcher_count):
            watcher_client = clients[i % len(clients)] if clients else client
            self._watchers.append(_Watcher(self, watcher_client, 1000 + i))

    async def step(self, worker, client) -> None:
        self._next += 1
        key, value = self.random.choice(self.keys), b'%d' % self._next
        op = self.history.invoke(worker.process, 'put', (key, value))

        async def put():
            return None, (await client.set(key, value)).header.revision
        if await record(self.history, op, put) == 'unknown':
            worker.retire()

    async def finish(self, client) -> None:
        # The sentinel put by the replay is the last event: every watcher still running must see it.
        self.truth = await replay(client, self.keyset, self.start, self.sentinel)
        for watcher in self._watchers:
            await watcher.end()

    def check(self):
        return check_watch(self.history, self.truth)


class _Watcher:
    def __init__(self, workload, client, process):
        self._history = workload.history
        self._sentinel = workload.sentinel
        self._op = workload.history.invoke(process, 'watch', {'start_revision': workload.start})
        self._events = []
        self._error = None
        self._caught_up = Deferred()
        self._reactor = client.reactor
        self._watching = client.watch(workload.keyset, self._on_event, start_revision=workload.start)
        self._watching.done.addErrback(self._ended)

    def _on_event(self, event):
        self._events.append((event.kv.mod_revision, event.type, event.key, event.value))
        if event.key == self._sentinel and not self._caught_up.called:
            self._caught_up.callback(None)

    def _ended(self, failure):
        self._error = f'{failure.type.__name__}: {failure.value}'
        if not self._caught_up.called:
            self._caught_up.callback(None)

    async def end(self, timeout: float = 30.0) -> None:
        try:
            await self._caught_up.addTimeout(timeout, self._reactor)
        except Exception as error:    # never caught up: the checker sees where its events stop
            self._error = self._error or f'Stalled: did not reach the sentinel within {timeout:g} s ({error})'
        self._watching.cancel()
        self._history.ok(self._op, {'events': self._events, 'error': self._error})
