"""``txaioetcd tables list|dump|export|import`` as subprocesses against the session etcd: the catalog,
decoded records of CBOR, index and generated FlatBuffers tables, and an export imported elsewhere."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest_twisted

from txaioetcd import Database, KeySet, pmap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'examples' / 'etcdb'))

from shop_v2 import shop  # noqa: E402  (the generated tables of schemas/shop.fbs)


def _tables(etcd, *args, stdin=None):
    done = subprocess.run([sys.executable, '-m', 'txaioetcd', 'tables', *args, '--endpoints', etcd.url],
                          input=stdin, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


class People(pmap.Schema):
    people = pmap.MapUuidCbor(5)
    people_by_name = pmap.MapStringUuidUuid(6)
    people.attach_index('by_name', people_by_name, lambda p: p['name'], unique=False)


async def _fill(client, prefix):
    db = Database(client, prefix=prefix)
    await db.attach(People())
    await db.attach(shop.Shop())
    ann = uuid.UUID(int=1)
    async with db.begin(write=True) as txn:
        People.people[txn, ann] = {'name': 'ann', 'tags': ['a'], 'raw': b'\x00\xff'}
        shop.customers[txn, ann] = shop.CustomerT(email='ann@example.com', name='Ann')
        shop.orders[txn, 7] = shop.OrderT(customer=ann.bytes, total=shop.MoneyT(cents=250, currency=978),
                                          lines=[shop.LineT(sku='TEA', quantity=2)], coupon='X1')
    return ann


@pytest_twisted.ensureDeferred
async def test_list_and_dump(client, etcd, prefix):
    ann = await _fill(client, prefix)
    where = prefix.decode()
    code, out, err = _tables(etcd, 'list', '--prefix', where)
    assert code == 0, out + err
    assert 'slot     5 people: Uuid -> Cbor; indexes: by_name (slot 6, non-unique)' in out
    assert 'slot     3 orders: Oid -> FlatBuffers shop.Order (sha256 ' in out
    code, out, err = _tables(etcd, 'dump', 'people', '--prefix', where)
    assert code == 0, out + err
    assert [json.loads(line) for line in out.splitlines()] == [
        {'key': str(ann), 'value': {'name': 'ann', 'tags': ['a'], 'raw': {'$base64': 'AP8='}}}]
    code, out, _ = _tables(etcd, 'dump', '6', '--prefix', where)          # by slot: the index map
    assert json.loads(out) == {'key': ['ann', str(ann)], 'value': str(ann)}
    code, out, _ = _tables(etcd, 'dump', 'orders', '--prefix', where)     # through the recorded .bfbs
    order = json.loads(out)
    assert order['key'] == 7
    assert order['value']['total'] == {'cents': 250, 'currency': 978}
    assert order['value']['lines'] == [{'sku': 'TEA', 'quantity': 2, 'price': None}]
    assert (order['value']['coupon'], order['value']['gift'], order['value']['status']) == ('X1', False, 'Placed')
    assert order['value']['customer'] == list(ann.bytes)
    code, out, _ = _tables(etcd, 'dump', 'nothing', '--prefix', where)
    assert code == 1 and out.startswith("error: no table 'nothing' in the catalog under prefix")


@pytest_twisted.ensureDeferred
async def test_export_then_import_elsewhere_twice(client, etcd, prefix):
    await _fill(client, prefix)
    where, copy = prefix.decode(), prefix.decode() + 'copy/'
    code, exported, err = _tables(etcd, 'export', '--prefix', where)
    assert code == 0, err
    lines = [json.loads(line) for line in exported.splitlines()]
    assert {line['table'] for line in lines} >= {'catalog', 'people', 'people_by_name', 'orders', 'customers'}
    code, out, err = _tables(etcd, 'import', '-', '--prefix', copy, stdin=exported)
    assert code == 0 and out.strip() == f'imported {len(lines)} records (0 already there)', out + err
    code, out, err = _tables(etcd, 'import', '-', '--prefix', copy, stdin=exported)     # again: resumable
    assert out.strip() == f'imported 0 records ({len(lines)} already there)'
    original = (await client.get(KeySet(prefix, prefix=True))).kvs
    copied = (await client.get(KeySet(copy.encode(), prefix=True))).kvs
    assert [(kv.key[len(copy):], kv.value) for kv in copied] == \
        [(kv.key[len(prefix):], kv.value) for kv in original if not kv.key.startswith(copy.encode())]
    db = Database(client, prefix=copy.encode())
    assert await db.attach(shop.Shop()) == []                 # the catalog came along
    async with db.begin() as txn:
        assert (await shop.orders[txn, 7]).Coupon() == b'X1'
    code, out, _ = _tables(etcd, 'import', '-', '--prefix', copy, stdin='{"key": "not base64!", "value": ""}\n')
    assert code == 1 and 'line 1: not an exported record' in out
