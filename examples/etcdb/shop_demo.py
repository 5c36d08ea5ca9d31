"""Two services share schemas/shop.fbs; then version 2 of the schema adds fields.

The order-taking service writes customers and orders; the billing service lists them through an index
and invoices new orders from a live mirror. Both start on version 1. Then the order-taking service is
upgraded to version 2 (Order gained ``coupon`` and ``gift``): its attach updates the catalog, its new
orders carry a coupon, the old billing service keeps reading them (it does not know the field), and a
version 2 reader sees the default in orders written by version 1. A service whose idea of the orders
table is incompatible is refused with SchemaMismatch before it writes anything.

Run: python examples/etcdb/shop_demo.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

import cbor2

from txaioetcd import Client, Database, KeySet, pmap
from txaioetcd.devserver import run_with_etcd
from txaioetcd.errors import SchemaMismatch
from txaioetcd.pmap._schema import catalog_key

from billing_service import BillingService
from order_service import OrderService
from shop_v1 import shop as shop_v1
from shop_v2 import shop as shop_v2

PREFIX = b'shop-demo/'


async def main(reactor, url):
    clients = [Client(reactor, url=url) for _ in range(3)]     # one per service, as in production
    await clients[0].delete(KeySet(PREFIX, prefix=True))       # start afresh on every run
    orders_v1, billing_v1 = (OrderService(Database(clients[0], PREFIX), shop_v1),
                             BillingService(Database(clients[1], PREFIX), shop_v1))
    print(f'order service (v1) attached, recorded: {", ".join(await orders_v1.start())}')
    await billing_v1.start()

    ann = await orders_v1.add_customer('ann@example.com', 'Ann')
    await orders_v1.place_order(1, 'ann@example.com', [('TEA-1', 2, 450)])
    revision = await orders_v1.place_order(2, 'ann@example.com', [('CUP-7', 1, 1200), ('TEA-1', 1, 450)])
    await billing_v1.caught_up(revision)
    print(f'billing (v1) invoiced {billing_v1.invoiced}; statement {await billing_v1.statement(ann)}')

    # The order-taking service is upgraded: version 2 of the schema, same tables and slots.
    orders_v2 = OrderService(Database(clients[2], PREFIX), shop_v2)
    print(f'order service (v2) attached, catalog updated: {", ".join(await orders_v2.start())}')
    record = cbor2.loads((await clients[0].get(PREFIX + catalog_key(shop_v2.orders.slot))).kvs[0].value)
    print(f'catalog orders: {record["root_type"]} sha256 {record["bfbs_sha256"][:12]} '
          f'(v2: {shop_v2.orders.value_options["root"].sha256[:12]})')
    revision = await orders_v2.place_order(3, 'ann@example.com', [('POT-2', 1, 3000)], coupon='WINTER', gift=True)
    await billing_v1.caught_up(revision)
    print(f'billing (v1) still works: invoiced {billing_v1.invoiced[-1]}; '
          f'statement {await billing_v1.statement(ann)}')

    async with orders_v2.db.begin() as txn:
        old, new = await shop_v2.orders[txn, 1], await shop_v2.orders[txn, 3]
        print(f'v2 reads order 1 (written by v1): coupon={old.Coupon()!r} gift={old.Gift()}; '
              f'order 3: coupon={new.Coupon()!r} gift={new.Gift()}')
    async with billing_v1.db.begin() as txn:
        print(f'v1 reads order 3 (written by v2): {len((await shop_v1.orders[txn, 3]).unpack().lines)} line(s), '
              f'the coupon is a field it does not know')
    # The old service attaching again is fine: the catalog keeps the newer version.
    print(f'order service (v1) attaches again: {await orders_v1.start() or "accepted, catalog unchanged"}')

    class Rogue(pmap.Schema):                    # someone's idea of slot 3 that does not match
        orders = pmap.MapOidCbor(3)
    try:
        await Database(clients[2], PREFIX).attach(Rogue())
    except SchemaMismatch as error:
        print(f'refused: {error}')

    billing_v1.stop()
    for client in clients:
        await client.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
