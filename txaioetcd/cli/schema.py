"""``python -m txaioetcd schema gen|check|show``: generate tables from a service's .fbs, check a schema
against the catalog in etcd, and show what the catalog holds.

Exit codes: 0 done, 1 a failure (stale code, an incompatible schema, etcd unreachable), 2 usage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cbor2

__all__ = ('add_parser', 'run')


def add_parser(commands):
    schema = commands.add_parser('schema', help='FlatBuffers service schemas: generate tables, check and '
                                 'show the catalog')
    verbs = schema.add_subparsers(dest='verb', required=True)
    gen = verbs.add_parser('gen', help='write Python tables (and flatc\'s classes, the .bfbs) for .fbs files')
    gen.add_argument('files', nargs='+', type=Path, metavar='FILE.fbs')
    gen.add_argument('--out', required=True, type=Path, help='the folder to write into (one per schema set)')
    gen.add_argument('--check', action='store_true', help='write nothing; fail when the files are stale')
    check = verbs.add_parser('check', help='compare a schema with the catalog in etcd (writes nothing)')
    check.add_argument('file', type=Path, metavar='FILE.fbs|FILE.bfbs')
    show = verbs.add_parser('show', help='what the catalog holds, per slot')
    for sub in (check, show):
        sub.add_argument('--url', '--endpoints', dest='url', help='etcd to use (or set ETCDCTL_ENDPOINTS / ETCD_URL)')
        sub.add_argument('--prefix', default='', help='the Database prefix (UTF-8)')
        sub.add_argument('--timeout', type=float, default=10.0, help='seconds for each request (default 10)')
    show.add_argument('-w', '--write-out', choices=('simple', 'json'), default='simple')
    return schema


def run(args, parser) -> int:
    from ..fbs._codegen import CodegenError
    try:
        if args.verb == 'gen':
            return _gen(args)
        url = args.url or os.environ.get('ETCDCTL_ENDPOINTS', '').split(',')[0] or os.environ.get('ETCD_URL')
        if not url:
            parser.error('give --url (or set ETCDCTL_ENDPOINTS or ETCD_URL)')
        if '://' not in url:
            url = 'http://' + url
        return _react(url, args)
    except CodegenError as error:
        print(f'error: {error}')
        return 1


def _gen(args) -> int:
    from ..fbs._codegen import generate
    failed = 0
    for fbs in args.files:
        changed = generate(fbs, args.out, check=args.check)
        if args.check and changed:
            failed = 1
            print(f'stale: {", ".join(str(args.out / name) for name in changed)} (regenerate: python -m '
                  f'txaioetcd schema gen {fbs} --out {args.out})')
        elif args.check:
            print(f'{fbs}: {args.out} is up to date')
        else:
            print(f'{fbs}: wrote {", ".join(changed)}' if changed else f'{fbs}: {args.out} was up to date')
    return failed


def _react(url: str, args) -> int:
    from ..fbs._codegen import CodegenError
    from ._run import react_command

    async def body(reactor):
        from ..client import Client
        client = Client(reactor, url=url, timeout=args.timeout)
        try:
            return await (_check(client, args) if args.verb == 'check' else _show(client, args))
        finally:
            await client.close()
    return react_command(body, errors=(CodegenError,))


_VERDICTS = {'new': 'not in the catalog yet (attach records it)', 'same': 'matches the catalog',
             'completed': 'matches; attach completes the record of an earlier release',
             'upgraded': 'a compatible evolution: attach updates the record',
             'older': 'compatible: the catalog holds a newer version', 'mismatch': 'INCOMPATIBLE'}


async def _check(client, args) -> int:
    from ..database import Database
    from ..fbs._codegen import CodegenError, compile_binary_schema, conform, find_flatc, schema_from_binary
    from ..pmap._schema import catalog_key

    path: Path = args.file
    if path.suffix == '.bfbs':
        bfbs, flatc = path.read_bytes(), None      # what schema gen wrote: no compiler needed
    else:
        try:
            flatc = find_flatc()
        except CodegenError as error:
            raise CodegenError(f'{error}. Without it, check the .bfbs that schema gen wrote beside the '
                               f'generated code: schema check DIR/{path.stem}.bfbs') from None
        bfbs = compile_binary_schema(path, flatc)
    schema = schema_from_binary(bfbs, path.name)
    db = Database(client, prefix=args.prefix.encode('utf-8'), readonly=True)
    async with db.begin() as txn:
        verdicts = await schema.check(txn)
    failed = False
    for verdict in verdicts:
        print(f'slot {verdict.slot:5} {verdict.table}: {_VERDICTS[verdict.status]}'
              + (f' - {verdict.detail}' if verdict.detail and verdict.status != 'same' else ''))
        failed |= verdict.status == 'mismatch'
        if flatc is None or verdict.status in ('new', 'same', 'older'):
            continue
        stored = await client.get(db.prefix + catalog_key(verdict.slot))
        old = cbor2.loads(stored.kvs[0].value).get('bfbs') if stored.kvs else None
        if old is not None:
            reason = conform(old, path, flatc)
            print(f'           flatc --conform: {"accepts it" if reason is None else reason}')
            failed |= reason is not None
    return int(failed)


async def catalog_records(client, prefix: bytes) -> list:
    """Every catalog record under ``prefix`` (decoded; one that is not CBOR becomes an error entry)."""
    from ..keyset import KeySet
    from ..pmap._schema import CATALOG_SLOT, catalog_key
    result = await client.get(KeySet(prefix + catalog_key(CATALOG_SLOT)[:2], prefix=True))
    records = []
    for kv in result.kvs:
        try:
            record = cbor2.loads(kv.value)
        except Exception as error:   # someone else's bytes under our prefix: say so, go on
            records.append({'key': kv.key.hex(), 'error': f'not a CBOR catalog record: {error}'})
            continue
        record['mod_revision'] = kv.mod_revision
        records.append(record)
    return records


def print_catalog(records: list, write_out: str, prefix_text: str) -> None:
    shown = [dict(r, bfbs=f'<{len(r["bfbs"])} bytes>') if 'bfbs' in r else r for r in records]
    if write_out == 'json':
        print(json.dumps(shown, indent=2, sort_keys=True, default=str))
        return
    if not shown:
        print(f'the catalog under prefix {prefix_text!r} is empty')
    for record in shown:
        if 'error' in record:
            print(f'key {record["key"]}: {record["error"]}')
            continue
        indexes = ', '.join(f'{name} (slot {index["slot"]}, {"unique" if index.get("unique") else "non-unique"})'
                            for name, index in sorted(record.get('indexes', {}).items()))
        line = (f'slot {record.get("slot", "?"):>5} {record.get("name", "?")}: {record.get("key_type", "?")} -> '
                f'{record.get("value_type", "?")}')
        if 'root_type' in record:
            line += f' {record["root_type"]} (sha256 {record["bfbs_sha256"][:12]}, {record["bfbs"]})'
        if indexes:
            line += f'; indexes: {indexes}'
        print(line)


async def _show(client, args) -> int:
    print_catalog(await catalog_records(client, args.prefix.encode('utf-8')), args.write_out, args.prefix)
    return 0
