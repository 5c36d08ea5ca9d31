"""A service that takes its configuration from versioned records, and reloads it when a person edits it.

The configuration is the commit key ``service.conf`` in namespace ``config``: every change is a new
version with an author and a comment, kept in etcd (history survives compaction). The service reads
the latest version from a live mirror of the heads and applies each new one as it is committed, with
no polling and no restart.

Here the "person" is ``python -m txaioetcd commits edit service.conf`` run with EDITOR set to a small
script that changes one line, exactly as the command runs for a person with a real editor.

Run: python examples/commits/config_service.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

import os
import stat
import sys
import tempfile

from twisted.internet import utils

from txaioetcd import Client, KeySet
from txaioetcd.commits import CommitStore
from txaioetcd.devserver import run_with_etcd

KEY = 'service.conf'


def parse(payload: bytes) -> dict:
    settings = {}
    for line in payload.decode('utf-8').splitlines():
        name, _, value = line.partition('=')
        if name.strip():
            settings[name.strip()] = value.strip()
    return settings


class Service:
    def __init__(self, store):
        self.store = store
        self.settings = {}
        self.version = 0
        self.mirror = store.mirror(on_commit=self._committed)

    async def start(self):
        await self.mirror.ready()
        self._apply(self.mirror[KEY])

    def _committed(self, commit):
        if commit.meta.key == KEY and not commit.meta.empty:
            self._apply(commit)

    def _apply(self, commit):
        self.settings, self.version = parse(commit.payload), commit.meta.version
        print(f'service runs with version {self.version} by {commit.meta.author} '
              f'({commit.meta.comment or "no comment"}): {self.settings}', flush=True)


def editor_script(folder: str) -> str:
    """What a person does in $EDITOR: change the limit, say why in the header's comment."""
    path = os.path.join(folder, 'edit.py')
    with open(path, 'w') as out:
        out.write('import sys\n'
                  'path = sys.argv[1]\n'
                  'text = open(path).read()\n'
                  'text = text.replace("limit = 10", "limit = 25").replace(\'comment: ""\', "comment: more room")\n'
                  'open(path, "w").write(text)\n')
    wrapper = os.path.join(folder, 'editor')
    with open(wrapper, 'w') as out:
        out.write(f'#!/bin/sh\nexec "{sys.executable}" "{path}" "$@"\n')
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
    return wrapper


async def main(reactor, url):
    etcd = Client(reactor, url=url)
    await etcd.delete(KeySet(b'example-commits/', prefix=True))      # start afresh on every run
    store = CommitStore(etcd, 'config', prefix=b'example-commits/')
    await store.commit(KEY, b'limit = 10\nmode = normal\n', 1, 'ops', 'initial configuration')
    service = Service(store)
    await service.start()

    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, EDITOR=editor_script(folder), TXAIOETCD_AUTHOR='ann')
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ['-m', 'txaioetcd', 'commits', '--endpoints', url, '--namespace', 'config',
                             '--prefix', 'example-commits/', 'edit', KEY, '-y'], env=env)
    print(f'commits edit said: {out.decode().strip().splitlines()[-1]} (exit {code})', flush=True)
    latest = await store.meta(KEY)
    await service.mirror.wait_for(latest.revision, timeout=10)
    print(f'the service now has limit={service.settings["limit"]} (version {service.version})', flush=True)
    history = [f'v{c.meta.version} {c.meta.author}' async for c in store.history(KEY)]
    print(f'history: {", ".join(history)}', flush=True)
    service.mirror.close()
    await etcd.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
