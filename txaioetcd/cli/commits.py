"""``python -m txaioetcd commits ...``: versioned records from the command line, with pyrainer's commands
(list, show, log, edit, prepare, commit, commit-value, uncommit, revert) against etcd directly
(``--endpoints`` and ``--namespace``) or a commits HTTP API (``--url``); and ``serve``, the HTTP API.

The server listens on loopback unless told otherwise, and uses ``--endpoints`` or, without it, an
embedded etcd it starts (keeping its data in ``--data-dir``). When etcd goes away it answers 503 and
recovers by itself when etcd is back. Errors are one line and exit 1 (2 for usage); ``--debug`` shows
tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ('add_parser', 'run')

_LOOPBACK = ('127.0.0.1', '::1', 'localhost')


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (after: they win)."""
    default = {'default': argparse.SUPPRESS} if suppress else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--url', help='a commits HTTP API (ours or Rainer\'s), e.g. http://127.0.0.1:8080',
                        **default)
    common.add_argument('--endpoints', help='etcd (or set ETCDCTL_ENDPOINTS / ETCD_URL), with --namespace',
                        **default)
    common.add_argument('--namespace', help='the namespace in etcd', **default)
    common.add_argument('--prefix', help='key prefix (UTF-8) under which the namespace lives', **default)
    common.add_argument('--author', help='author of commits (default: $TXAIOETCD_AUTHOR, else your login)',
                        **default)
    common.add_argument('--token', help='for an HTTP API whose writes need one (or $TXAIOETCD_COMMITS_TOKEN)',
                        **default)
    common.add_argument('--timeout', type=float, help='seconds per request (default 10)', **default)
    common.add_argument('--debug', action='store_true', help='tracebacks on errors', **default)
    return common


def add_parser(commands):
    commits = commands.add_parser('commits', help='versioned records: list, show, log, edit, commit, '
                                  'revert ...; and the HTTP API server', parents=[_common(False)])
    verbs = commits.add_subparsers(dest='verb', required=True)
    common = _common(True)

    def verb(name, help):
        return verbs.add_parser(name, help=help, parents=[common])

    listing = verb('list', 'the keys and their latest versions')
    listing.add_argument('-A', '--all', action='store_true', help='removed (uncommitted) keys too')
    listing.add_argument('-w', '--write-out', choices=('simple', 'json'), default='simple')
    show = verb('show', 'a commit\'s payload, to stdout')
    show.add_argument('key')
    show.add_argument('version', nargs='?', type=int)
    log = verb('log', 'versions newest first, with a diff to the one before (through $PAGER on a terminal)')
    log.add_argument('key')
    log.add_argument('version', nargs='?', type=int, help='start at this version (default: the latest)')
    log.add_argument('-n', '--max-count', type=int, help='at most this many versions')
    log.add_argument('--no-diff', action='store_true')
    edit = verb('edit', 'edit the latest version in $EDITOR and commit the result')
    edit.add_argument('key')
    edit.add_argument('-y', '--yes', action='store_true', help='commit without asking')
    prepare = verb('prepare', 'print the text to edit for the next version (for commit)')
    prepare.add_argument('key')
    commit = verb('commit', 'commit prepared text (header + --- + payload) read from stdin')
    commit.add_argument('key')
    value = verb('commit-value', 'commit the payload read from stdin as the next version')
    value.add_argument('key')
    value.add_argument('-m', '--message', default='', help='the comment')
    value.add_argument('--version', type=int, help='the version (default: the latest + 1)')
    uncommit = verb('uncommit', 'remove a key: an empty commit that keeps its history')
    uncommit.add_argument('key')
    uncommit.add_argument('-y', '--yes', action='store_true', help='do not ask')
    revert = verb('revert', 'commit an old version\'s payload again as the next version')
    revert.add_argument('key')
    revert.add_argument('version', type=int)
    revert.add_argument('-m', '--message', help='the comment (default: "Revert to version N")')

    serve = verbs.add_parser('serve', help='serve the commits HTTP API of one namespace')
    serve.add_argument('--namespace', required=True, help='the namespace served (e.g. diary)')
    serve.add_argument('--listen', default='tcp:8080:interface=127.0.0.1',
                       help='a Twisted endpoint (default: tcp:8080:interface=127.0.0.1; tcp:PORT without '
                            'interface= listens on 127.0.0.1)')
    serve.add_argument('--endpoints', help='etcd to use (or ETCDCTL_ENDPOINTS); without it an embedded etcd is '
                                           'started')
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
    from ._commit_commands import run_command
    return run_command(args, parser)


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
