"""Mistakes with tables are reported, not silently wrong: a read used without ``await``, a table
indexed without a transaction, and a transaction that ends with a read nobody awaited - each gives an
error that says what to write instead, and nothing is written."""

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks

from txaioetcd import Database, KeySet, ReadNotAwaited, TransactionError, pmap


class User:
    def __init__(self, name, visits=0):
        self.name, self.visits = name, visits

    def marshal(self):
        return {'name': self.name, 'visits': self.visits}

    @staticmethod
    def parse(data):
        return User(data['name'], data['visits'])


def _users():
    return pmap.MapStringCbor(1, name='users', marshal=User.marshal, unmarshal=User.parse)


async def _stored(client, prefix):
    return (await client.get(KeySet(prefix, prefix=True))).kvs


@pytest_twisted.ensureDeferred
async def test_a_read_used_without_await_says_to_await_it(client, prefix):
    db, users = Database(client, prefix=prefix), _users()
    async with db.begin(write=True) as txn:
        users[txn, 'alice'] = User('alice')
    async with db.begin() as txn:
        user = users[txn, 'alice']
        with pytest.raises(AttributeError, match=r"users\[txn, 'alice'\] is a Deferred, not the record.*"
                                                 r"await it first"):
            user.name
        bob = users[txn, 'bob']
        with pytest.raises(TypeError, match=r"await it .*before testing it"):
            bool(bob)
        exists = users.exists(txn, 'alice')
        with pytest.raises(TypeError, match=r"users.exists\(txn, 'alice'\) is a Deferred"):
            if exists:
                pass
        assert not hasattr(user, 'name')
        # Awaited, the same reads give the records - and the transaction ends cleanly.
        assert (await user).name == 'alice'
        assert await bob is None and await exists is True


@pytest_twisted.ensureDeferred
async def test_a_transaction_with_a_read_never_awaited_writes_nothing(client, prefix):
    db, users = Database(client, prefix=prefix), _users()
    with pytest.raises(ReadNotAwaited) as raised:
        async with db.begin(write=True) as txn:
            if users[txn, 'alice'] is None:         # always False: a Deferred is not None
                users[txn, 'alice'] = User('wrong branch')
            else:
                users[txn, 'alice'] = User('alice', visits=1)
    assert raised.value.reads == ["users[txn, 'alice']"]
    message = str(raised.value)
    assert "users[txn, 'alice']" in message and 'await' in message and 'Nothing was written' in message
    assert isinstance(raised.value, TransactionError)
    assert txn.state == 'aborted'
    assert await _stored(client, prefix) == []

    # Read-only transactions are checked too, and so are counts.
    with pytest.raises(ReadNotAwaited, match=r'users.count\(txn\)'):
        async with db.begin() as txn:
            users.count(txn)


@pytest_twisted.ensureDeferred
async def test_db_run_reports_a_forgotten_await_instead_of_retrying(client, prefix):
    db, users = Database(client, prefix=prefix), _users()
    calls = []

    def visit(txn):                                  # forgot the await: user is a Deferred
        calls.append(1)
        user = users[txn, 'alice']
        users[txn, 'alice'] = User('alice', 1 if user is None else 2)

    with pytest.raises(ReadNotAwaited):
        await db.run(visit)
    assert calls == [1] and await _stored(client, prefix) == []


@pytest_twisted.ensureDeferred
async def test_reads_taken_by_callbacks_or_inline_callbacks_count_as_awaited(client, prefix):
    db, users = Database(client, prefix=prefix), _users()
    await db.run(lambda txn: users.__setitem__((txn, 'alice'), User('alice', 3)))

    def visits(txn):
        return users[txn, 'alice'].addCallback(lambda user: user.visits)
    assert await db.run(visits) == 3

    @inlineCallbacks
    def bump(txn):
        user = yield users[txn, 'alice']
        user.visits += 1
        users[txn, 'alice'] = user
    await db.run(bump)
    async with db.begin() as txn:
        assert (await users[txn, 'alice']).visits == 4


@pytest_twisted.ensureDeferred
async def test_a_table_indexed_without_a_transaction_says_to_pass_one(client, prefix):
    db, users = Database(client, prefix=prefix), _users()
    with pytest.raises(TypeError, match=r"users: index a table as tab\[txn, key\] with a transaction from "
                                        r"db.begin\(\), not as tab\['alice'\]"):
        users['alice']
    with pytest.raises(TypeError, match=r'needs a transaction from db.begin\(\).*not Database.*'
                                        r'start a transaction with db.begin\(\)'):
        users[db, 'alice']
    with pytest.raises(TypeError, match=r'needs a transaction from db.begin\(\).*not NoneType None'):
        users[None, 'alice']
    with pytest.raises(TypeError, match=r'tab\[txn, key\] = obj needs a transaction'):
        users[db, 'alice'] = User('alice')
    with pytest.raises(TypeError, match=r'del tab\[txn, key\] needs a transaction'):
        del users[db, 'alice']
    with pytest.raises(TypeError, match='index a table as'):
        users['a', 'b', 'c']
    for call in (lambda: users.exists(db, 'alice'), lambda: users.count(db),
                 lambda: users.count_range(db, 'a', 'b'), lambda: users.truncate(db)):
        with pytest.raises(TypeError, match=r'needs a transaction from db.begin\(\)'):
            call()
    with pytest.raises(TypeError, match=r'select\(txn, ...\) needs a transaction'):
        async for _ in users.select(db):
            pass
    assert await _stored(client, prefix) == []
