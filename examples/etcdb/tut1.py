"""Tutorial 1: connect to etcd and look at it.

Run: python examples/etcdb/tut1.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

from txaioetcd import Client, Database
from txaioetcd.devserver import run_with_etcd


async def main(reactor, url):
    etcd = Client(reactor, url=url)
    status = await etcd.status()
    print(f'etcd {status.version}, revision {status.header.revision}, '
          f'db size {status.db_size} bytes, leader {status.leader:x}')
    for member in await etcd.members():
        print(f'member {member.name} ({member.id:x}) serves {", ".join(member.client_urls)}')

    db = Database(etcd)
    print(f'database revision: {await db.status()}')
    await etcd.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
