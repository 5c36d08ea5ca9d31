"""The documentation site builds: ``python -m sphinx -W -b html docs <dir>``, with no warning.

-W turns every warning (a docstring's bad markup, a broken link between pages, an object documented
twice) into a failure. Sphinx and myst-parser are in the ``dev`` extra, so this does not skip.
"""

import pathlib
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs'


def test_docs_site_builds_without_warnings(tmp_path):
    out = tmp_path / 'html'
    command = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-E', '-q', '-b', 'html',
               '-d', str(tmp_path / 'doctrees'), str(DOCS), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (f'{" ".join(command)} exited with {done.returncode}\n'
                                  f'--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}')

    api = (out / 'api.html').read_text()
    for name in ('txaioetcd.Client', 'txaioetcd.DbTransaction', 'txaioetcd.errors.LockTimeout',
                 'txaioetcd.pmap.PersistentMap', 'txaioetcd.recipes.lock.Lock',
                 'txaioetcd.testing.LocalEtcd'):
        assert f'id="{name}"' in api, f'{name} is not documented in api.html'
    assert 'MapUuidCbor' in api                      # the named map classes, described in prose
    for page in ('index', 'getting-started', 'client', 'orm', 'api'):
        assert (out / f'{page}.html').is_file()
