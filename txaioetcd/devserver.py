"""The development etcd and the frame of the demo and the examples, built on ``embedded``.

``serve()`` is ``python -m txaioetcd server``: an etcd in the foreground that keeps its data.
``run_with_etcd(main)`` runs ``main(reactor, url)`` against ``$ETCD_URL`` or a private etcd started
for the run - ``python -m txaioetcd demo`` and every example use it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Sequence

from .embedded import EtcdNotFound, EtcdStartError, LocalEtcd, _loopback_host, etcd_version

__all__ = ['serve', 'run_with_etcd']


def serve(argv: Sequence[str] | None = None) -> int:
    """Run a development etcd in the foreground until SIGINT or SIGTERM; return the exit code.

    This is ``python -m txaioetcd server``. The data dir is kept, so data survives restarts.
    """
    parser = argparse.ArgumentParser(prog='txaioetcd server',
                                     description='Run a local etcd for development (loopback only).')
    parser.add_argument('--data-dir', default='default.etcd',
                        help='where etcd keeps its data, kept between runs (default: ./default.etcd)')
    parser.add_argument('--host', default='127.0.0.1', help='loopback address (default: 127.0.0.1)')
    parser.add_argument('--port', type=int, default=2379, help='client port (default: 2379)')
    parser.add_argument('--peer-port', type=int, default=2380, help='peer port (default: 2380)')
    parser.add_argument('--name', default='default', help='member name (default: default)')
    args = parser.parse_args(argv)
    try:
        host = _loopback_host(args.host)
    except ValueError as error:
        parser.error(str(error))
    try:
        # Not fast: a development server's data should survive a machine crash (no --unsafe-no-fsync).
        etcd = LocalEtcd(data_dir=args.data_dir, host=host, client_port=args.port,
                         peer_port=args.peer_port, name=args.name, fast=False)
    except EtcdNotFound as error:
        print(f'txaioetcd server: {error}', file=sys.stderr)
        return 1

    stop_requested = threading.Event()
    previous_handlers = {signum: signal.signal(signum, lambda *_: stop_requested.set())
                         for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        etcd.start()
        version = '.'.join(map(str, etcd_version(etcd.binary)))
        print(f'etcd {version} (pid {etcd.pid}) serving {etcd.url}, data in {etcd.data_dir}, '
              f'log in {etcd.log_path}; Ctrl-C stops it', flush=True)
        print(f'export ETCD_URL={etcd.url}', flush=True)
        while not stop_requested.wait(0.5):
            if not etcd.running:
                print(f'txaioetcd server: etcd exited by itself (code {etcd.returncode}); '
                      f'last lines of its log:\n'
                      f'{etcd.log_tail()}', file=sys.stderr)
                return 1
        print('stopping etcd', flush=True)
        return 0
    except EtcdStartError as error:
        print(f'txaioetcd server: {error}', file=sys.stderr)
        return 1
    finally:
        etcd.close()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def run_with_etcd(main, url: str | None = None, say=None) -> int:
    """Run the coroutine function ``main(reactor, url)`` on the Twisted reactor → exit code (0: done).

    It runs against ``url``, else ``$ETCD_URL``, else a private LocalEtcd started for the run and
    stopped after it - the frame of the examples and of ``python -m txaioetcd demo``. ``say``
    (e.g. print) hears about the private etcd.
    """
    from twisted.internet import defer, task

    def react(target: str) -> int:
        try:
            task.react(lambda reactor: defer.ensureDeferred(main(reactor, target)))
        except SystemExit as done:
            return done.code or 0
        return 0

    url = url or os.environ.get('ETCD_URL')
    if url:
        return react(url)
    etcd = LocalEtcd()
    if say:
        say('starting a private etcd ...')
    etcd.start()
    try:
        if say:
            say(f'etcd (pid {etcd.pid}) listens at {etcd.url}')
        return react(etcd.url)
    finally:
        etcd.close()
        if say:
            say('private etcd stopped')
