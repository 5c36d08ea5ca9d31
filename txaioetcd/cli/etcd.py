"""etcd from the command line, in etcdctl's habits: ``status``, ``get``, ``put``, ``del``, ``watch``,
``members``, ``compact``, ``lease grant|revoke|list``.

Endpoints from ``--endpoints`` (before or after the command) or ``ETCDCTL_ENDPOINTS``; ``--user NAME[:PASS]``
and ``--password``; ``--cacert/--cert/--key`` for TLS; ``-w simple|json|table``; ``--hex`` prints keys and
values as hex (JSON always carries them base64, as etcdctl's does). Binary values are written as they
are in ``simple`` output.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

__all__ = ('add_parsers', 'run', 'COMMANDS', 'add_global_options')

COMMANDS = ('status', 'get', 'put', 'del', 'watch', 'members', 'compact', 'lease')


def _options(parser, suppress: bool, prefix: str = ''):
    default = {'default': argparse.SUPPRESS} if suppress else {'default': None}
    add = parser.add_argument
    add('--endpoints', dest=prefix + 'endpoints', help='comma-separated etcd URLs (or ETCDCTL_ENDPOINTS)', **default)
    add('--user', dest=prefix + 'user', help='NAME or NAME:PASSWORD', **default)
    add('--password', dest=prefix + 'password', **default)
    add('--cacert', dest=prefix + 'cacert', help='CA certificate (PEM) of the servers', **default)
    add('--cert', dest=prefix + 'cert', help='client certificate (PEM)', **default)
    add('--key', dest=prefix + 'key_file', help='client key (PEM)', **default)   # not 'key': commands have a KEY
    add('-w', '--write-out', dest=prefix + 'write_out', choices=('simple', 'json', 'table'), **default)
    add('--hex', dest=prefix + 'hex', action='store_true', **({'default': argparse.SUPPRESS} if suppress else {}))
    add('--command-timeout', dest=prefix + 'command_timeout', type=float, help='seconds per request (default 5)',
        **default)
    add('--debug', dest=prefix + 'debug', action='store_true',
        **({'default': argparse.SUPPRESS} if suppress else {}))


def add_global_options(parser):
    """The same options before the command (``txaioetcd --endpoints URL get k``)."""
    _options(parser, False, prefix='g_')


def add_parsers(commands):
    common = argparse.ArgumentParser(add_help=False)
    _options(common, True)

    def command(name, help):
        return commands.add_parser(name, help=help, parents=[common])

    command('status', 'the status of every endpoint')
    get = command('get', 'a key, a range [KEY, RANGE_END) or a prefix')
    get.add_argument('key')
    get.add_argument('range_end', nargs='?')
    get.add_argument('--prefix', action='store_true')
    get.add_argument('--rev', type=int, help='read at this revision')
    get.add_argument('--keys-only', action='store_true')
    get.add_argument('--limit', type=int)
    put = command('put', 'put a value (VALUE, or - / nothing: read it from stdin)')
    put.add_argument('key')
    put.add_argument('value', nargs='?')
    put.add_argument('--lease', help='attach to this lease (hex id)')
    delete = command('del', 'delete a key, a range or a prefix')
    delete.add_argument('key')
    delete.add_argument('range_end', nargs='?')
    delete.add_argument('--prefix', action='store_true')
    watch = command('watch', 'print changes until Ctrl+C')
    watch.add_argument('key')
    watch.add_argument('range_end', nargs='?')
    watch.add_argument('--prefix', action='store_true')
    watch.add_argument('--rev', type=int, help='replay from this revision')
    command('members', 'the cluster\'s members')
    compact = command('compact', 'forget the history before REVISION')
    compact.add_argument('revision', type=int)
    lease = command('lease', 'leases: grant TTL, revoke ID, list')
    lease.add_argument('action', choices=('grant', 'revoke', 'list'))
    lease.add_argument('argument', nargs='?', help='grant: TTL seconds; revoke: the lease id (hex)')


def _setting(args, name, env=None, default=None):
    for value in (getattr(args, name, None), getattr(args, 'g_' + name, None)):
        if value not in (None, False):
            return value
    if env and os.environ.get(env):
        return os.environ[env]
    return default


def _urls(args) -> list:
    endpoints = _setting(args, 'endpoints', 'ETCDCTL_ENDPOINTS', 'http://127.0.0.1:2379')
    return [u if '://' in u else ('https://' if _setting(args, 'cacert') else 'http://') + u
            for u in endpoints.split(',') if u]


def _client(reactor, args, urls=None):
    from ..client import Client
    from ..transport._tls import TLSConfig
    urls = urls or _urls(args)
    user, password = _setting(args, 'user', 'ETCDCTL_USER'), _setting(args, 'password', 'ETCDCTL_PASSWORD')
    if user and ':' in user and password is None:
        user, password = user.split(':', 1)
    tls = None
    if _setting(args, 'cacert') or _setting(args, 'cert'):
        tls = TLSConfig(ca_file=_setting(args, 'cacert'), cert_file=_setting(args, 'cert'),
                        key_file=_setting(args, 'key_file'))
    timeout = float(_setting(args, 'command_timeout', default=5.0))
    return Client(reactor, endpoints=urls, timeout=timeout, connect_timeout=min(timeout, 5.0), username=user,
                  password=password, tls=tls)


def run(args, parser) -> int:
    from ._run import react_command

    async def body(reactor):
        client = _client(reactor, args)
        try:
            return await _HANDLERS[args.command](client, args)
        finally:
            await client.close()
    return react_command(body, bool(_setting(args, 'debug')))


# -- output

def _fmt(args) -> str:
    return _setting(args, 'write_out', default='simple')


def _bytes(args, data: bytes) -> bytes:
    return data.hex().encode() if _setting(args, 'hex') else data


def _emit(data: bytes):
    sys.stdout.buffer.write(data + b'\n')


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode('ascii')


def _header(header) -> dict:
    return {'cluster_id': header.cluster_id, 'member_id': header.member_id, 'revision': header.revision,
            'raft_term': header.raft_term}


def _kv(kv, keys_only: bool = False) -> dict:
    out = {'key': _b64(kv.key), 'create_revision': kv.create_revision, 'mod_revision': kv.mod_revision,
           'version': kv.version}
    if kv.value is not None and not keys_only:       # etcdctl leaves the value out of --keys-only
        out['value'] = _b64(kv.value)
    if kv.lease:
        out['lease'] = kv.lease
    return out


def _table(header: tuple, rows: list) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
    fmt = lambda row: '| ' + ' | '.join(str(x).ljust(w) for x, w in zip(row, widths)) + ' |'  # noqa: E731
    return '\n'.join([line, fmt(header), line] + [fmt(r) for r in rows] + [line])


def _keyset(args):
    from ..keyset import KeySet
    key = args.key.encode('utf-8')
    if args.prefix:
        return KeySet(key, prefix=True)
    if args.range_end is not None:
        return KeySet(key, args.range_end.encode('utf-8'))
    return KeySet(key)


# -- the commands

async def _status(client, args):
    """Every endpoint asked on its own (a Client per endpoint), as etcdctl endpoint status does."""
    rows, records = [], []
    for url in _urls(args):
        one = _client(client.reactor, args, [url])
        try:
            status = await one.status()
        finally:
            await one.close()
        leader = status.leader == status.header.member_id
        records.append({'endpoint': url, 'member_id': f'{status.header.member_id:x}', 'version': status.version,
                        'db_size': status.db_size, 'is_leader': leader, 'raft_term': status.raft_term,
                        'raft_index': status.raft_index, 'revision': status.header.revision})
        rows.append((url, f'{status.header.member_id:x}', status.version, status.db_size, leader,
                     status.raft_term, status.raft_index))
    if _fmt(args) == 'json':
        print(json.dumps(records))
    elif _fmt(args) == 'table':
        print(_table(('ENDPOINT', 'ID', 'VERSION', 'DB SIZE', 'IS LEADER', 'RAFT TERM', 'RAFT INDEX'), rows))
    else:
        for row in rows:
            print(', '.join(str(x) for x in row))


async def _get(client, args):
    result = await client.get(_keyset(args), revision=args.rev, keys_only=args.keys_only, limit=args.limit)
    if _fmt(args) == 'json':
        print(json.dumps({'header': _header(result.header), 'kvs': [_kv(kv, args.keys_only) for kv in result.kvs],
                          'count': result.count, 'more': result.more}))
        return
    for kv in result.kvs:
        _emit(_bytes(args, kv.key))
        if not args.keys_only:
            _emit(_bytes(args, kv.value))
    sys.stdout.buffer.flush()


async def _put(client, args):
    if args.value is None or args.value == '-':
        value = sys.stdin.buffer.read()
    else:
        value = args.value.encode('utf-8')
    lease = int(args.lease, 16) if args.lease else None
    revision = await client.set(args.key.encode('utf-8'), value, lease=lease)
    if _fmt(args) == 'json':
        print(json.dumps({'header': _header(revision.header)}))
    else:
        print('OK')


async def _del(client, args):
    deleted = await client.delete(_keyset(args))
    if _fmt(args) == 'json':
        print(json.dumps({'header': _header(deleted.header), 'deleted': deleted.deleted}))
    else:
        print(deleted.deleted)


async def _watch(client, args):
    from twisted.internet import defer
    reactor = client.reactor
    stopped = defer.Deferred()

    def printed(event):
        if _fmt(args) == 'json':
            print(json.dumps({'type': event.type, 'kv': _kv(event.kv)}), flush=True)
            return
        _emit(event.type.encode())
        _emit(_bytes(args, event.kv.key))
        if event.type == 'PUT':
            _emit(_bytes(args, event.kv.value))
        sys.stdout.buffer.flush()

    watching = client.watch(_keyset(args), printed, start_revision=args.rev)
    reactor.addSystemEventTrigger('before', 'shutdown', watching.cancel)   # Ctrl+C: stop, exit 0
    watching.done.addBoth(lambda result: stopped.callback(result) if not stopped.called else None)
    result = await stopped
    if isinstance(result, Exception) or hasattr(result, 'value'):
        error = getattr(result, 'value', result)
        if not isinstance(error, defer.CancelledError):
            raise error
    return 0


async def _members(client, args):
    members = await client.members()
    rows = [(f'{m.id:x}', 'started' if m.client_urls else 'unstarted', m.name, ','.join(m.peer_urls),
             ','.join(m.client_urls), m.is_learner) for m in members]
    if _fmt(args) == 'json':
        print(json.dumps([{'id': f'{m.id:x}', 'name': m.name, 'peer_urls': list(m.peer_urls),
                           'client_urls': list(m.client_urls), 'is_learner': m.is_learner} for m in members]))
    elif _fmt(args) == 'table':
        print(_table(('ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER'), rows))
    else:
        for row in rows:
            print(', '.join(str(x) for x in row))


async def _compact(client, args):
    await client.compact(args.revision)
    print(f'compacted revision {args.revision}')


async def _lease(client, args):
    from ..rpc import LeaseRevoke
    if args.action == 'grant':
        if args.argument is None or not args.argument.isdigit():
            raise ValueError('lease grant takes the TTL in seconds: lease grant 60')
        lease = await client.lease(int(args.argument), keepalive=False)
        print(f'lease {lease.lease_id:x} granted with TTL({lease.ttl}s)')
    elif args.action == 'revoke':
        if args.argument is None:
            raise ValueError('lease revoke takes the lease id (hex): lease revoke 694d7c8f1a2b3c4d')
        try:
            lease_id = int(args.argument, 16)
        except ValueError:
            raise ValueError(f'{args.argument!r} is not a lease id (hex)') from None
        await client.do(LeaseRevoke(lease_id))
        print(f'lease {lease_id:x} revoked')
    else:
        ids = await client.leases()
        if _fmt(args) == 'json':
            print(json.dumps([f'{i:x}' for i in ids]))
        else:
            print(f'found {len(ids)} leases')
            for lease_id in ids:
                print(f'{lease_id:x}')


_HANDLERS = {'status': _status, 'get': _get, 'put': _put, 'del': _del, 'watch': _watch, 'members': _members,
             'compact': _compact, 'lease': _lease}
