"""A leader-elected worker: three workers campaign; only the leader works; when it dies, the next
one takes over within the lease TTL.

Run: python examples/leader_worker.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from txaioetcd import Client, KeySet
from txaioetcd.devserver import run_with_etcd

ELECTION = b'examples/leader-worker/election'
WORK = b'examples/leader-worker/work/'


class Worker:
    def __init__(self, reactor, url, name: str):
        self.reactor = reactor
        self.name = name
        self.client = Client(reactor, url=url)
        self.election = self.client.election(ELECTION, ttl=2)
        self.done = 0

    async def run(self, jobs: int):
        await self.election.campaign(self.name.encode())      # returns once this worker leads
        print(f'{self.name} leads')
        while self.election.leading and self.done < jobs:
            await self.client.set(WORK + b'%s-%d' % (self.name.encode(), self.done), b'done')
            self.done += 1
            await deferLater(self.reactor, 0.05, lambda: None)


async def main(reactor, url):
    admin = Client(reactor, url=url)
    await admin.delete(KeySet(b'examples/leader-worker/', prefix=True))
    workers = [Worker(reactor, url, f'worker-{i}') for i in range(3)]
    runs = []
    for worker in workers:                          # queue up in this order: 0 leads, then 1, then 2
        runs.append(Deferred.fromCoroutine(worker.run(jobs=5)))
        for _ in range(100):
            if worker.election.key is not None:     # its candidacy is registered
                break
            await deferLater(reactor, 0.02, lambda: None)

    await runs[0]                                   # worker-0 campaigned first: it leads and works
    leader = await workers[1].election.leader()
    print(f'worker-0 finished its jobs; the leader key still names {leader[1].decode()}')
    await workers[0].client.close()                 # it "dies": its lease expires within 2 s
    await runs[1]                                   # worker-1 takes over and works
    print('worker-1 took over after worker-0 died')
    await workers[1].election.resign()              # a clean hand-over to worker-2
    await runs[2]

    done = await admin.get(KeySet(WORK, prefix=True), keys_only=True)
    names = sorted({kv.key[len(WORK):].split(b'-')[1].decode() for kv in done.kvs})
    print(f'{done.count} jobs done by workers {", ".join(names)}; only one worked at a time')
    assert done.count == 15
    for worker in workers[1:]:
        await worker.client.close()
    await admin.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
