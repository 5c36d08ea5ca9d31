"""The order-taking service: writes customers and orders, one Database transaction per order.

It is written against the generated tables of one version of schemas/shop.fbs (``shop_v1.shop`` or
``shop_v2.shop``); the version is a constructor argument only so that examples/etcdb/shop_demo.py can
run an old and an upgraded copy side by side. A real service imports its one generated module.
"""

import uuid


class OrderService:
    def __init__(self, db, shop):
        self.db = db
        self.shop = shop          # the generated module: tables, Schema, object-API classes

    async def start(self):
        """Record the schema in the catalog, or check it (a newer compatible version updates it)."""
        return await self.db.attach(self.shop.Shop())

    async def add_customer(self, email: str, name: str) -> uuid.UUID:
        shop = self.shop
        oid = uuid.uuid4()
        async with self.db.begin(write=True) as txn:
            shop.customers[txn, oid] = shop.CustomerT(email=email, name=name)
        return oid

    async def place_order(self, number: int, email: str, items, **fields) -> int:
        """Write order ``number`` for the customer with ``email``; ``items`` are (sku, quantity, cents).
        Other keyword arguments set fields this schema version has (``coupon=`` in version 2).
        → the revision of the commit."""
        shop = self.shop

        async def place(txn):
            customer = [key async for key in shop.customers.select(txn, index='by_email', prefix=email,
                                                                   return_values=False)]
            if not customer:
                raise LookupError(f'no customer with e-mail {email!r}')
            lines = [shop.LineT(sku=sku, quantity=quantity, price=shop.MoneyT(cents=cents, currency=978))
                     for sku, quantity, cents in items]
            total = shop.MoneyT(cents=sum(q * c for _, q, c in items), currency=978)
            shop.orders[txn, number] = shop.OrderT(customer=list(customer[0].bytes), lines=lines, total=total,
                                                   **fields)
            return txn

        txn = await self.db.run(place)
        return txn.committed_revision
