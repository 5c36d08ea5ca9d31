"""A Database transaction: snapshot reads, buffered writes, and what it saw (for the commit compares).

Reads happen at one revision: the first read fixes it (``revision``) and later reads ask etcd for
that revision. Every key read is remembered with its ``mod_revision`` (0 when absent) and every range
read with its bounds; writes stay in memory until ``commit()`` (``_commit.py``) turns everything into
one etcd transaction. Reads see the transaction's own writes, for points and for ranges.
"""

from __future__ import annotations


from zope.interface import implementer

from .._defer import Deferred, fail, succeed
from ..errors import Compacted, ReadNotAwaited, ReadOnlyTransaction, TransactionClosed, TransactionConflict
from ..keyset import KeySet, prefix_range_end
from ..ops import OpGet, Transaction
from ..pmap import ITableTxn
from ..retry import Deadline

__all__ = ('DbTransaction',)

_PAGE = 1000


class _Write:
    __slots__ = ('table', 'key', 'obj', 'data')

    def __init__(self, table, key, obj, data):
        self.table = table
        self.key = key
        self.obj = obj        # the object written (None for a delete or a raw index entry)
        self.data = data      # encoded bytes; None means delete


def _not_awaited(reads) -> ReadNotAwaited:
    names = [read.describe() for read in reads]
    shown = ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')
    for read in reads:
        read.addErrback(lambda _: None)    # its own error, if any, is beside the point now
    return ReadNotAwaited(f'the transaction ended with {len(names)} table read(s) never awaited: {shown}. '
                          f'A read returns a Deferred, not the record: write `value = await '
                          f'{names[0]}`. Nothing was written', names)


@implementer(ITableTxn)
class DbTransaction:
    """Created by ``db.begin(write=...)``; use as ``async with`` (commits on a clean exit, aborts on an
    exception) or call ``commit()`` / ``abort()`` yourself.

    Tables read and write through it (``tab[txn, key]``): its ``*_record(s)`` methods and
    ``track_read`` are the ``ITableTxn`` interface tables use, not calls for applications."""

    def __init__(self, db, write: bool, deadline: Deadline | None = None, guard=None):
        if guard is not None and (not write or not hasattr(type(guard), 'fence')):
            raise (TypeError(f'guard must be a Lock or an Election, not {guard!r}') if write else
                   ValueError('guard= fences the commit\'s writes: use it with write=True'))
        self._db = db
        self.guard = guard          # a Lock or Election whose fence the commit carries (None: unfenced)
        self._deadline = deadline   # bounds every request the transaction makes (None: each its own)
        self._client = db.client
        self._prefix = db.prefix
        self._cut = len(db.prefix)
        self.write = write
        self.revision: int | None = None            # the snapshot, fixed by the first read
        self.committed_revision: int | None = None  # the commit's revision, once committed
        # open | committing | committed | aborted | unknown (sent, then cancelled or its answer lost)
        self.state = 'open'
        self._first_waiters: list[Deferred] | None = None
        self._seen: dict[bytes, int] = {}           # raw key -> mod_revision read (0 = absent)
        self._values: dict[bytes, bytes | None] = {}  # raw key -> value read (None = absent)
        self._ranges: list[tuple[bytes, bytes]] = []  # raw [start, end) ranges read
        self._writes: dict[bytes, _Write] = {}      # raw key -> pending write
        self._truncated: list[tuple[bytes, bytes]] = []
        self._owners: dict[bytes, tuple] = {}       # raw key -> (table, key), to name conflicts
        self._range_tables: dict[tuple, object] = {}  # raw range read -> its table, to name keys
        self._reads: list = []                      # the Reads handed to the application

    def __repr__(self):
        kind = 'write' if self.write else 'read'
        return (f'<DbTransaction {kind} {self.state} revision={self.revision} reads={len(self._seen)} '
                f'writes={len(self._writes)}>')

    # -- context manager and ending

    def __aenter__(self) -> Deferred:
        return succeed(self)

    def __aexit__(self, exc_type, exc, tb) -> Deferred:
        if exc_type is not None:
            self.abort()
        elif self.state == 'open':
            return self.commit().addCallback(lambda _: False)
        return succeed(False)

    def commit(self) -> Deferred:
        """Write everything as one etcd transaction → the committed revision (or raise; nothing written).

        A transaction in which a table read was never awaited is not committed: it fails with
        ReadNotAwaited (what it wrote may rest on a Deferred taken for a record)."""
        from ._commit import commit
        if self.state != 'open':
            return fail(TransactionClosed(f'transaction already {self.state}'))
        unawaited = [read for read in self._reads if not read.taken]
        if unawaited:
            self.abort()
            return fail(_not_awaited(unawaited))
        self._reads.clear()
        return Deferred.fromCoroutine(commit(self))

    def abort(self) -> None:
        """Drop every pending write; nothing is sent."""
        if self.state == 'open':
            self.state = 'aborted'
            self._writes.clear()
            self._reads.clear()

    def track_read(self, read) -> None:
        """(ITableTxn) Remember a read handed to the application; commit checks it was taken."""
        self._reads.append(read)

    def timeout(self) -> float | None:
        """The deadline of the next request: what is left of the transaction's (None: the client's)."""
        return None if self._deadline is None else self._deadline.bound(self._client.timeout)

    def _check_open(self) -> None:
        if self.state != 'open':
            raise TransactionClosed(f'transaction already {self.state}')

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if not self.write:
            raise ReadOnlyTransaction(f'{what}: this transaction is read-only; use db.begin(write=True)')

    # -- the snapshot

    def _at_snapshot(self, call) -> Deferred:
        """Run ``call(revision)``; the first call (revision None) fixes the snapshot for all others."""
        if self.revision is not None:
            return call(self.revision).addErrback(self._compacted)
        if self._first_waiters is not None:
            waiter = Deferred()
            self._first_waiters.append(waiter)
            return waiter.addCallback(lambda _: call(self.revision)).addErrback(self._compacted)
        self._first_waiters = []
        d = call(None)

        def pinned(result):
            self.revision = result.header.revision
            waiters, self._first_waiters = self._first_waiters, None
            for waiter in waiters:
                waiter.callback(None)
            return result

        def failed(failure):
            waiters, self._first_waiters = self._first_waiters, None
            for waiter in waiters:
                waiter.errback(failure)
            return failure

        return d.addCallbacks(pinned, failed)

    def _compacted(self, failure):
        failure.trap(Compacted)
        raise TransactionConflict(f'the snapshot revision {self.revision} was compacted while the '
                                  f'transaction ran; run it again', [])

    def _record(self, raw: bytes, kv) -> None:
        # Every read is at the same snapshot, so a key read twice reads the same: first one wins.
        if kv is None:
            self._seen.setdefault(raw, 0)
            self._values.setdefault(raw, None)
        else:
            self._seen.setdefault(raw, kv.mod_revision)
            self._values.setdefault(raw, kv.value)

    # -- point reads

    def read_record(self, slot_key: bytes, table, key) -> Deferred:
        """(ITableTxn) Value bytes of one record as this transaction sees it (None: absent)."""
        try:
            self._check_open()
        except TransactionClosed as error:
            return fail(error)
        raw = self._prefix + slot_key
        if raw in self._writes or raw in self._values or self._in_truncated(raw):
            return succeed(self._visible(raw))
        self._owners.setdefault(raw, (table, key))
        client = self._client
        d = self._at_snapshot(lambda revision: client.get(raw, revision=revision, timeout=self.timeout()))

        def got(result):
            self._record(raw, result.kvs[0] if result.kvs else None)
            return self._values[raw]
        return d.addCallback(got)

    def read_records(self, slot_keys, table, keys) -> Deferred:
        """(ITableTxn) Values of several records, read in one round trip (batches of max_txn_ops)."""
        raws = [self._prefix + slot_key for slot_key in slot_keys]
        for raw, key in zip(raws, keys):
            self._owners.setdefault(raw, (table, key))
        d = self._read_many(raws)
        return d.addCallback(lambda _: [self._visible(raw) for raw in raws])

    def _visible(self, raw: bytes):
        pending = self._writes.get(raw)
        if pending is not None:
            return pending.data
        if self._in_truncated(raw):
            return None
        return self._values.get(raw)

    def _read_many(self, raws) -> Deferred:
        """Read (and remember) every raw key not read yet, as read-only etcd transactions."""
        missing = [raw for raw in dict.fromkeys(raws) if raw not in self._values]
        if not missing:
            return succeed(None)
        return Deferred.fromCoroutine(self._read_batches(missing))

    async def _read_batches(self, missing) -> None:
        size = self._db.max_txn_ops
        for i in range(0, len(missing), size):
            batch = missing[i:i + size]
            client = self._client
            result = await self._at_snapshot(
                lambda revision, batch=batch: client.submit(
                    Transaction(success=[OpGet(raw, revision=revision) for raw in batch]),
                    timeout=self.timeout()))
            for raw, got in zip(batch, result.responses):
                self._record(raw, got.kvs[0] if got.kvs else None)

    # -- writes

    def put_record(self, slot_key: bytes, table, key, obj, data: bytes) -> None:
        """(ITableTxn) Buffer a write of one record."""
        self._check_writable(f'{table.name}[{key!r}] = ...')
        raw = self._prefix + slot_key
        self._writes[raw] = _Write(table, key, obj, data)
        self._owners.setdefault(raw, (table, key))

    def delete_record(self, slot_key: bytes, table, key) -> None:
        """(ITableTxn) Buffer a delete of one record."""
        self._check_writable(f'del {table.name}[{key!r}]')
        raw = self._prefix + slot_key
        self._writes[raw] = _Write(table, key, None, None)
        self._owners.setdefault(raw, (table, key))

    def _raw_range(self, start: bytes, end: bytes) -> tuple[bytes, bytes]:
        """Slot-relative [start, end) → raw keys under the Database prefix. An end of b'\\0' (no upper
        bound: the range runs to the last key) becomes the end of the Database's namespace."""
        if end == b'\0':
            return self._prefix + start, prefix_range_end(self._prefix)
        return self._prefix + start, self._prefix + end

    def truncate_records(self, start: bytes, end: bytes, table) -> None:
        """(ITableTxn) Buffer a delete of every record in ``[start, end)``."""
        self._check_writable(f'{table.name}.truncate()')
        start, end = self._raw_range(start, end)
        for raw in [raw for raw in self._writes if start <= raw < end]:
            del self._writes[raw]
        self._truncated.append((start, end))

    def describe_key(self, raw: bytes) -> str:
        """A raw key as "table[key]" where this transaction knows its table, else as bytes."""
        owner = self._owners.get(raw)
        if owner is not None:
            table, key = owner
            return f'{table.name}[{key!r}]'
        for (start, end), table in self._range_tables.items():
            if start <= raw < end and hasattr(table, 'decode_key'):
                try:
                    return f'{table.name}[{table.decode_key(raw[self._cut:])!r}]'
                except Exception:  # a foreign key in the table's range: show the bytes
                    break
        return repr(raw)

    def _in_truncated(self, raw: bytes) -> bool:
        return any(start <= raw < end for start, end in self._truncated)

    # -- range reads

    async def scan_records(self, start: bytes, end: bytes, limit, reverse: bool, keys_only: bool, table):
        """(ITableTxn) (slot-relative key, value) pairs of [start, end) as this transaction sees them: etcd's
        snapshot merged with pending writes, in key order (or reversed), a page at a time."""
        self._check_open()
        start, end = self._raw_range(start, end)
        pending = sorted(raw for raw in self._writes if start <= raw < end)
        if reverse:
            pending.reverse()
        before = (lambda a, b: a > b) if reverse else (lambda a, b: a < b)
        cut = self._cut
        emitted = 0
        low, high = start, end          # the part of [start, end) etcd has still to deliver
        last = None                     # the last key looked at (for the range read record)
        complete = False
        position = 0
        try:
            while True:
                page = await self._page(low, high, reverse, keys_only, limit, emitted)
                for kv in page.kvs:
                    raw = kv.key
                    last = raw
                    while position < len(pending) and before(pending[position], raw):
                        write = self._writes[pending[position]]
                        position += 1
                        if write.data is not None:
                            yield pending[position - 1][cut:], write.data
                            emitted += 1
                            if limit and emitted >= limit:
                                return
                    if position < len(pending) and pending[position] == raw:
                        position += 1
                        write = self._writes[raw]
                        self._seen.setdefault(raw, kv.mod_revision)
                        if write.data is None:
                            continue
                        yield raw[cut:], write.data
                    else:
                        self._seen.setdefault(raw, kv.mod_revision)
                        if not keys_only:
                            self._values.setdefault(raw, kv.value)
                        if self._in_truncated(raw):
                            continue
                        yield raw[cut:], (None if keys_only else kv.value)
                    emitted += 1
                    if limit and emitted >= limit:
                        return
                if not page.more:
                    break
                if reverse:
                    high = last
                else:
                    low = last + b'\0'
            while position < len(pending):
                raw = pending[position]
                position += 1
                write = self._writes[raw]
                if write.data is not None:
                    yield raw[cut:], write.data
                    emitted += 1
                    if limit and emitted >= limit:
                        return
            complete = True
        finally:
            covered = self._covered(start, end, last, reverse, complete)
            self._ranges.append(covered)
            self._range_tables[covered] = table

    def _page(self, low, high, reverse, keys_only, limit, emitted) -> Deferred:
        size = _PAGE if not limit else min(_PAGE, limit - emitted + 1)
        keyset = KeySet(low, high)
        client = self._client
        return self._at_snapshot(lambda revision: client.get(
            keyset, limit=size, revision=revision, keys_only=keys_only, timeout=self.timeout(),
            sort_order='descend' if reverse else None))

    @staticmethod
    def _covered(start, end, last, reverse, complete):
        """The part of [start, end) a scan actually looked at: all of it, or up to its last key."""
        if complete or last is None:
            return (start, end) if complete else (start, start)
        return (last, end) if reverse else (start, last + b'\0')

    def count_records(self, start: bytes, end: bytes, table) -> Deferred:
        """(ITableTxn) The number of records in [start, end) as this transaction sees them."""
        try:
            self._check_open()
        except TransactionClosed as error:
            return fail(error)
        raw_start, raw_end = self._raw_range(start, end)
        touched = any(raw_start <= raw < raw_end for raw in self._writes) or self._truncated
        if not self.write and not touched:
            keyset = KeySet(raw_start, raw_end)
            client = self._client
            d = self._at_snapshot(lambda revision: client.get(keyset, revision=revision, count_only=True,
                                                              timeout=self.timeout()))
            return d.addCallback(lambda result: result.count)
        # In a write transaction the keys counted must be compared at commit: scan them.
        return Deferred.fromCoroutine(self._count_by_scan(start, end, table))

    async def _count_by_scan(self, start, end, table) -> int:
        total = 0
        async for _ in self.scan_records(start, end, None, False, True, table):
            total += 1
        return total
