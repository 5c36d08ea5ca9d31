"""The read-only HTML view of the commits API: heads, a key's history with diffs, a diff of two
versions. Plain HTML with a little CSS, no scripts; everything that came from users is escaped."""

from __future__ import annotations

import difflib
from html import escape
from urllib.parse import quote

__all__ = ('heads_page', 'history_page', 'diff_page', 'unified_diff')

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3em .8em; }
tr:nth-child(even) { background: #f4f4f4; } th { border-bottom: 2px solid #ccc; }
pre { background: #f8f8f8; padding: .8em; overflow-x: auto; }
.add { color: #075e07; } .del { color: #a01010; } .hunk { color: #555; } .tomb { color: #888; }
"""


def _page(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n').encode('utf-8')


def _link(base: str, key: str, *rest) -> str:
    """``base`` is where the API is mounted ('/' or '/diary/')."""
    return base + '/'.join([quote(key, safe='')] + [str(r) for r in rest]) + '?html'


def heads_page(base: str, namespace: str, heads: dict, everything: bool) -> bytes:
    rows = []
    for key, commit in heads.items():
        meta = commit.meta
        mark = ' class="tomb"' if meta.empty else ''
        rows.append(f'<tr{mark}><td><a href="{escape(_link(base, key))}">{escape(key)}</a></td><td>{meta.version}'
                    f'{" (removed)" if meta.empty else ""}</td><td>{escape(meta.author)}</td>'
                    f'<td>{escape(meta.mtime)}</td><td>{escape(meta.comment)}</td></tr>')
    table = ('<table><thead><tr><th>key</th><th>version</th><th>author</th><th>time</th><th>comment</th></tr>'
             '</thead><tbody>' + ''.join(rows) + '</tbody></table>') if rows else '<p>No commits yet.</p>'
    toggle = (f'<a href="{escape(base)}?html">hide removed keys</a>' if everything else
              f'<a href="{escape(base)}?html&amp;all=yes">show removed keys</a>')
    return _page(f'{namespace}: commits', f'<h1>{escape(namespace)}</h1>\n<p>{len(heads)} key(s); {toggle}</p>\n{table}')


def unified_diff(old, new) -> str:
    """A unified diff of two commits' payloads (as UTF-8 text, undecodable bytes replaced)."""
    a = old.payload.decode('utf-8', 'replace').splitlines(keepends=True)
    b = new.payload.decode('utf-8', 'replace').splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, f'{old.meta.key} version {old.meta.version}',
                                 f'{new.meta.key} version {new.meta.version}')
    return ''.join(line if line.endswith('\n') else line + '\n' for line in lines)


def _diff_html(old, new) -> str:
    if old is None:
        return f'<pre>{escape(new.payload.decode("utf-8", "replace"))}</pre>'
    out = []
    for line in unified_diff(old, new).splitlines():
        css = 'add' if line.startswith('+') else 'del' if line.startswith('-') else \
            'hunk' if line.startswith('@@') else ''
        out.append(f'<span class="{css}">{escape(line)}</span>' if css else escape(line))
    return '<pre>' + ('\n'.join(out) or '(no change in the payload)') + '</pre>'


def history_page(base: str, namespace: str, key: str, commits: list, older) -> bytes:
    """``commits`` newest first; ``older`` the commit before the oldest shown (for its diff), or None."""
    parts = [f'<h1>{escape(key)}</h1>', f'<p><a href="{escape(base)}?html">all keys of {escape(namespace)}</a></p>']
    for i, commit in enumerate(commits):
        meta = commit.meta
        previous = commits[i + 1] if i + 1 < len(commits) else older
        title = f'version {meta.version}' + (' (removed)' if meta.empty else '')
        parts.append(f'<h2 id="v{meta.version}">{title}</h2><p>{escape(meta.author)}, {escape(meta.mtime)}, etcd '
                     f'revision {meta.revision}: {escape(meta.comment) or "<i>no comment</i>"}</p>')
        parts.append(_diff_html(previous, commit))
    return _page(f'{key}: history', '\n'.join(parts))


def diff_page(base: str, namespace: str, key: str, old, new) -> bytes:
    body = (f'<h1>{escape(key)}: version {old.meta.version} → {new.meta.version}</h1>'
            f'<p><a href="{escape(_link(base, key, "log"))}">history</a></p>{_diff_html(old, new)}')
    return _page(f'{key}: diff', body)
