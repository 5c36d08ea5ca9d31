"""The snippets in docs/*.md run, in order, against a real etcd.

Each document's ```python blocks become the body of one ``async def main(reactor)`` with
``ETCD_URL`` set to the session etcd. A block directly followed by a line starting "(not run" is
skipped (a frame or an illustration). Code keeps its line numbers, so a failure points into the doc.
A document about the asyncio face (its code imports ``txaioetcd.aio``) is a script instead: its blocks
run as they are, one after another, and call ``asyncio.run`` themselves, as asyncio programs do.
"""

import pathlib
import re
import textwrap

import pytest
import pytest_twisted

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs'
_BLOCK = re.compile(r'```python\n(.*?)```\n(\(not run)?', re.S)


def _snippets(path):
    """(first line number, code) of every block that runs."""
    text = path.read_text()
    return [(text.count('\n', 0, match.start(1)) + 1, match.group(1))
            for match in _BLOCK.finditer(text) if not match.group(2)]


def _is_asyncio(path) -> bool:
    return any('from txaioetcd.aio import' in code for _, code in _snippets(path))


def _documents():
    return sorted(p for p in DOCS.glob('*.md') if _snippets(p) and not _is_asyncio(p))


def _asyncio_documents():
    return sorted(p for p in DOCS.glob('*.md') if _snippets(p) and _is_asyncio(p))


def test_asyncio_documents_are_found():
    assert [p.name for p in _asyncio_documents()] == ['asyncio.md']


@pytest.mark.parametrize('path', _asyncio_documents(), ids=lambda p: p.name)
def test_asyncio_doc_snippets_run(path, etcd):
    lines = []
    for first, code in _snippets(path):
        lines += [''] * (first - 1 - len(lines))
        lines += code.splitlines()
    exec(compile('\n'.join(lines) + '\n', str(path), 'exec'), {'ETCD_URL': etcd.url, '__name__': 'doc'})


@pytest.mark.parametrize('path', _documents(), ids=lambda p: p.name)
@pytest_twisted.ensureDeferred
async def test_doc_snippets_run(path, etcd, reactor):
    lines = ['async def main(reactor):']
    for first, code in _snippets(path):
        lines += [''] * (first - 1 - len(lines))
        lines += textwrap.indent(code, '    ').splitlines()
    namespace = {'ETCD_URL': etcd.url}
    exec(compile('\n'.join(lines) + '\n', str(path), 'exec'), namespace)
    await namespace['main'](reactor)
