"""``python -m txaioetcd demo``: real work through the client against a private etcd, narrated.

It writes, reads, ranges, transacts (one compare-and-set that succeeds, one that fails), deletes and
compacts, printing each step with the revisions etcd reported - a quick check that a machine, an
etcd and this client work together.
"""

from __future__ import annotations

from . import Client, CompModified, CompValue, Failed, KeySet, OpGet, OpSet, Transaction
from .errors import Compacted


async def run_demo(reactor, url: str, say=print) -> None:
    client = Client(reactor, url=url, timeout=10)
    try:
        status = await client.status()
        say(f'connected to etcd {status.version} at {url} (revision {status.header.revision}, '
            f'member {status.header.member_id:x}, leader: {status.is_leader})')
        base = b'txaioetcd-demo/'

        first = await client.set(base + b'greeting', b'hello')
        say(f'set greeting = hello                 -> revision {first.revision}')
        second = await client.set(base + b'greeting', b'hello, etcd', return_previous=True)
        say(f'set greeting = hello, etcd           -> revision {second.revision} '
            f'(previous value {second.prev_kv.value!r})')

        got = await client.get(base + b'greeting')
        kv = got.kvs[0]
        say(f'get greeting                         -> {kv.value!r} (version {kv.version}, '
            f'modified at {kv.mod_revision})')

        for i in range(5):
            await client.set(base + b'items/%d' % i, b'item %d' % i)
        items = await client.get(KeySet(base + b'items/', prefix=True))
        say(f'prefix items/                        -> {items.count} keys: '
            + ', '.join(kv.key[len(base):].decode() for kv in items.kvs))
        window = await client.get(KeySet(base + b'items/1', base + b'items/3'))
        say('range [items/1, items/3)             -> '
            + ', '.join(kv.key[len(base):].decode() for kv in window.kvs))

        cas = Transaction(compare=[CompModified(base + b'greeting', '==', kv.mod_revision)],
                          success=[OpSet(base + b'greeting', b'updated by compare-and-set')],
                          failure=[OpGet(base + b'greeting')])
        done = await client.submit(cas)
        say(f'txn: greeting unchanged since {kv.mod_revision}? yes -> set, revision {done.revision}')
        try:
            await client.submit(Transaction(compare=[CompValue(base + b'greeting', '==', b'stale')],
                                            success=[OpSet(base + b'greeting', b'never written')],
                                            failure=[OpGet(base + b'greeting')]))
        except Failed as failed:
            say(f'txn: greeting == "stale"? no -> Failed, current value '
                f'{failed.responses[0].kvs[0].value!r}')

        deleted = await client.delete(KeySet(base, prefix=True), return_previous=True)
        say(f'delete prefix txaioetcd-demo/        -> {deleted.deleted} keys removed')

        await client.compact(deleted.header.revision)
        say(f'compact to revision {deleted.header.revision}')
        try:
            await client.get(base + b'greeting', revision=first.revision)
        except Compacted:
            say(f'get at old revision {first.revision}              -> Compacted, as expected')
        say('demo finished: every call above went to a real etcd')
    finally:
        await client.close()
