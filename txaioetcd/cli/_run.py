"""How every command that talks to etcd runs: a coroutine on the reactor, its exit code, and errors as
one line (a traceback only with ``--debug``); output cut short by a closed pipe (``| head``) ends quietly."""

from __future__ import annotations

import os
import sys
import traceback

__all__ = ('react_command',)


def react_command(body, debug: bool = False, errors: tuple = ()) -> int:
    """Run ``await body(reactor)`` (→ an exit code, None for 0) under ``task.react`` → the exit code.
    ``errors``: more exception types reported as one line."""
    from twisted.internet import defer, task

    from ..errors import Error

    async def main(reactor):
        try:
            code = await body(reactor) or 0
        except BrokenPipeError:
            code = 0
        except (Error, ValueError, OSError, LookupError, *errors) as error:
            if debug:
                traceback.print_exc()
            print(f'error: {error}', flush=True)
            code = 1
        raise SystemExit(code)

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as done:
        _quiet_broken_pipe()
        return done.code or 0
    return 0


def _quiet_broken_pipe():
    """``| head`` closed our stdout: flushing at exit would complain; send the rest nowhere."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
