"""The billing service: lists a customer's orders through the by_customer index, and invoices new
orders as they arrive, from a live mirror of the orders table (no polling).

Like order_service.py it takes the generated module of one schema version; it only reads orders, so
an old billing service keeps working when the order-taking service writes a newer version.
"""


class BillingService:
    def __init__(self, db, shop):
        self.db = db
        self.shop = shop
        self.invoiced = []            # (order number, total cents), in the order orders arrived
        self.mirror = None

    async def start(self):
        await self.db.attach(self.shop.Shop())
        self.mirror = self.shop.orders.mirror(self.db, on_change=self._changed)
        await self.mirror.ready()

    def _changed(self, number, old, new):
        if old is None and new is not None:     # a new order (the mirror gives zero-copy readers)
            self.invoiced.append((number, new.Total().Cents()))

    async def caught_up(self, revision: int):
        """Wait until the mirror has applied the write at ``revision``."""
        await self.mirror.wait_for(revision, timeout=10)

    async def statement(self, customer) -> list:
        """→ [(order number, total cents, status)] of one customer, through the index."""
        async with self.db.begin() as txn:
            return [(number, order.Total().Cents(), order.Status())
                    async for number, order in self.shop.orders.select(txn, index='by_customer', prefix=customer)]

    def stop(self):
        self.mirror.close()
