"""The text a person edits for a commit (``commits edit``, ``prepare``, ``commit``): a small YAML header
(version, author, comment), a line ``---``, then the payload as it is::

    version: 4
    author: ann
    comment: "raise the limit"
    ---
    limit = 20

Only this header is read (not YAML at large): ``key: value`` lines, values plain or in double quotes
with JSON escapes. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re

__all__ = ('render', 'parse', 'CommitTextError')

_SEPARATOR = '---'
_PLAIN = re.compile(r'^[A-Za-z0-9 _.,;:@+/()=-]*$')


class CommitTextError(ValueError):
    """The edited text does not have the header it needs; the message says what is wrong."""


def _quoted(value: str) -> str:
    if value and _PLAIN.match(value) and value == value.strip() and ': ' not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def render(version: int, author: str, comment: str, payload: bytes) -> bytes:
    header = f'version: {version}\nauthor: {_quoted(author)}\ncomment: {_quoted(comment)}\n{_SEPARATOR}\n'
    return header.encode('utf-8') + payload


def parse(text: bytes) -> tuple:
    """→ (version, author, comment, payload); CommitTextError if the header is broken."""
    head, sep, payload = text.partition(b'\n' + _SEPARATOR.encode() + b'\n')
    if not sep:
        if text.rstrip(b'\n').endswith(b'\n' + _SEPARATOR.encode()):      # an empty payload
            head, payload = text.rstrip(b'\n')[:-len(_SEPARATOR) - 1], b''
        else:
            raise CommitTextError(f'no line "{_SEPARATOR}" between the header and the payload')
    fields = {}
    for number, line in enumerate(head.decode('utf-8', 'replace').splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        name, colon, value = line.partition(':')
        if not colon or name.strip() not in ('version', 'author', 'comment'):
            raise CommitTextError(f'header line {number}: {line!r} is not "version: N", "author: ..." or '
                                  f'"comment: ..."')
        value = value.strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                raise CommitTextError(f'header line {number}: a badly quoted value {value}') from None
        elif value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = value[1:-1].replace("''", "'")
        fields[name.strip()] = value
    if 'version' not in fields or not str(fields['version']).isdigit() or int(fields['version']) < 1:
        raise CommitTextError('the header needs "version: N" with N a positive integer')
    if not fields.get('author'):
        raise CommitTextError('the header needs "author: ..."')
    return int(fields['version']), fields['author'], fields.get('comment', ''), payload
