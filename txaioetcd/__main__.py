"""Command line: ``python -m txaioetcd``: etcd in etcdctl's habits (get, put, del, watch, status, members,
compact, lease), ``tables`` (list, dump, export, import), ``commits`` (versioned records and their HTTP API), ``schema`` (FlatBuffers service
schemas), ``demo`` and ``server``."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import functools
    import os

    from ._demo import run_demo
    from .devserver import run_with_etcd

    say = functools.partial(print, flush=True)
    private = not (args.url or os.environ.get('ETCD_URL'))     # compact only an etcd of our own
    return run_with_etcd(functools.partial(run_demo, say=say, compact=private), args.url, say=say)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m txaioetcd', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser('demo', help='run the client against a private etcd and show what it did')
    demo.add_argument('--url', help='use this etcd instead of starting one (or set ETCD_URL)')
    commands.add_parser('server', help='run a development etcd in the foreground', add_help=False)
    from .cli import commits, etcd, schema, tables
    etcd.add_global_options(parser)
    etcd.add_parsers(commands)
    tables.add_parser(commands)
    schema_parser = schema.add_parser(commands)
    commits_parser = commits.add_parser(commands)
    args, rest = parser.parse_known_args(argv)
    if args.command == 'server':
        from .devserver import serve
        return serve(rest)
    if rest:
        parser.error(f'unrecognized arguments: {" ".join(rest)}')
    if args.command == 'schema':
        return schema.run(args, schema_parser)
    if args.command == 'commits':
        return commits.run(args, commits_parser)
    if args.command in etcd.COMMANDS:
        return etcd.run(args, parser)
    if args.command == 'tables':
        return tables.run(args, parser)
    return _demo(args)


if __name__ == '__main__':
    sys.exit(main())
