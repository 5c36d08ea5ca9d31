"""A counter incremented by 20 concurrent workers: conflicts happen, db.run retries, none is lost.

Run: python examples/etcdb/counter.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

from twisted.internet.defer import ensureDeferred, gatherResults

from txaioetcd import Client, Database, KeySet, pmap
from txaioetcd.errors import TransactionConflict
from txaioetcd.devserver import run_with_etcd

counters = pmap.MapStringOid(1, name='counters')
WORKERS, INCREMENTS = 20, 10


async def main(reactor, url):
    etcd = Client(reactor, url=url)
    await etcd.delete(KeySet(b'counter-example/', prefix=True))   # start afresh on every run
    db = Database(etcd, prefix=b'counter-example/')
    attempts = 0

    async def increment(txn):
        nonlocal attempts
        attempts += 1
        value = await counters[txn, 'hits'] or 0     # the read is remembered ...
        counters[txn, 'hits'] = value + 1            # ... and compared when the write commits

    async def worker():
        for _ in range(INCREMENTS):
            await db.run(increment, retries=100)

    # Without db.run, a conflicting commit raises TransactionConflict and writes nothing:
    async with db.begin(write=True) as txn:
        counters[txn, 'hits'] = 0
    first, second = db.begin(write=True), db.begin(write=True)
    await increment(first)
    await increment(second)
    await first.commit()
    try:
        await second.commit()
    except TransactionConflict as conflict:
        print(f'second commit refused: {conflict}')

    async with db.begin(write=True) as txn:
        counters[txn, 'hits'] = 0
    attempts = 0
    await gatherResults([ensureDeferred(worker()) for _ in range(WORKERS)])
    async with db.begin() as txn:
        total = await counters[txn, 'hits']
    print(f'{WORKERS} workers x {INCREMENTS} increments = {total} '
          f'({attempts - WORKERS * INCREMENTS} conflicts retried)')
    assert total == WORKERS * INCREMENTS
    await etcd.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
