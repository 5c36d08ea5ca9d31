"""Operations and comparisons: every KV request is a value of plain Python data.

``client.get``/``set``/``delete`` build an ``OpGet``/``OpSet``/``OpDel`` and run it; the very same values
go into a ``Transaction`` (and ``OpTxn`` nests one transaction in another). An op checks its arguments
when it is built and holds them as bytes, ints, bools and short strings - no wire format: each
transport encodes it (JSON for the gateway, protobuf for gRPC) and builds the typed result.

``rpc`` names the etcd method (``'KV/Range'``); ``idempotent`` says whether the request may be sent
again after its fate became unknown; ``describe()`` names the request and its key for errors.
The requests of the other services (lease, cluster, maintenance, auth, watch) are in ``rpc.py``.
"""

from __future__ import annotations

from .keyset import KeySet, as_key

__all__ = (
    'Op', 'OpGet', 'OpSet', 'OpDel', 'OpTxn', 'Transaction', 'Compact',
    'Comp', 'CompValue', 'CompVersion', 'CompCreated', 'CompModified', 'CompLease',
)


def lease_id_of(lease) -> int:
    """A Lease object (anything with ``lease_id``) or a plain integer id."""
    lease_id = getattr(lease, 'lease_id', lease)
    if not isinstance(lease_id, int) or isinstance(lease_id, bool) or lease_id < 0:
        raise TypeError(f'lease must be a Lease or a non-negative int id, not {lease!r}')
    return lease_id


def _revision(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f'{what} must be a non-negative int, not {value!r}')
    return value


class Op:
    """One request: usable alone (``client.do(op)``), and - KV ops - inside a Transaction."""

    __slots__ = ()
    rpc = ''             # the etcd service and method, e.g. 'KV/Range'
    idempotent = False   # safe to send again after an unknown outcome

    def describe(self) -> str:
        raise NotImplementedError


SORT_ORDERS = (None, 'none', 'ascend', 'descend')
SORT_TARGETS = (None, 'key', 'version', 'create', 'mod', 'value')


class OpGet(Op):
    """Range request. ``sort_order``: 'ascend'/'descend'; ``sort_target``: 'key', 'version', 'create',
    'mod' or 'value'; ``revision`` reads a past snapshot; ``serializable`` reads the member's local copy
    (faster, possibly stale); the min/max filters keep keys whose revisions lie in the bounds. Every
    number is 0 when not given (etcd's own default)."""

    __slots__ = ('keyset', 'limit', 'sort_order', 'sort_target', 'revision', 'serializable', 'keys_only',
                 'count_only', 'min_mod_revision', 'max_mod_revision', 'min_create_revision',
                 'max_create_revision')
    rpc = 'KV/Range'
    idempotent = True

    def __init__(self, key, limit: int | None = None, sort_order: str | None = None,
                 sort_target: str | None = None, revision: int | None = None,
                 serializable: bool = False, keys_only: bool = False, count_only: bool = False,
                 min_mod_revision: int | None = None, max_mod_revision: int | None = None,
                 min_create_revision: int | None = None, max_create_revision: int | None = None):
        self.keyset = KeySet.of(key)
        self.limit = _revision(limit, 'limit') if limit else 0
        if sort_order not in SORT_ORDERS:
            raise ValueError(f'sort_order must be one of ascend, descend, none; not {sort_order!r}')
        if sort_target not in SORT_TARGETS:
            raise ValueError(f'sort_target must be one of {", ".join(t for t in SORT_TARGETS if t)}; '
                             f'not {sort_target!r}')
        self.sort_order = sort_order
        self.sort_target = sort_target
        self.revision = _revision(revision, 'revision') if revision is not None else 0
        self.min_mod_revision = _revision(min_mod_revision, 'min_mod_revision') if min_mod_revision else 0
        self.max_mod_revision = _revision(max_mod_revision, 'max_mod_revision') if max_mod_revision else 0
        self.min_create_revision = (_revision(min_create_revision, 'min_create_revision')
                                    if min_create_revision else 0)
        self.max_create_revision = (_revision(max_create_revision, 'max_create_revision')
                                    if max_create_revision else 0)
        self.serializable = bool(serializable)
        self.keys_only = bool(keys_only)
        self.count_only = bool(count_only)

    def describe(self) -> str:
        return f'get of {self.keyset.describe()}'

    def __repr__(self):
        options = {name: getattr(self, name) for name in OpGet.__slots__[1:] if getattr(self, name)}
        return f'OpGet({self.keyset!r}' + (f', {options}' if options else '') + ')'


class OpSet(Op):
    """Put ``value`` at ``key`` (optionally attached to a lease; ``ignore_value``/``ignore_lease`` keep
    the stored value/lease and only touch the other)."""

    __slots__ = ('key', 'value', 'lease', 'prev_kv', 'ignore_value', 'ignore_lease')
    rpc = 'KV/Put'

    def __init__(self, key: bytes, value: bytes = b'', lease=None, return_previous: bool = False,
                 ignore_value: bool = False, ignore_lease: bool = False):
        self.key = as_key(key)
        if not self.key:
            raise ValueError('OpSet: the empty key is not a valid etcd key')
        self.value = as_key(value, 'value')
        if ignore_value and self.value:
            raise ValueError(f'set of key {self.key!r}: ignore_value=True takes no value')
        if lease is not None and ignore_lease:
            raise ValueError(f'set of key {self.key!r}: give either lease or ignore_lease=True')
        self.lease = lease_id_of(lease) if lease is not None else 0
        self.prev_kv = bool(return_previous)
        self.ignore_value = bool(ignore_value)
        self.ignore_lease = bool(ignore_lease)

    def describe(self) -> str:
        return f'set of key {self.key!r}'

    def __repr__(self):
        value = self.value if len(self.value) <= 32 else self.value[:32] + b'...'
        return f'OpSet({self.key!r}, {value!r})'


class OpDel(Op):
    """Delete one key, a range or a prefix; ``return_previous`` returns the deleted key-values."""

    __slots__ = ('keyset', 'prev_kv')
    rpc = 'KV/DeleteRange'

    def __init__(self, key, return_previous: bool = False):
        self.keyset = KeySet.of(key)
        self.prev_kv = bool(return_previous)

    def describe(self) -> str:
        return f'delete of {self.keyset.describe()}'

    def __repr__(self):
        return f'OpDel({self.keyset!r})'


class Compact(Op):
    """Discard the history before ``revision``; ``physical`` waits until the space is freed."""

    __slots__ = ('revision', 'physical')
    rpc = 'KV/Compact'
    idempotent = True

    def __init__(self, revision: int, physical: bool = False):
        self.revision = _revision(revision, 'compact revision')
        self.physical = bool(physical)

    def describe(self) -> str:
        return f'compact to revision {self.revision}'


COMPARE_RESULTS = ('==', '!=', '<', '>')


class Comp:
    """A comparison of a key's (or range's) target against a value, evaluated by etcd in a txn."""

    __slots__ = ('keyset', 'compare', 'operand')
    target = ''   # etcd's CompareTarget: 'version', 'create', 'mod', 'value', 'lease'

    def __init__(self, key, compare: str, operand):
        self.keyset = KeySet.of(key)
        if compare not in COMPARE_RESULTS:
            raise ValueError(f'{type(self).__name__} on {self.keyset.describe()}: compare must be one '
                             f'of ==, !=, <, >; not {compare!r}')
        self.compare = compare
        self.operand = self._check(operand)

    def _check(self, operand):
        return _revision(operand, f'{type(self).__name__} operand')

    def __repr__(self):
        return f'{type(self).__name__}({self.keyset!r}, {self.compare!r}, {self.operand!r})'


class CompValue(Comp):
    """Compare a key's value (bytes)."""

    __slots__ = ()
    target = 'value'

    def _check(self, operand):
        return as_key(operand, 'CompValue value')


class CompVersion(Comp):
    """Compare a key's version (number of puts since creation; 0 = absent)."""

    __slots__ = ()
    target = 'version'


class CompCreated(Comp):
    """Compare a key's create revision (0 = absent)."""

    __slots__ = ()
    target = 'create'


class CompModified(Comp):
    """Compare a key's last modification revision (0 = absent)."""

    __slots__ = ()
    target = 'mod'


class CompLease(Comp):
    """Compare the lease a key is attached to (0 = none)."""

    __slots__ = ()
    target = 'lease'

    def _check(self, operand):
        return lease_id_of(operand)


class Transaction(Op):
    """If every comparison holds, run ``success``, else ``failure`` - atomically, in one revision.

    ``client.submit(txn)`` returns ``Success`` or raises ``Failed``; nested as an op (``OpTxn``) its
    result is a ``TxnResult`` either way. Each of ``compare``, ``success`` and ``failure`` is a list,
    or a single Comp / Op.
    """

    __slots__ = ('compare', 'success', 'failure')
    rpc = 'KV/Txn'

    def __init__(self, compare=(), success=(), failure=()):
        self.compare = _listed(compare, Comp, 'compare', 'Comp* values (CompValue, CompModified, ...)')
        self.success = _listed(success, _KV_OPS, 'success', 'Op* values (OpGet, OpSet, OpDel, OpTxn)')
        self.failure = _listed(failure, _KV_OPS, 'failure', 'Op* values (OpGet, OpSet, OpDel, OpTxn)')

    @property
    def idempotent(self) -> bool:
        """Whether it is safe to send again after an unknown outcome: only if every op in it is."""
        return all(op.idempotent for op in self.success + self.failure)

    def operation_count(self) -> int:
        """The number etcd checks against --max-txn-ops: the longest of compare, success and failure
        (a nested transaction is checked on its own, so it counts as one here and by itself)."""
        nested = [op.operation_count() for op in self.success + self.failure if isinstance(op, Transaction)]
        return max([len(self.compare), len(self.success), len(self.failure)] + nested)

    def describe(self) -> str:
        keys = [comp.keyset.describe() for comp in self.compare[:3]]
        more = ', ...' if len(self.compare) > 3 else ''
        compares = f'{len(self.compare)} compares on {", ".join(keys)}{more}' if keys else 'no compares'
        return (f'transaction ({compares}; {len(self.success)} success / {len(self.failure)} '
                f'failure ops)')

    def __repr__(self):
        return f'Transaction(compare={self.compare!r}, success={self.success!r}, failure={self.failure!r})'


OpTxn = Transaction
_KV_OPS = (OpGet, OpSet, OpDel, Transaction)      # what a transaction's branches may hold


def _listed(items, kind, what: str, takes: str) -> list:
    """A branch or the compares as a list; one Op or Comp alone stands for a list of one."""
    if isinstance(items, kind):
        return [items]
    if isinstance(items, (Op, Comp, bytes, str)) or not hasattr(items, '__iter__'):
        raise TypeError(f'Transaction {what} takes a list of {takes} or one of them, not {items!r}')
    listed = list(items)
    for item in listed:
        if not isinstance(item, kind):
            raise TypeError(f'Transaction {what} takes {takes}, not {item!r}')
    return listed
