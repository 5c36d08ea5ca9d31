"""The snippets in docs/*.md run, in order, against a real etcd.

Each document's ```python blocks become the body of one ``async def main(reactor)`` with
``ETCD_URL`` set to the session etcd. A block directly followed by a line starting "(not run" is
skipped (a frame or an illustration).
"""

import pathlib
import re
import textwrap

import pytest
import pytest_twisted

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs'
_BLOCK = re.compile(r'```python\n(.*?)```\n(\(not run)?', re.S)


def _snippets(path):
    return [code for code, skipped in _BLOCK.findall(path.read_text()) if not skipped]


def _documents():
    return sorted(p for p in DOCS.glob('*.md') if _snippets(p))


@pytest.mark.parametrize('path', _documents(), ids=lambda p: p.name)
@pytest_twisted.ensureDeferred
async def test_doc_snippets_run(path, etcd, reactor):
    body = '\n'.join(_snippets(path))
    source = 'async def main(reactor):\n' + textwrap.indent(body, '    ')
    namespace = {'ETCD_URL': etcd.url}
    exec(compile(source, str(path), 'exec'), namespace)
    await namespace['main'](reactor)
