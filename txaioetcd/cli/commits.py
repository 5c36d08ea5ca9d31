"""``python -m txaioetcd commits serve``: the commits HTTP API (Rainer's) for one namespace.

The server listens on loopback unless told otherwise, and uses ``--endpoints`` or, without it, an
embedded etcd it starts (keeping its data in ``--data-dir``). When etcd goes away it answers 503 and
recovers by itself when etcd is back.
"""

from __future__ import annotations

import os
import sys

__all__ = ('add_parser', 'run')

_LOOPBACK = ('127.0.0.1', '::1', 'localhost')


def add_parser(commands):
    commits = commands.add_parser('commits', help='versioned records: the HTTP API server')
    verbs = commits.add_subparsers(dest='verb', required=True)
    serve = verbs.add_parser('serve', help='serve the commits HTTP API of one namespace')
    serve.add_argument('--namespace', required=True, help='the namespace served (e.g. diary)')
    serve.add_argument('--listen', default='tcp:8080:interface=127.0.0.1',
                       help='a Twisted endpoint (default: tcp:8080:interface=127.0.0.1; tcp:PORT without '
                            'interface= listens on 127.0.0.1)')
    serve.add_argument('--endpoints', '--url', dest='endpoints',
                       help='etcd to use (or ETCDCTL_ENDPOINTS); without it an embedded etcd is started')
    serve.add_argument('--data-dir', help='the embedded etcd\'s data folder (default: a temporary one, removed '
                                          'at exit)')
    serve.add_argument('--prefix', default='', help='key prefix (UTF-8) under which the namespace lives')
    serve.add_argument('--keep', type=int, help='keep only the newest N versions of each key')
    serve.add_argument('--token', help='writes need Authorization: Bearer TOKEN (or set TXAIOETCD_COMMITS_TOKEN)')
    serve.add_argument('--max-body', type=int, help='the largest POST body in bytes (default: the store\'s '
                                                    'payload limit, 700 KiB)')
    return commits


def listen_description(text: str) -> str:
    """``--listen`` with loopback made explicit: a tcp endpoint without ``interface=`` gets 127.0.0.1."""
    parts = text.split(':')
    if parts[0] in ('tcp', 'tcp6') and not any(p.startswith('interface=') for p in parts[1:]):
        parts.append('interface=' + ('::1' if parts[0] == 'tcp6' else '127.0.0.1'))
    return ':'.join(parts)


def run(args, parser) -> int:
    if args.verb == 'serve':
        endpoints = args.endpoints or os.environ.get('ETCDCTL_ENDPOINTS')
        token = args.token or os.environ.get('TXAIOETCD_COMMITS_TOKEN')
        if endpoints:
            return _serve(args, endpoints, token)
        return _serve_embedded(args, token)
    parser.error(f'unknown commits command {args.verb!r}')
    return 2


def _serve_embedded(args, token) -> int:
    from ..embedded import EtcdNotFound, LocalEtcd
    try:
        etcd = LocalEtcd(data_dir=args.data_dir, fast=args.data_dir is None)
    except EtcdNotFound as error:
        print(f'error: {error}', flush=True)
        return 1
    etcd.start()
    try:
        print(f'embedded etcd (pid {etcd.pid}) at {etcd.url}, data in {etcd.data_dir}', flush=True)
        return _serve(args, etcd.url, token)
    finally:
        etcd.close()


def _serve(args, endpoints: str, token) -> int:
    from twisted.internet import defer, endpoints as twisted_endpoints, task
    from twisted.web import server

    from ..client import Client
    from ..commits import CommitStore
    from ..commits.web import CommitsResource

    description = listen_description(args.listen)

    async def main(reactor):
        urls = [u if '://' in u else 'http://' + u for u in endpoints.split(',')]
        client = Client(reactor, endpoints=urls) if len(urls) > 1 else Client(reactor, url=urls[0])
        store = CommitStore(client, args.namespace, prefix=args.prefix.encode('utf-8'), keep=args.keep)
        site = server.Site(CommitsResource(store, token=token, max_body=args.max_body))
        site.displayTracebacks = False
        try:
            port = await twisted_endpoints.serverFromString(reactor, description).listen(site)
        except Exception as error:         # a port in use, a bad description: one line, exit 1
            print(f'error: cannot listen on {description}: {error}', flush=True)
            await client.close()
            raise SystemExit(1)
        address = port.getHost()
        host = f'[{address.host}]' if ':' in getattr(address, 'host', '') else getattr(address, 'host', '')
        where = f'http://{host}:{address.port}/' if hasattr(address, 'port') else description
        if hasattr(address, 'host') and address.host not in _LOOPBACK:
            print(f'warning: listening on {address.host}, not loopback', file=sys.stderr, flush=True)
        print(f'serving commits of namespace {args.namespace!r} at {where} (etcd {", ".join(urls)}; '
              f'writes {"need the token" if token else "open"}); Ctrl-C stops', flush=True)
        # Ctrl-C or SIGTERM stops the reactor; these run first (the reactor waits for their Deferreds).
        reactor.addSystemEventTrigger('before', 'shutdown', port.stopListening)
        reactor.addSystemEventTrigger('before', 'shutdown', client.close)
        await defer.Deferred()          # serve until the reactor stops

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as done:
        return done.code or 0
    return 0
