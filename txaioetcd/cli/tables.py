"""``txaioetcd tables list|dump|export|import``: the persistent maps of a Database from the command line.

``list`` is the catalog (slot 0); ``dump NAME|SLOT`` the decoded records of one table as JSON lines,
using what the catalog says of its key and value types (FlatBuffers values through the recorded binary
schema); ``export`` writes every record of the Database (catalog included) as JSON lines with the exact
bytes, ``import`` writes them back in etcd transactions sized under the limits. Importing again after an
interruption finishes the job: lines whose key already holds the same bytes are skipped.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import struct
import sys
import uuid

import cbor2

from . import etcd as etcd_cli

__all__ = ('add_parser', 'run')

_SLOT = struct.Struct('>H')
_PAGE = 500
_BATCH_OPS = 100
_BATCH_BYTES = 1024 * 1024


def add_parser(commands):
    common = argparse.ArgumentParser(add_help=False)
    etcd_cli._options(common, True)
    common.add_argument('--prefix', default='', help='the Database prefix (UTF-8)')
    tables = commands.add_parser('tables', help='the persistent maps of a Database: list, dump, export, import')
    verbs = tables.add_subparsers(dest='verb', required=True)
    verbs.add_parser('list', help='the catalog: every table, its slot, key and value types, indexes',
                     parents=[common])
    dump = verbs.add_parser('dump', help='the decoded records of one table, as JSON lines', parents=[common])
    dump.add_argument('table', help='its name or slot number')
    dump.add_argument('--limit', type=int)
    verbs.add_parser('export', help='every record (catalog included), exact bytes, as JSON lines',
                     parents=[common])
    imported = verbs.add_parser('import', help='write exported JSON lines back (resumable)', parents=[common])
    imported.add_argument('file', help='the export, or - for stdin')
    return tables


def run(args, parser) -> int:
    from ._run import react_command

    async def body(reactor):
        client = etcd_cli._client(reactor, args)
        try:
            return await _VERBS[args.verb](client, args)
        finally:
            await client.close()
    return react_command(body, bool(etcd_cli._setting(args, 'debug')))


async def _list(client, args):
    from .schema import catalog_records, print_catalog
    print_catalog(await catalog_records(client, args.prefix.encode('utf-8')),
                  etcd_cli._setting(args, 'write_out', default='simple'), args.prefix)


def plain(value):
    """JSON-able: bytes as {"$base64": ...}, UUIDs and datetimes as strings, tuples as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'$base64': base64.b64encode(bytes(value)).decode('ascii')}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return {'$tag': value.tag, 'value': plain(value.value)}
    return value


def _decoder(record: dict):
    """(key decoder, value decoder) for a catalog record."""
    from .. import pmap
    from ..fbs import read_binary_schema
    from ..fbs._plain import to_plain
    value_type = record['value_type']
    if value_type == 'FlatBuffers':
        if 'bfbs' in record:
            schema = read_binary_schema(record['bfbs'])
            return _key_decoder(record), lambda data: to_plain(schema, record['root_type'], data)
        return _key_decoder(record), lambda data: {'$flatbuffers_base64': base64.b64encode(data).decode('ascii')}
    if value_type == 'Pickle':
        # Never unpickle from a command line: the bytes could name any class.
        return _key_decoder(record), lambda data: {'$pickle_base64': base64.b64encode(data).decode('ascii')}
    table = pmap.map_class(f'Map{record["key_type"]}{value_type}')(max(1, record['slot']))
    return _key_decoder(record), lambda data: table.decode_value(None, data)


def _key_decoder(record: dict):
    from .. import pmap
    table = pmap.map_class(f'Map{record["key_type"]}Binary')(max(1, record['slot']))
    return lambda slot_key: table.decode_key(slot_key)


async def _find(client, args) -> dict:
    from .schema import catalog_records
    records = [r for r in await catalog_records(client, args.prefix.encode('utf-8')) if 'error' not in r]
    wanted = args.table
    for record in records:
        if record.get('name') == wanted or (wanted.isdigit() and record.get('slot') == int(wanted)):
            return record
    names = ', '.join(f'{r.get("name")} ({r.get("slot")})' for r in records) or 'none'
    raise LookupError(f'no table {wanted!r} in the catalog under prefix {args.prefix!r} (tables: {names})')


async def _records(client, start: bytes):
    """(key, value) of every key starting with ``start``, a page at a time, at one revision."""
    from ..keyset import KeySet
    end = KeySet(start, prefix=True).range_end
    low, revision = start, None
    while True:
        result = await client.get(KeySet(low, end), limit=_PAGE, revision=revision)
        revision = result.header.revision
        for kv in result.kvs:
            yield kv.key, kv.value
        if not result.more or not result.kvs:
            return
        low = result.kvs[-1].key + b'\0'


async def _dump(client, args):
    record = await _find(client, args)
    decode_key, decode_value = _decoder(record)
    prefix = args.prefix.encode('utf-8')
    count = 0
    async for raw_key, value in _records(client, prefix + _SLOT.pack(record['slot'])):
        slot_key = raw_key[len(prefix):]
        line = {'key': plain(decode_key(slot_key)), 'value': plain(decode_value(value))}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + '\n')
        count += 1
        if args.limit is not None and count >= args.limit:
            break
    sys.stdout.flush()


async def _export(client, args):
    from .schema import catalog_records
    prefix = args.prefix.encode('utf-8')
    names = {r['slot']: r.get('name') for r in await catalog_records(client, prefix) if 'slot' in r}
    count = 0
    async for raw_key, value in _records(client, prefix):
        slot_key = raw_key[len(prefix):]
        slot = _SLOT.unpack(slot_key[:2])[0] if len(slot_key) >= 2 else None
        line = {'slot': slot, 'table': 'catalog' if slot == 0 else names.get(slot),
                'key': base64.b64encode(slot_key).decode('ascii'), 'value': base64.b64encode(value).decode('ascii')}
        sys.stdout.write(json.dumps(line) + '\n')
        count += 1
    sys.stdout.flush()
    print(f'exported {count} records', file=sys.stderr, flush=True)


async def _import(client, args):
    from ..ops import OpGet, OpSet, Transaction
    prefix = args.prefix.encode('utf-8')
    source = sys.stdin if args.file == '-' else open(args.file, encoding='utf-8')
    tty = sys.stderr.isatty()
    written = skipped = 0
    try:
        batch, size, number = [], 0, 0

        async def flush():
            nonlocal written, skipped
            if not batch:
                return
            current = await client.do(Transaction(success=[OpGet(key) for key, _ in batch]))
            changed = [(key, value) for (key, value), response in zip(batch, current.responses)
                       if not response.kvs or response.kvs[0].value != value]
            skipped += len(batch) - len(changed)
            if changed:
                await client.submit(Transaction(success=[OpSet(key, value) for key, value in changed]))
                written += len(changed)
            if tty:
                print(f'\rimported {written:,} records, {skipped:,} already there', end='', file=sys.stderr,
                      flush=True)
            batch.clear()

        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key, value = base64.b64decode(entry['key'], validate=True), base64.b64decode(entry['value'], validate=True)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f'{args.file}, line {number}: not an exported record ({error}); '
                                 f'{written:,} records written so far, run the import again to go on') from None
            if size + len(key) + len(value) > _BATCH_BYTES or len(batch) >= _BATCH_OPS:
                await flush()
                size = 0
            batch.append((prefix + key, value))
            size += len(key) + len(value) + len(prefix)
        await flush()
    finally:
        if source is not sys.stdin:
            source.close()
    if tty:
        print(file=sys.stderr)
    print(f'imported {written} records ({skipped} already there)', flush=True)


_VERBS = {'list': _list, 'dump': _dump, 'export': _export, 'import': _import}
