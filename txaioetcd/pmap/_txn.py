"""What a table needs of a transaction (``ITableTxn``), and what a table read hands back (``Read``).

Tables - persistent maps, their indexes, the schema catalog - only turn keys and objects into bytes
and back. The transaction that provides ``ITableTxn`` (``txaioetcd.database.DbTransaction``) does
the reading at its snapshot, the buffering and the committing. Keys here are slot-relative bytes
(slot prefix + encoded key); ``table`` and ``key`` are passed along so errors can name them.

A read returns a ``Read``: a Deferred that says what went wrong when it is used without ``await``
(``user = tab[txn, key]; user.name``, ``if tab.exists(txn, key):``), and that the transaction tracks,
so a transaction ending with a read nobody awaited fails (``ReadNotAwaited``) instead of committing
what ``if tab[txn, key] is None:`` decided on a Deferred.
"""

from __future__ import annotations

from zope.interface import Interface

from .._defer import Deferred, Forwarding


__all__ = ('ITableTxn', 'Read', 'check_txn')


class ITableTxn(Interface):
    """A transaction as tables use it. Reads return Deferreds; writes are buffered until commit."""

    def read_record(slot_key, table, key):
        """Deferred → the stored bytes of one record as the transaction sees them (None: absent)."""

    def read_records(slot_keys, table, keys):
        """Deferred → the stored bytes of several records (a list, None for absent ones)."""

    def put_record(slot_key, table, key, obj, data):
        """Buffer a write of ``data`` (the encoding of ``obj``; None for raw index entries)."""

    def delete_record(slot_key, table, key):
        """Buffer a delete."""

    def scan_records(start, end, limit, reverse, keys_only, table):
        """Async iterator of (slot_key, data) in ``[start, end)`` as the transaction sees it."""

    def count_records(start, end, table):
        """Deferred → the number of records in ``[start, end)``."""

    def truncate_records(start, end, table):
        """Buffer a delete of every record in ``[start, end)``."""

    def track_read(read):
        """Remember ``read`` (a Read), so that ending the transaction can check it was taken."""


def check_txn(txn, table, what: str) -> None:
    """Refuse anything but a transaction (a Database, None, a key ...) with a TypeError that says what
    to pass instead."""
    if ITableTxn.providedBy(txn):
        return
    got = type(txn).__name__
    hint = ' (a Database: start a transaction with db.begin())' if got == 'Database' else ''
    raise TypeError(f'{table.name}: {what} needs a transaction from db.begin() as its first argument, '
                    f'not {got} {txn!r}{hint}')


class Read(Forwarding):
    """The Deferred of a table read (``tab[txn, key]``, ``exists``, ``count``): ``await`` it.

    Used as if it were the result - ``read.name``, ``if read:`` - it raises an error that says so. The
    transaction is told once the result is taken (awaited, yielded, or a callback added).
    """

    def __init__(self, source: Deferred, txn, table, key, call: str | None = None):
        # What the read was, kept as parts (``call`` a template of ``key``): the text is made only
        # when an error needs it.
        self._table, self._key, self._call = table, key, call
        self._taken = False
        super().__init__(source)
        txn.track_read(self)

    def describe(self) -> str:
        """The read as ``table[txn, key]`` (or ``table.exists(txn, key)``, ``table.count(txn)`` ...)."""
        if self._call is None:
            return f'{self._table.name}[txn, {self._key!r}]'
        return f'{self._table.name}.' + self._call.format(key=self._key)

    @property
    def taken(self) -> bool:
        """Whether anybody took (or asked for) the result."""
        return self._taken

    def _take(self) -> None:
        self._taken = True

    def cancel(self) -> None:
        self._take()
        super().cancel()

    def __await__(self):
        self._take()
        return super().__await__()

    def __iter__(self):
        self._take()
        return super().__iter__()

    def addCallbacks(self, *args, **kwargs):
        self._take()
        return super().addCallbacks(*args, **kwargs)

    def addCallback(self, *args, **kwargs):
        self._take()
        return super().addCallback(*args, **kwargs)

    def addErrback(self, *args, **kwargs):
        self._take()
        return super().addErrback(*args, **kwargs)

    def addBoth(self, *args, **kwargs):
        self._take()
        return super().addBoth(*args, **kwargs)

    def __bool__(self):
        what = self.describe()
        raise TypeError(f'{what} is a Deferred, not the record: await it (`value = await {what}`) '
                        f'before testing it')

    def __getattr__(self, name):
        if name.startswith('_'):
            raise AttributeError(name)
        what = self.describe()
        raise AttributeError(f'{what} is a Deferred, not the record, so it has no attribute {name!r}: '
                             f'await it first (`value = await {what}`)')
