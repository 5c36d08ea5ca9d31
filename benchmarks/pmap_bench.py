"""Persistent maps and Database transactions against the raw client, in the same run.

    python benchmarks/pmap_bench.py [--runs 5] [--seconds 2] [--url URL] [--json out.json]

Without ``--url`` it starts an embedded etcd (as client_bench.py does) and stops it afterwards.

Workloads, each one at a time (sequential) unless noted:

    raw get               client.get(key) of a stored CBOR user
    pmap read txn         async with db.begin(): await users[txn, oid]
    raw get + CAS         client.get(key), then Transaction(compare=[CompModified(key, '==', rev)],
                          success=[OpSet(key, new CBOR bytes)]) - the work a read-write transaction does
    pmap write txn        async with db.begin(write=True): user = await users[txn, oid];
                          users[txn, oid] = user (CBOR), committed as one compare-and-set
    raw CAS               the CAS alone (for reference)
    pmap read txn (FB)    the read transaction on a generated FlatBuffers table (benchmarks/fbs/bench.fbs)
                          of the same user: the record comes back as a zero-copy reader
    pmap write txn (FB)   the write transaction on it: read, unpack() to the object API, age + 1, write
    bulk insert           10,000 new users in write transactions of 100 (users/s)
    select 10k            one read transaction selecting 10,000 users (users/s)

The ratios printed compare pmap with the raw client doing the same round trips (targets: write
transaction >= 80 % of raw get + CAS, read transaction >= 80 % of raw get). The CBOR share is the CPU
of ``encode_value`` + ``decode_value`` of one user (timed in a loop) over the CPU of one pmap write
transaction (target < 10 %). FlatBuffers against CBOR: the FB write transaction >= 0.85x the CBOR one;
a lazy read of two fields of a 20-field record (cast + two getters) faster than the full CBOR decode
of the same record (both timed in a loop, CPU microseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from twisted.internet.defer import Deferred

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (Summary, environment, load_average, print_table,  # noqa: E402
                     remove_and_close, run_window, sleep)
from client_bench import etcd_cpu_seconds, run  # noqa: E402

from txaioetcd import Client, CompModified, Database, KeySet, OpSet, Transaction, pmap  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fbs'))
from gen import bench as fbs  # noqa: E402  (generated from benchmarks/fbs/bench.fbs)

USERS = 1000
BULK = 10_000
BATCH = 100


class User:
    def __init__(self, oid, name, email, age, tags):
        self.oid, self.name, self.email, self.age, self.tags = oid, name, email, age, tags

    def marshal(self):
        return {'oid': self.oid.bytes, 'name': self.name, 'email': self.email, 'age': self.age,
                'tags': self.tags}

    @staticmethod
    def parse(data):
        return User(uuid.UUID(bytes=data['oid']), data['name'], data['email'], data['age'], data['tags'])


def make_user(i: int) -> User:
    return User(uuid.UUID(int=i + 1), f'user {i}', f'user{i}@example.com', 20 + i % 50, ['a', 'b', 'c'])


def make_fb_user(i: int):
    user = make_user(i)
    return fbs.UserT(oid=list(user.oid.bytes), name=user.name, email=user.email, age=user.age, tags=user.tags)


def make_wide():
    """A 20-field record, as the generated object and as the dict the CBOR table stores."""
    wide = fbs.WideT(f01=1 << 40, f02=2, f03=3, f04=4, f05=-5, f06=6, f07=7, f08=8, f09=9, f10=10,
                     s11='eleven', s12='twelve', s13='thirteen', s14='fourteen', s15='fifteen', s16='sixteen',
                     d17=1.5, d18=2.5, b19=True, b20=False)
    return wide, dict(vars(wide))


class Bench:
    def __init__(self, client: Client, prefix: bytes):
        self.client = client
        self.db = Database(client, prefix=prefix)
        self.users = pmap.MapUuidCbor(1, marshal=User.marshal, unmarshal=User.parse, name='users')
        self.bulk = pmap.MapUuidCbor(2, marshal=User.marshal, unmarshal=User.parse, name='bulk')
        self.oids = [make_user(i).oid for i in range(USERS)]
        self.raw_keys = [prefix + self.users.encode_key(oid) for oid in self.oids]
        self.users_fb = fbs.users_fb
        self.bulk_round = 0

    async def populate(self):
        for start in range(0, USERS, BATCH):
            async with self.db.begin(write=True) as txn:
                for i in range(start, start + BATCH):
                    self.users[txn, self.oids[i]] = make_user(i)
            async with self.db.begin(write=True) as txn:
                for i in range(start, start + BATCH):
                    self.users_fb[txn, self.oids[i]] = make_fb_user(i)

    def calls(self):
        client, db, users, oids, keys = self.client, self.db, self.users, self.oids, self.raw_keys
        value = users.encode_value(oids[0], make_user(0))

        def raw_get(i):
            return client.get(keys[i % USERS])

        async def read_txn(i):
            async with db.begin() as txn:
                return await users[txn, oids[i % USERS]]

        async def raw_get_cas(i):
            key = keys[i % USERS]
            kv = (await client.get(key)).kvs[0]
            return await client.submit(Transaction(compare=[CompModified(key, '==', kv.mod_revision)],
                                                   success=[OpSet(key, value)]))

        async def write_txn(i):
            async with db.begin(write=True) as txn:
                oid = oids[i % USERS]
                user = await users[txn, oid]
                user.age += 1
                users[txn, oid] = user

        users_fb = self.users_fb

        async def read_txn_fb(i):
            async with db.begin() as txn:
                return await users_fb[txn, oids[i % USERS]]

        async def write_txn_fb(i):
            async with db.begin(write=True) as txn:
                oid = oids[i % USERS]
                user = (await users_fb[txn, oid]).unpack()
                user.age += 1
                users_fb[txn, oid] = user

        cas_revision = {}   # key -> its revision, as the last CAS left it

        async def raw_cas(i):
            if i == 0:          # a new run: other workloads have written the keys since
                cas_revision.clear()
            key = keys[i % USERS]
            revision = cas_revision.get(key)
            if revision is None:
                revision = (await client.get(key)).kvs[0].mod_revision
            done = await client.submit(Transaction(compare=[CompModified(key, '==', revision)],
                                                   success=[OpSet(key, value)]))
            cas_revision[key] = done.revision

        return {
            'raw get': raw_get,
            'pmap read txn': lambda i: Deferred.fromCoroutine(read_txn(i)),
            'raw get + CAS': lambda i: Deferred.fromCoroutine(raw_get_cas(i)),
            'pmap write txn': lambda i: Deferred.fromCoroutine(write_txn(i)),
            'raw CAS': lambda i: Deferred.fromCoroutine(raw_cas(i)),
            'pmap read txn (FB)': lambda i: Deferred.fromCoroutine(read_txn_fb(i)),
            'pmap write txn (FB)': lambda i: Deferred.fromCoroutine(write_txn_fb(i)),
        }

    async def bulk_insert(self):
        """10,000 users in transactions of 100 → (users/s, CPU ms per user)."""
        self.bulk_round += 1
        base = self.bulk_round * BULK
        from _common import cpu_seconds
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for start in range(0, BULK, BATCH):
            async with self.db.begin(write=True) as txn:
                for i in range(start, start + BATCH):
                    user = make_user(base + i)
                    self.bulk[txn, user.oid] = user
        return BULK / (time.perf_counter() - t0), 1000 * (cpu_seconds() - cpu0) / BULK

    async def select_all(self):
        from _common import cpu_seconds
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        count = 0
        async with self.db.begin() as txn:
            async for _ in self.bulk.select(txn, limit=BULK):
                count += 1
        if count != BULK:
            raise RuntimeError(f'select returned {count} users, expected {BULK}')
        return count / (time.perf_counter() - t0), 1000 * (cpu_seconds() - cpu0) / count

    def cbor_ms(self, rounds: int = 20000) -> float:
        """CPU ms of encode_value + decode_value of one user (CBOR and the marshal hooks)."""
        from _common import cpu_seconds
        users, user, oid = self.users, make_user(7), self.oids[7]
        cpu0 = cpu_seconds()
        for _ in range(rounds):
            users.decode_value(oid, users.encode_value(oid, user))
        return 1000 * (cpu_seconds() - cpu0) / rounds


    def value_us(self, rounds: int = 20000) -> dict:
        """CPU microseconds per value: FlatBuffers and CBOR encode and decode, and the lazy read."""
        from _common import cpu_seconds
        wide, plain = make_wide()
        wide_fb, wide_cbor = fbs.wide_fb, pmap.MapOidCbor(13, name='wide_cbor')
        fb_bytes, cbor_bytes = wide_fb.encode_value(1, wide), wide_cbor.encode_value(1, plain)

        def lazy_two():
            record = wide_fb.decode_value(1, fb_bytes)
            return record.F03(), record.S12()

        loops = {
            'FB build (20 fields)': lambda: wide_fb.encode_value(1, wide),
            'CBOR encode (20 fields)': lambda: wide_cbor.encode_value(1, plain),
            'FB lazy read of 2 fields': lazy_two,
            'CBOR full decode': lambda: wide_cbor.decode_value(1, cbor_bytes),
            'FB unpack (20 fields)': lambda: wide_fb.decode_value(1, fb_bytes).unpack(),
        }
        out = {}
        for name, fn in loops.items():
            cpu0 = cpu_seconds()
            for _ in range(rounds):
                fn()
            out[name] = 1e6 * (cpu_seconds() - cpu0) / rounds
        return out


WORKLOADS = ['raw get', 'pmap read txn', 'pmap read txn (FB)', 'raw get + CAS', 'pmap write txn',
             'pmap write txn (FB)', 'raw CAS']


async def main(reactor, args, etcd_info: dict):
    env = environment(reactor)
    client = Client(reactor, args.url)
    prefix = b'/txaioetcd-pmap-bench/%d-%s/' % (os.getpid(), os.urandom(4).hex().encode())
    bench = Bench(client, prefix)
    print(f'pmap benchmark: python {env["python"]}, Twisted {env["twisted"]}, etcd {etcd_info.get("etcd")}; '
          f'{args.runs} runs x ~{args.seconds:g} s; load average {load_average()}', flush=True)
    summaries = {name: Summary(name, 1, []) for name in WORKLOADS}
    bulk, selected = [], []
    try:
        await bench.populate()
        calls = bench.calls()
        for number in range(args.runs):
            for name in WORKLOADS:
                await run_window(calls[name], 1, 0.3, 1)
                etcd_before = etcd_cpu_seconds(getattr(args, 'etcd_pid', None))
                result = await run_window(calls[name], 1, args.seconds, 100)
                etcd_after = etcd_cpu_seconds(getattr(args, 'etcd_pid', None))
                if etcd_before is not None and etcd_after is not None:
                    result.server_seconds = etcd_after - etcd_before
                summaries[name].runs.append(result)
                etcd = '' if result.server_ms_per_op is None else f' {result.server_ms_per_op:7.3f} etcd ms/op'
                print(f'  run {number + 1}/{args.runs} {name:<19} {result.ops_per_s:>8,.1f} ops/s '
                      f'{result.cpu_ms_per_op:7.3f} CPU ms/op{etcd}', flush=True)
                await sleep(reactor, 0.2)
            bulk.append(await bench.bulk_insert())
            selected.append(await bench.select_all())
            print(f'  run {number + 1}/{args.runs} bulk insert {bulk[-1][0]:,.0f} users/s; '
                  f'select {selected[-1][0]:,.0f} users/s', flush=True)
            await client.delete(KeySet(prefix + bench.bulk.encode_key(uuid.UUID(int=0))[:2], prefix=True))
        print_table(f'persistent maps vs raw client (median of {args.runs} runs, one at a time)',
                    [summaries[n] for n in WORKLOADS], targets=False)
        med = lambda pairs, i: sorted(p[i] for p in pairs)[len(pairs) // 2]  # noqa: E731
        print(f'  bulk insert (10,000 users, transactions of 100): {med(bulk, 0):,.0f} users/s, '
              f'{med(bulk, 1):.3f} CPU ms/user')
        print(f'  select of 10,000 users in one read transaction: {med(selected, 0):,.0f} users/s, '
              f'{med(selected, 1):.4f} CPU ms/user')
        read_ratio = summaries['pmap read txn'].ops_per_s / summaries['raw get'].ops_per_s
        write_ratio = summaries['pmap write txn'].ops_per_s / summaries['raw get + CAS'].ops_per_s
        cbor = bench.cbor_ms()
        cbor_share = cbor / summaries['pmap write txn'].cpu_ms_per_op
        print(f'  read txn / raw get        = {read_ratio:6.1%}  (target >= 80%)  '
              f'{"PASS" if read_ratio >= 0.8 else "MISS"}')
        print(f'  write txn / raw get + CAS = {write_ratio:6.1%}  (target >= 80%)  '
              f'{"PASS" if write_ratio >= 0.8 else "MISS"}')
        print(f'  CBOR encode+decode {cbor:.4f} ms = {cbor_share:6.1%} of a write txn\'s CPU '
              f'(target < 10%)  {"PASS" if cbor_share < 0.1 else "MISS"}')
        fb_write = summaries['pmap write txn (FB)'].ops_per_s / summaries['pmap write txn'].ops_per_s
        fb_read = summaries['pmap read txn (FB)'].ops_per_s / summaries['pmap read txn'].ops_per_s
        values = [bench.value_us() for _ in range(3)]
        value_us = {name: sorted(v[name] for v in values)[1] for name in values[0]}
        print(f'  FB write txn / CBOR write txn = {fb_write:6.1%}  (target >= 85%)  '
              f'{"PASS" if fb_write >= 0.85 else "MISS"};  FB read txn / CBOR read txn = {fb_read:6.1%}')
        for name, us in value_us.items():
            print(f'  {name:<26} {us:7.2f} CPU us per value (median of 3 loops of 20,000)')
        lazy, full = value_us['FB lazy read of 2 fields'], value_us['CBOR full decode']
        print(f'  lazy 2-field read / full CBOR decode = {lazy / full:5.2f}x  (target < 1)  '
              f'{"PASS" if lazy < full else "MISS"}')
        if args.json:
            with open(args.json, 'w') as out:
                json.dump({'benchmark': 'pmap_bench', 'environment': env,
                           'results': [summaries[n].as_dict() for n in WORKLOADS],
                           'bulk_users_per_s': [b[0] for b in bulk], 'select_users_per_s': [s[0] for s in selected],
                           'read_ratio': read_ratio, 'write_ratio': write_ratio, 'cbor_ms': cbor,
                           'cbor_share': cbor_share, 'fb_write_ratio': fb_write, 'fb_read_ratio': fb_read,
                           'value_cpu_us': value_us}, out, indent=2)
    finally:
        await remove_and_close(client, prefix)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=5, help='runs per workload; medians are shown (default 5)')
    parser.add_argument('--seconds', type=float, default=2.0)
    parser.add_argument('--url', help='use this etcd instead of starting one')
    parser.add_argument('--json', help='also write the results to this file')
    return parser.parse_args(argv)


if __name__ == '__main__':
    run(parse_args(), main)
