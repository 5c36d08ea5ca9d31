"""The commands of ``txaioetcd commits`` other than ``serve``; each an ``async def`` over a backend
(etcd or an HTTP API, see ``_commit_backends``), run on the reactor by ``run_command``."""

from __future__ import annotations

import difflib
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile

from ..errors import CommitNotFound, Error, VersionConflict
from ._commit_text import CommitTextError, parse, render

__all__ = ('run_command',)

_EDITOR_TIMEOUT = 24 * 3600      # a person editing: bounded, but generously


class _Stop(Exception):
    """End the command with ``code`` after printing ``message`` (to stdout, one line)."""

    def __init__(self, code: int, message: str = ''):
        super().__init__(message)
        self.code = code
        self.message = message


def _option(args, name, default=None):
    return getattr(args, name, None) if getattr(args, name, None) is not None else default


def _author(args) -> str:
    return _option(args, 'author') or os.environ.get('TXAIOETCD_AUTHOR') or getpass.getuser()


def _backend(reactor, args, parser):
    from ._commit_backends import HttpBackend, StoreBackend
    timeout = _option(args, 'timeout', 10.0)
    url = _option(args, 'url')
    if url:
        return HttpBackend(url, _option(args, 'token') or os.environ.get('TXAIOETCD_COMMITS_TOKEN'), timeout)
    endpoints = (_option(args, 'endpoints') or os.environ.get('ETCDCTL_ENDPOINTS') or
                 os.environ.get('ETCD_URL'))
    namespace = _option(args, 'namespace')
    if not endpoints or not namespace:
        parser.error('give --url HTTP_URL, or --endpoints ETCD (or ETCDCTL_ENDPOINTS) and --namespace NS')
    from ..client import Client
    from ..commits import CommitStore
    urls = [u if '://' in u else 'http://' + u for u in endpoints.split(',')]
    client = Client(reactor, endpoints=urls, timeout=timeout) if len(urls) > 1 else \
        Client(reactor, url=urls[0], timeout=timeout)
    return StoreBackend(CommitStore(client, namespace, prefix=(_option(args, 'prefix') or '').encode('utf-8')))


def run_command(args, parser) -> int:
    from ._run import react_command

    async def body(reactor):
        backend = _backend(reactor, args, parser)
        try:
            return await _COMMANDS[args.verb](backend, args)
        except _Stop as stop:
            if stop.message:
                print(stop.message, flush=True)
            return stop.code
        finally:
            await backend.close()
    return react_command(body, bool(_option(args, 'debug')))


# -- output helpers

def _colour() -> bool:
    return sys.stdout.isatty() and 'NO_COLOR' not in os.environ


def _diff(old: bytes | None, new: bytes, old_name: str, new_name: str, colour: bool) -> str:
    a = (old or b'').decode('utf-8', 'replace').splitlines(keepends=True)
    b = new.decode('utf-8', 'replace').splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(a, b, old_name, new_name):
        line = line if line.endswith('\n') else line + '\n\\ No newline at end of file\n'
        if colour:
            code = '32' if line.startswith('+') else '31' if line.startswith('-') else \
                '36' if line.startswith('@@') else None
            if code:
                line = f'\033[{code}m{line.rstrip(chr(10))}\033[0m\n'
        lines.append(line)
    return ''.join(lines)


def _page(text: str):
    """Through $PAGER (or less -FRSX) when stdout is a terminal; else straight out."""
    if not sys.stdout.isatty():
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    pager = os.environ.get('PAGER') or 'less -FRSX'
    try:
        subprocess.run(shlex.split(pager), input=text.encode('utf-8'), check=False)
    except OSError:
        sys.stdout.write(text)


async def _latest(backend, key) -> tuple:
    """(meta, payload) of the latest commit, or (None, b'') for a new key."""
    try:
        return await backend.get(key)
    except CommitNotFound:
        return None, b''


async def _commit(backend, key, payload, version, author, comment, empty=False) -> dict:
    try:
        meta = await backend.commit(key, payload, version, author, comment, empty)
    except VersionConflict as conflict:
        raise _Stop(1, f'error: {conflict}') from None
    print(f'committed {key} version {meta["version"]}' + (' (removed)' if meta.get('empty') else ''), flush=True)
    return meta


# -- the commands

async def _list(backend, args):
    heads = await backend.heads(args.all)
    if args.write_out == 'json':
        print(json.dumps(heads, indent=2, ensure_ascii=False))
        return
    for key, meta in heads.items():
        removed = ' (removed)' if meta.get('empty') else ''
        comment = f'  {meta["comment"]}' if meta.get('comment') else ''
        print(f'{key}  v{meta["version"]}{removed}  {meta["author"]}  {meta["mtime"]}{comment}')


async def _show(backend, args):
    meta, payload = await backend.get(args.key, args.version)
    if meta.get('empty'):
        raise _Stop(1, f'error: {args.key} version {meta["version"]} is removed (an empty commit)')
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


async def _log(backend, args):
    before = args.version + 1 if args.version is not None else None
    limit = args.max_count + 1 if args.max_count is not None else None     # one more, for the last diff
    history = await backend.history(args.key, before, limit)
    if not history:
        raise CommitNotFound(f'no commit of {args.key!r}' + (f' at or before version {args.version}'
                                                           if args.version else ''))
    shown = history[:args.max_count] if args.max_count is not None else history
    colour = _colour()
    out = []
    for i, (meta, payload) in enumerate(shown):
        previous = history[i + 1] if i + 1 < len(history) else (None, None)
        title = f'version {meta["version"]}' + (' (removed)' if meta.get('empty') else '')
        out.append((f'\033[33m{title}\033[0m' if colour else title) + '\n')
        out.append(f'Author: {meta["author"]}\nDate:   {meta["mtime"]}\n')
        if meta.get('revision'):
            out.append(f'Revision: {meta["revision"]}\n')
        out.append(f'\n    {meta["comment"] or "(no comment)"}\n\n')
        if not args.no_diff:
            old_name = f'{args.key} version {previous[0]["version"]}' if previous[0] else '/dev/null'
            out.append(_diff(previous[1], payload, old_name, f'{args.key} version {meta["version"]}', colour))
            out.append('\n')
    _page(''.join(out))


async def _prepare(backend, args):
    meta, payload = await _latest(backend, args.key)
    version = meta['version'] + 1 if meta else 1
    sys.stdout.buffer.write(render(version, _author(args), '', b'' if meta and meta.get('empty') else payload))
    sys.stdout.buffer.flush()


async def _commit_prepared(backend, args):
    version, author, comment, payload = parse(sys.stdin.buffer.read())
    await _commit(backend, args.key, payload, version, author, comment)


async def _commit_value(backend, args):
    payload = sys.stdin.buffer.read()
    version = args.version
    if version is None:
        meta, _ = await _latest(backend, args.key)
        version = meta['version'] + 1 if meta else 1
    await _commit(backend, args.key, payload, version, _author(args), args.message)


def _confirm(question: str) -> bool:
    print(f'{question} [y/N] ', end='', flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ('y', 'yes')


async def _edit(backend, args):
    meta, payload = await _latest(backend, args.key)
    version = meta['version'] + 1 if meta else 1
    old = b'' if meta and meta.get('empty') else payload
    text = render(version, _author(args), '', old)
    handle, path = tempfile.mkstemp(prefix=f'txaioetcd-{args.key[:40].replace(os.sep, "_")}-', suffix='.txt')
    with os.fdopen(handle, 'wb') as out:
        out.write(text)
    editor = os.environ.get('VISUAL') or os.environ.get('EDITOR') or 'vi'
    from twisted.internet import threads
    try:
        # In a thread: the reactor keeps the connection to etcd alive while the person edits.
        done = await threads.deferToThread(subprocess.run, shlex.split(editor) + [path], timeout=_EDITOR_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _Stop(1, f'error: cannot run the editor {editor!r}: {error}; your text is in {path}') from None
    if done.returncode != 0:
        raise _Stop(1, f'error: the editor exited with {done.returncode}; nothing committed, your text is in {path}')
    with open(path, 'rb') as edited:
        new_text = edited.read()
    if new_text == text:
        os.unlink(path)
        raise _Stop(0, 'No change, not committing.')
    try:
        new_version, author, comment, new_payload = parse(new_text)
    except CommitTextError as error:
        raise _Stop(1, f'error: {error}; nothing committed, your text is in {path}') from None
    sys.stdout.write(_diff(old if meta else None, new_payload,
                           f'{args.key} version {meta["version"]}' if meta else '/dev/null',
                           f'{args.key} version {new_version}', _colour()))
    if not args.yes and not _confirm(f'Commit version {new_version} of {args.key}?'):
        raise _Stop(1, f'Not committed; your text is in {path}')
    try:
        await _commit(backend, args.key, new_payload, new_version, author, comment)
    except (_Stop, Error) as error:
        message = error.message if isinstance(error, _Stop) else f'error: {error}'
        raise _Stop(1, f'{message}; your text is in {path}') from None
    os.unlink(path)


async def _uncommit(backend, args):
    meta, _ = await backend.get(args.key)
    if meta.get('empty'):
        raise _Stop(1, f'error: {args.key} is already removed (version {meta["version"]})')
    if not args.yes and not _confirm(f'Remove {args.key} (version {meta["version"]})?'):
        raise _Stop(1, 'Not removed.')
    await _commit(backend, args.key, b'', meta['version'] + 1, _author(args), '', empty=True)


async def _revert(backend, args):
    old, payload = await backend.get(args.key, args.version)
    latest, _ = await backend.get(args.key)
    comment = args.message if args.message is not None else f'Revert to version {args.version}'
    await _commit(backend, args.key, payload, latest['version'] + 1, _author(args), comment,
                  empty=bool(old.get('empty')))


_COMMANDS = {'list': _list, 'show': _show, 'log': _log, 'edit': _edit, 'prepare': _prepare,
             'commit': _commit_prepared, 'commit-value': _commit_value, 'uncommit': _uncommit,
             'revert': _revert}
