"""Tutorial 2: store, load and delete a User in a MapUuidCbor table.

Run: python examples/etcdb/tut2.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

import uuid

from txaioetcd import Client, Database, KeySet, pmap
from txaioetcd.devserver import run_with_etcd
from user import User

# Slot 1 of the database; objects go through User.marshal / User.parse and CBOR.
tab_users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)


async def main(reactor, url):
    etcd = Client(reactor, url=url)
    await etcd.delete(KeySet(b'tut2/', prefix=True))   # start afresh on every run
    db = Database(etcd, prefix=b'tut2/')

    alice = User(uuid.uuid4(), 'alice', 'alice@example.com', 33)
    async with db.begin(write=True) as txn:          # committed when the block ends
        tab_users[txn, alice.oid] = alice
    print(f'stored {alice} at revision {txn.committed_revision}')

    async with db.begin() as txn:                    # read-only
        loaded = await tab_users[txn, alice.oid]
        count = await tab_users.count(txn)
    assert loaded == alice
    print(f'loaded {loaded}; the table has {count} user(s)')

    async with db.begin(write=True) as txn:
        del tab_users[txn, alice.oid]
    async with db.begin() as txn:
        gone = await tab_users[txn, alice.oid]
    assert gone is None
    print('deleted; loading it again gives', gone)
    await etcd.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
