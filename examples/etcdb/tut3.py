"""Tutorial 3: a Schema with indexed users, shared by services; select through the indexes.

Run: python examples/etcdb/tut3.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

import uuid

from txaioetcd import Client, Database, KeySet, pmap
from txaioetcd.errors import UniqueViolation
from txaioetcd.devserver import run_with_etcd
from user import User


class Accounts(pmap.Schema):
    """One definition, imported by every service that touches these tables."""

    users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse)
    users_by_email = pmap.MapStringUuid(2)          # unique: email -> user
    users_by_name = pmap.MapStringUuidUuid(3)       # non-unique: (name, user) -> user

    users.attach_index('by_email', users_by_email, lambda user: user.email)
    users.attach_index('by_name', users_by_name, lambda user: user.name, unique=False)


async def main(reactor, url):
    etcd = Client(reactor, url=url)
    await etcd.delete(KeySet(b'tut3/', prefix=True))   # start afresh on every run
    db = Database(etcd, prefix=b'tut3/')
    schema = Accounts()
    recorded = await db.attach(schema)       # writes or checks the catalog in slot 0
    print(f'schema attached; newly recorded tables: {recorded or "none"}')

    people = [User(uuid.uuid4(), name, f'{name}{i}@example.com', 20 + i)
              for i, name in enumerate(['alice', 'bob', 'carol', 'bob'])]
    async with db.begin(write=True) as txn:
        for user in people:
            schema.users[txn, user.oid] = user    # index entries follow in the same etcd txn

    async with db.begin() as txn:
        async for oid, user in schema.users.select(txn, index='by_email', prefix='carol'):
            print(f'by email prefix "carol": {user}')
        bobs = [user async for _, user in schema.users.select(txn, index='by_name', prefix='bob')]
        print(f'by name "bob": {len(bobs)} users: {bobs}')
        assert len(bobs) == 2

    try:
        async with db.begin(write=True) as txn:
            schema.users[txn, uuid.uuid4()] = User(uuid.uuid4(), 'mallory', 'alice0@example.com')
    except UniqueViolation as error:
        print(f'refused: {error}')
    await etcd.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
