"""The commits HTTP API: Rainer's, so that pyrainer and scripts written for Rainer work unchanged, plus
``GET /:key/log`` (history), ``ETag``/``If-Match`` and a read-only HTML view for people.

``CommitsResource(store)`` is a twisted.web resource; mount it in a ``Site`` of your own or run
``python -m txaioetcd commits serve``. Every bad request is a 4xx with a one-line reason and writes
nothing; when etcd cannot be reached the answer is 503 with the reason, and the next request tries again.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote

from twisted.logger import Logger
from twisted.web import resource, server

from .._defer import Deferred
from ..errors import (CommitNotFound, InvalidCommitKey, OutcomeUnknown, PayloadTooLarge, ServerError,
                      TransportError, VersionConflict)
from . import _html
from ._layout import check_mtime

__all__ = ('CommitsResource', 'yes_no')

_log = Logger()
_HISTORY_LIMIT = 1000


class _Refused(Exception):
    """A request answered with ``status`` and a one-line ``reason`` (and nothing written)."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def yes_no(value: str | None, name: str, default: bool = False) -> bool:
    """Rainer's booleans: yes/true/1 and no/false/0, any case; anything else is a 400."""
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ('yes', 'true', '1'):
        return True
    if lowered in ('no', 'false', '0'):
        return False
    raise _Refused(400, f"Invalid '{name}' parameter (should be boolean)")


def _meta_json(meta) -> dict:
    """Rainer's metadata map, exactly (the etcd revision goes in a header and in /log)."""
    return {'key': meta.key, 'version': meta.version, 'author': meta.author, 'comment': meta.comment,
            'mtime': meta.mtime, 'empty': meta.empty}


def _meta_headers(meta) -> dict:
    return {'X-Rainer-Key': quote(meta.key, safe=''), 'X-Rainer-Version': str(meta.version),
            'X-Rainer-Author': meta.author, 'X-Rainer-Comment': meta.comment,
            'X-Rainer-Modified-Time': meta.mtime, 'X-Rainer-Empty': 'Yes' if meta.empty else 'No',
            'ETag': f'"{meta.version}"', 'X-Etcd-Revision': str(meta.revision)}


class CommitsResource(resource.Resource):
    """Rainer's HTTP API over ``store`` (a CommitStore). ``token``: POSTs need ``Authorization: Bearer
    <token>``. ``max_body``: the largest POST body taken (default: the store's ``max_payload``)."""

    isLeaf = True

    def __init__(self, store, token: str | None = None, max_body: int | None = None):
        super().__init__()
        self.store = store
        self.token = token
        self.max_body = max_body if max_body is not None else store.max_payload

    # -- twisted.web

    def render_GET(self, request):
        return self._start(request, self._get)

    def render_HEAD(self, request):
        return self._start(request, self._get)

    def render_POST(self, request):
        return self._start(request, self._post)

    def _start(self, request, handler):
        finished = []
        request.notifyFinish().addBoth(finished.append)      # the client may go away meanwhile
        d = Deferred.fromCoroutine(handler(request))
        d.addCallbacks(lambda answer: self._send(request, finished, *answer),
                       lambda failure: self._failed(request, finished, failure))
        return server.NOT_DONE_YET

    def _send(self, request, finished, status: int, body: bytes, content_type: str, headers: dict | None = None):
        if finished:
            return
        request.setResponseCode(status)
        request.setHeader('Content-Type', content_type)
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        request.setHeader('Content-Length', str(len(body)))
        if request.method != b'HEAD':
            request.write(body)
        request.finish()

    def _failed(self, request, finished, failure):
        error = failure.value
        if isinstance(error, _Refused):
            status, reason, headers = error.status, error.reason, error.headers
        elif isinstance(error, CommitNotFound):
            status, reason, headers = 404, 'Key not found', {}
        elif isinstance(error, InvalidCommitKey):
            status, reason, headers = 400, str(error), {}
        elif isinstance(error, PayloadTooLarge):
            status, reason, headers = 413, str(error), {}
        elif isinstance(error, OutcomeUnknown):
            status, reason, headers = 504, (f'the outcome of the commit is unknown ({error.reason}): read its '
                                            f'/meta to see whether it landed'), {}
        elif isinstance(error, (TransportError, ServerError)):
            status, reason, headers = 503, f'etcd is unavailable: {error}', {'Retry-After': '1'}
        else:
            _log.failure('commits API: {method} {uri} failed', failure, method=request.method.decode(),
                         uri=request.uri.decode('latin-1'))
            status, reason, headers = 500, f'internal error: {type(error).__name__}', {}
        self._send(request, finished, status, reason.replace('\n', ' ').encode('utf-8'),
                   'text/plain; charset=UTF-8', headers)

    # -- routing

    @staticmethod
    def _path(request) -> list:
        parts = [p.decode('utf-8', 'replace') for p in request.postpath]
        while parts and parts[-1] == '':
            parts.pop()
        return parts

    @staticmethod
    def _arg(request, name: str) -> str | None:
        values = request.args.get(name.encode())
        return values[-1].decode('utf-8', 'replace') if values else None

    def _wants_html(self, request) -> bool:
        # twisted.web drops a bare ``?html`` from request.args (no '='): look at the query itself.
        query = request.uri.partition(b'?')[2]
        if any(part.split(b'=')[0] == b'html' for part in query.split(b'&')):
            return True
        accept = (request.getHeader('accept') or '').lower()
        return 'text/html' in accept and 'application/json' not in accept.split('text/html')[0]

    async def _get(self, request):
        parts = self._path(request)
        html = self._wants_html(request)
        if not parts:
            return await self._list(request, html)
        key = parts[0]
        if len(parts) == 1:
            return await self._payload(request, key, None, html)
        if parts[1] == 'meta' and len(parts) == 2:
            return self._json(_meta_json(await self.store.meta(key)))
        if parts[1] == 'log' and len(parts) == 2:
            return await self._history(request, key, html)
        if parts[1] == 'diff' and len(parts) == 4:
            return await self._diff(request, key, _version_of(parts[2]), _version_of(parts[3]), html)
        version = _version_of(parts[1])
        if len(parts) == 2:
            return await self._payload(request, key, version, html)
        if len(parts) == 3 and parts[2] == 'meta':
            return self._json(_meta_json(await self.store.meta(key, version)))
        raise _Refused(404, 'Key not found')

    async def _list(self, request, html: bool):
        everything = yes_no(self._arg(request, 'all'), 'all')
        utf8 = yes_no(self._arg(request, 'payload_utf8'), 'payload_utf8')
        b64 = yes_no(self._arg(request, 'payload_base64'), 'payload_base64')
        heads = await self.store.heads(all=everything)
        if html:
            return 200, _html.heads_page(_base(request), self.store.namespace, heads, everything), 'text/html; charset=UTF-8'
        out = {}
        for key, commit in heads.items():
            entry = _meta_json(commit.meta)
            if utf8 and not commit.meta.empty:
                entry['payload_utf8'] = commit.payload.decode('utf-8', 'replace')
            if b64 and not commit.meta.empty:
                entry['payload_base64'] = base64.b64encode(commit.payload).decode('ascii')
            out[key] = entry
        return self._json(out)

    async def _payload(self, request, key: str, version: int | None, html: bool):
        commit = await self.store.get(key, version)
        if html:
            return await self._history(request, key, True)
        try:
            commit.payload.decode('utf-8')
            content_type = 'text/plain; charset=UTF-8'
        except UnicodeDecodeError:
            content_type = 'application/octet-stream'
        return 200, commit.payload, content_type, _meta_headers(commit.meta)

    async def _history(self, request, key: str, html: bool):
        limit = self._arg(request, 'limit')
        before = self._arg(request, 'before')
        limit = _int_arg(limit, 'limit', 1, _HISTORY_LIMIT) if limit is not None else _HISTORY_LIMIT
        before = _int_arg(before, 'before', 1, None) if before is not None else None
        commits = [c async for c in self.store.history(key, before=before, limit=limit)]
        if not commits:
            raise _Refused(404, 'Key not found')
        if html:
            older = [c async for c in self.store.history(key, before=commits[-1].meta.version, limit=1)]
            page = _html.history_page(_base(request), self.store.namespace, key, commits, older[0] if older else None)
            return 200, page, 'text/html; charset=UTF-8'
        return self._json([dict(_meta_json(c.meta), revision=c.meta.revision) for c in commits])

    async def _diff(self, request, key: str, old: int, new: int, html: bool):
        a, b = await self.store.get(key, old), await self.store.get(key, new)
        if html:
            return 200, _html.diff_page(_base(request), self.store.namespace, key, a, b), 'text/html; charset=UTF-8'
        return 200, _html.unified_diff(a, b).encode('utf-8'), 'text/plain; charset=UTF-8'

    @staticmethod
    def _json(data) -> tuple:
        return 200, (json.dumps(data, ensure_ascii=False) + '\r\n').encode('utf-8'), 'application/json'

    # -- writing

    async def _post(self, request):
        parts = self._path(request)
        if len(parts) != 2:
            raise _Refused(405 if not parts else 404, 'POST a commit to /:key/:version')
        key, version = parts[0], _version_of(parts[1])
        self._authorize(request)
        body = self._body(request)
        def header(name: str) -> str | None:
            return _header_text(request, name)
        given_key = header('x-rainer-key')
        if given_key is not None and given_key != key and unquote(given_key) != key:
            raise _Refused(400, 'X-Rainer-Key must match URL key, or be omitted')
        if header('x-rainer-version') is not None and header('x-rainer-version') != str(version):
            raise _Refused(400, 'X-Rainer-Version must match URL version, or be omitted')
        author = header('x-rainer-author')
        if author is None:
            raise _Refused(400, 'Missing header: X-Rainer-Author')
        if not author:
            raise _Refused(400, 'Empty header: X-Rainer-Author')
        comment = header('x-rainer-comment') or ''
        try:
            empty = yes_no(header('x-rainer-empty'), 'X-Rainer-Empty')
        except _Refused:
            raise _Refused(400, 'Malformed header: X-Rainer-Empty') from None
        if empty and body:
            raise _Refused(400, 'Empty payload required with X-Rainer-Empty')
        mtime = header('x-rainer-modified-time')
        if mtime is not None:
            try:
                check_mtime(mtime)
            except ValueError:
                raise _Refused(400, 'Malformed header: X-Rainer-Modified-Time') from None
        await self._check_if_match(request, key, version)
        try:
            meta = await self.store.commit(key, body, version, author, comment, empty=empty, mtime=mtime)
        except VersionConflict as conflict:
            body = {'conflict': {'key': conflict.key, 'expectedVersion': conflict.expected_version,
                                 'providedVersion': conflict.provided_version}}
            return 409, (json.dumps(body) + '\r\n').encode('utf-8'), 'application/json'
        status, data, content_type = self._json(_meta_json(meta))
        return status, data, content_type, {'ETag': f'"{meta.version}"', 'X-Etcd-Revision': str(meta.revision)}

    def _authorize(self, request):
        if self.token is None:
            return
        given = request.getHeader('authorization') or ''
        if given != f'Bearer {self.token}':
            raise _Refused(401, 'writes need Authorization: Bearer <token>', {'WWW-Authenticate': 'Bearer'})

    def _body(self, request) -> bytes:
        length = request.getHeader('content-length')
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _Refused(413, f'Payload too large: {int(length):,} bytes, the limit is {self.max_body:,}')
        request.content.seek(0)
        body = request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise _Refused(413, f'Payload too large: over {self.max_body:,} bytes')
        return body

    async def _check_if_match(self, request, key: str, version: int):
        """``If-Match: "N"``: the commit goes on top of version N only (ETag of the latest); else 412."""
        wanted = request.getHeader('if-match')
        if wanted is None:
            return
        try:
            latest = (await self.store.meta(key)).version
        except CommitNotFound:
            latest = 0
        tags = [tag.strip() for tag in wanted.split(',')]
        if '*' in tags and latest:
            return
        if f'"{latest}"' not in tags:
            raise _Refused(412, f'If-Match {wanted} does not match the latest version of {key!r} ("{latest}")',
                           {'ETag': f'"{latest}"'})


def _header_text(request, name: str) -> str | None:
    """A request header as text. Clients send UTF-8 (ours) or latin-1 (urllib, requests, hence pyrainer,
    for a str value): UTF-8 when it decodes, else latin-1, so that neither is a 500."""
    raw = request.requestHeaders.getRawHeaders(name.encode('ascii'))
    if not raw:
        return None
    value = raw[-1]
    try:
        return value.decode('utf-8')
    except UnicodeDecodeError:
        return value.decode('latin-1')


def _base(request) -> str:
    """The path this resource is mounted at, ending in '/'."""
    mounted = '/'.join(quote(p.decode('utf-8', 'replace'), safe='') for p in request.prepath if p)
    return '/' + mounted + '/' if mounted else '/'


def _version_of(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise _Refused(400, f'a version is a positive integer, not {text!r}')
    return int(text)


def _int_arg(text: str, name: str, low: int, high: int | None) -> int:
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f'{low} ... {high}' if high is not None else f'>= {low}'
        raise _Refused(400, f"Invalid '{name}' parameter (an integer {bounds})")
    return int(text)

