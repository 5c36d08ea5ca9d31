"""Operations and comparisons: every KV request is a value.

``client.get``/``set``/``delete`` build an ``OpGet``/``OpSet``/``OpDel`` and run it; the very same values
go into a ``Transaction`` (and ``OpTxn`` nests one transaction in another). Each op knows its gateway
RPC, how to write itself as a request (proto3 JSON: bytes base64, 64-bit integers as strings) and how
to read its response, so there is one path from "operation" to "request".
"""

from __future__ import annotations

from binascii import b2a_base64

from .errors import Failed
from .keyset import KeySet, as_key
from .results import Deleted, Header, Range, Revision, Success, TxnResult

__all__ = (
    'Op', 'OpGet', 'OpSet', 'OpDel', 'OpTxn', 'Transaction',
    'Comp', 'CompValue', 'CompVersion', 'CompCreated', 'CompModified', 'CompLease',
)


def b64encode(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode('ascii')


def _key_fields(keyset: KeySet, request: dict) -> dict:
    request['key'] = b64encode(keyset.key)
    if keyset.range_end is not None:
        request['range_end'] = b64encode(keyset.range_end)
    return request


def _lease_id(lease) -> int:
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
    """One KV operation: usable alone (``client.do(op)``) or inside a Transaction."""

    __slots__ = ()
    rpc = ''             # gateway path below the API prefix, e.g. 'kv/range'
    txn_field = ''       # this op's field in a txn RequestOp, e.g. 'request_range'
    idempotent = False   # safe to send again after an unknown outcome

    def request(self) -> dict:
        raise NotImplementedError

    def parse(self, response: dict):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


_SORT_ORDERS = {None: None, 'none': 'NONE', 'ascend': 'ASCEND', 'descend': 'DESCEND'}
_SORT_TARGETS = {None: None, 'key': 'KEY', 'version': 'VERSION', 'create': 'CREATE', 'mod': 'MOD',
                 'value': 'VALUE'}


class OpGet(Op):
    """Range request. ``sort_order``: 'ascend'/'descend'; ``sort_target``: 'key', 'version', 'create',
    'mod' or 'value'; ``revision`` reads a past snapshot; ``serializable`` reads the member's local copy
    (faster, possibly stale); the min/max filters keep keys whose revisions lie in the bounds."""

    __slots__ = ('keyset', '_request')
    rpc = 'kv/range'
    txn_field = 'request_range'
    idempotent = True

    def __init__(self, key, limit: int | None = None, sort_order: str | None = None,
                 sort_target: str | None = None, revision: int | None = None,
                 serializable: bool = False, keys_only: bool = False, count_only: bool = False,
                 min_mod_revision: int | None = None, max_mod_revision: int | None = None,
                 min_create_revision: int | None = None, max_create_revision: int | None = None):
        self.keyset = KeySet.of(key)
        request = _key_fields(self.keyset, {})
        if limit:
            request['limit'] = _revision(limit, 'limit')
        if sort_order not in _SORT_ORDERS:
            raise ValueError(f'sort_order must be one of ascend, descend, none; not {sort_order!r}')
        if sort_target not in _SORT_TARGETS:
            raise ValueError(f'sort_target must be one of {", ".join(k for k in _SORT_TARGETS if k)}; '
                             f'not {sort_target!r}')
        if sort_order:
            request['sort_order'] = _SORT_ORDERS[sort_order]
        if sort_target:
            request['sort_target'] = _SORT_TARGETS[sort_target]
        for name, value in (('revision', revision), ('min_mod_revision', min_mod_revision),
                            ('max_mod_revision', max_mod_revision),
                            ('min_create_revision', min_create_revision),
                            ('max_create_revision', max_create_revision)):
            if value is not None:
                request[name] = _revision(value, name)
        if serializable:
            request['serializable'] = True
        if keys_only:
            request['keys_only'] = True
        if count_only:
            request['count_only'] = True
        self._request = request

    def request(self) -> dict:
        return self._request

    parse = staticmethod(Range.parse)

    def describe(self) -> str:
        return f'get of {self.keyset.describe()}'

    def __repr__(self):
        options = {k: v for k, v in self._request.items() if k not in ('key', 'range_end')}
        return f'OpGet({self.keyset!r}' + (f', {options}' if options else '') + ')'


class OpSet(Op):
    """Put ``value`` at ``key`` (optionally attached to a lease; ``ignore_value``/``ignore_lease`` keep
    the stored value/lease and only touch the other)."""

    __slots__ = ('key', 'value', '_request')
    rpc = 'kv/put'
    txn_field = 'request_put'

    def __init__(self, key: bytes, value: bytes = b'', lease=None, return_previous: bool = False,
                 ignore_value: bool = False, ignore_lease: bool = False):
        self.key = as_key(key)
        if not self.key:
            raise ValueError('OpSet: the empty key is not a valid etcd key')
        self.value = as_key(value, 'value')
        request = {'key': b64encode(self.key)}
        if ignore_value:
            if self.value:
                raise ValueError(f'set of key {self.key!r}: ignore_value=True takes no value')
            request['ignore_value'] = True
        elif self.value:
            request['value'] = b64encode(self.value)
        if lease is not None:
            if ignore_lease:
                raise ValueError(f'set of key {self.key!r}: give either lease or ignore_lease=True')
            lease_id = _lease_id(lease)
            if lease_id:
                request['lease'] = lease_id
        elif ignore_lease:
            request['ignore_lease'] = True
        if return_previous:
            request['prev_kv'] = True
        self._request = request

    def request(self) -> dict:
        return self._request

    parse = staticmethod(Revision.parse)

    def describe(self) -> str:
        return f'set of key {self.key!r}'

    def __repr__(self):
        value = self.value if len(self.value) <= 32 else self.value[:32] + b'...'
        return f'OpSet({self.key!r}, {value!r})'


class OpDel(Op):
    """Delete one key, a range or a prefix; ``return_previous`` returns the deleted key-values."""

    __slots__ = ('keyset', '_request')
    rpc = 'kv/deleterange'
    txn_field = 'request_delete_range'

    def __init__(self, key, return_previous: bool = False):
        self.keyset = KeySet.of(key)
        self._request = _key_fields(self.keyset, {'prev_kv': True} if return_previous else {})

    def request(self) -> dict:
        return self._request

    parse = staticmethod(Deleted.parse)

    def describe(self) -> str:
        return f'delete of {self.keyset.describe()}'

    def __repr__(self):
        return f'OpDel({self.keyset!r})'


_RESULTS = {'==': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER'}


class Comp:
    """A comparison of a key's (or range's) target against a value, evaluated by etcd in a txn."""

    __slots__ = ('keyset', 'compare', 'operand')
    target = ''   # etcd's CompareTarget: VERSION, CREATE, MOD, VALUE, LEASE
    field = ''    # the request field that carries the operand

    def __init__(self, key, compare: str, operand):
        self.keyset = KeySet.of(key)
        if compare not in _RESULTS:
            raise ValueError(f'{type(self).__name__} on {self.keyset.describe()}: compare must be one '
                             f'of ==, !=, <, >; not {compare!r}')
        self.compare = compare
        self.operand = self._check(operand)

    def _check(self, operand):
        return _revision(operand, f'{type(self).__name__} operand')

    def _operand_json(self):
        return self.operand

    def request(self) -> dict:
        request = _key_fields(self.keyset, {'target': self.target, 'result': _RESULTS[self.compare]})
        request[self.field] = self._operand_json()
        return request

    def __repr__(self):
        return f'{type(self).__name__}({self.keyset!r}, {self.compare!r}, {self.operand!r})'


class CompValue(Comp):
    """Compare a key's value (bytes)."""

    __slots__ = ()
    target, field = 'VALUE', 'value'

    def _check(self, operand):
        return as_key(operand, 'CompValue value')

    def _operand_json(self):
        return b64encode(self.operand)


class CompVersion(Comp):
    """Compare a key's version (number of puts since creation; 0 = absent)."""

    __slots__ = ()
    target, field = 'VERSION', 'version'


class CompCreated(Comp):
    """Compare a key's create revision (0 = absent)."""

    __slots__ = ()
    target, field = 'CREATE', 'create_revision'


class CompModified(Comp):
    """Compare a key's last modification revision (0 = absent)."""

    __slots__ = ()
    target, field = 'MOD', 'mod_revision'


class CompLease(Comp):
    """Compare the lease a key is attached to (0 = none)."""

    __slots__ = ()
    target, field = 'LEASE', 'lease'

    def _check(self, operand):
        return _lease_id(operand)


class Transaction(Op):
    """If every comparison holds, run ``success``, else ``failure`` - atomically, in one revision.

    ``client.submit(txn)`` returns ``Success`` or raises ``Failed``; nested as an op (``OpTxn``) its
    result is a ``TxnResult`` either way. Each of ``compare``, ``success`` and ``failure`` is a list,
    or a single Comp / Op.
    """

    __slots__ = ('compare', 'success', 'failure')
    rpc = 'kv/txn'
    txn_field = 'request_txn'

    def __init__(self, compare=(), success=(), failure=()):
        self.compare = _listed(compare, Comp, 'compare', 'Comp* values (CompValue, CompModified, ...)')
        self.success = _listed(success, Op, 'success', 'Op* values (OpGet, OpSet, OpDel, OpTxn)')
        self.failure = _listed(failure, Op, 'failure', 'Op* values (OpGet, OpSet, OpDel, OpTxn)')

    @property
    def idempotent(self) -> bool:
        """Whether it is safe to send again after an unknown outcome: only if every op in it is."""
        return all(op.idempotent for op in self.success + self.failure)

    def request(self) -> dict:
        request = {}
        if self.compare:
            request['compare'] = [comp.request() for comp in self.compare]
        if self.success:
            request['success'] = [{op.txn_field: op.request()} for op in self.success]
        if self.failure:
            request['failure'] = [{op.txn_field: op.request()} for op in self.failure]
        return request

    def operation_count(self) -> int:
        """The number etcd checks against --max-txn-ops: the longest of compare, success and failure
        (a nested transaction is checked on its own, so it counts as one here and by itself)."""
        nested = [op.operation_count() for op in self.success + self.failure if isinstance(op, Transaction)]
        return max([len(self.compare), len(self.success), len(self.failure)] + nested)

    def parse(self, response: dict) -> TxnResult:
        succeeded = bool(response.get('succeeded', False))
        ops = self.success if succeeded else self.failure
        raw = response.get('responses') or ()
        return TxnResult(Header.parse(response.get('header')), succeeded,
                         [op.parse(_unwrap(op, item)) for op, item in zip(ops, raw)])

    def outcome(self, response: dict, request: str | None = None):
        """Top-level result: Success, or raise Failed with the failure branch's results."""
        result = self.parse(response)
        if result.succeeded:
            return Success(result.header, result.responses)
        raise Failed(result.responses, result.header, request or self.describe())

    def describe(self) -> str:
        keys = [comp.keyset.describe() for comp in self.compare[:3]]
        more = ', ...' if len(self.compare) > 3 else ''
        compares = f'{len(self.compare)} compares on {", ".join(keys)}{more}' if keys else 'no compares'
        return (f'transaction ({compares}; {len(self.success)} success / {len(self.failure)} '
                f'failure ops)')

    def __repr__(self):
        return f'Transaction(compare={self.compare!r}, success={self.success!r}, failure={self.failure!r})'


OpTxn = Transaction


def _listed(items, kind: type, what: str, takes: str) -> list:
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

_RESPONSE_FIELDS = {'request_range': 'response_range', 'request_put': 'response_put',
                    'request_delete_range': 'response_delete_range', 'request_txn': 'response_txn'}


def _unwrap(op: Op, item: dict) -> dict:
    # A ResponseOp holds exactly one of response_range/_put/_delete_range/_txn; proto3 JSON drops an
    # empty one entirely, so a missing field means "the default response".
    return item.get(_RESPONSE_FIELDS[op.txn_field]) or {}
