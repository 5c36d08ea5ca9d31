"""CommitsClient: a synchronous client of the commits HTTP API (ours, or a Rainer server), on the
standard library's urllib, for scripts with no reactor. Method names and shapes are pyrainer's, so
code written for it works with ``CommitsClient`` in its place; ``log`` and ``revert`` are added.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from ..errors import CommitError, CommitNotFound, VersionConflict

__all__ = ('CommitsClient', 'RemoteCommit', 'CommitsHTTPError')


class CommitsHTTPError(CommitError):
    """The server answered with an error status; ``status`` and ``reason`` (its one-line body)."""

    def __init__(self, status: int, reason: str, url: str, body: bytes = b''):
        self.status = status
        self.body = body
        super().__init__(f'{status} {reason}' if status else reason, url)


class RemoteCommit:
    """pyrainer's RainerCommit: ``meta`` (a dict), ``value`` (bytes, None for an empty commit) and the
    metadata as properties."""

    def __init__(self, meta: dict, value: bytes | None):
        self.meta = dict(meta)
        self.value = value
        if self.meta.get('empty', False) and value is not None:
            raise ValueError("a value was given, so 'empty' should be false")
        if not self.meta.get('empty', False) and value is None:
            raise ValueError("no value was given, so 'empty' should be true")

    key = property(lambda self: self.meta['key'])
    version = property(lambda self: self.meta['version'])
    author = property(lambda self: self.meta['author'])
    comment = property(lambda self: self.meta['comment'])
    mtime = property(lambda self: self.meta['mtime'])
    empty = property(lambda self: self.meta.get('empty', False))

    def __repr__(self):
        return f'RemoteCommit({self.meta!r}, {len(self.value or b"")} bytes)'


class CommitsClient:
    """The API at ``base_uri`` (e.g. 'http://127.0.0.1:8080'); ``token`` for servers that need one for
    writes; ``timeout`` (seconds) for every request."""

    def __init__(self, base_uri: str, token: str | None = None, timeout: float = 10.0):
        if not base_uri:
            raise ValueError('base_uri is required')
        self.base_uri = base_uri.rstrip('/')
        self.token = token
        self.timeout = timeout

    def commit_uri(self, key: str, version: int | None = None) -> str:
        """The URI of a key, or of one version of it."""
        return self.base_uri + '/' + quote(key, safe='') + (f'/{version}' if version is not None else '')

    # -- reading

    def list(self, all: bool = False) -> dict:
        """{key: metadata} of the latest commits (empty ones only with ``all``)."""
        return self._json(self.base_uri + ('?all=yes' if all else ''))

    def list_full(self, all: bool = False) -> dict:
        """{key: RemoteCommit} of the latest commits, payloads included."""
        listing = self._json(self.base_uri + '?payload_base64=yes' + ('&all=yes' if all else ''))
        return {key: RemoteCommit({k: v for k, v in meta.items() if k != 'payload_base64'},
                                  base64.b64decode(meta['payload_base64']) if not meta.get('empty') else None)
                for key, meta in listing.items()}

    def get_commit(self, key: str, version: int | None = None) -> RemoteCommit:
        meta = self.get_metadata(key, version)
        value = None if meta.get('empty', False) else self.get_value(key, meta['version'])
        return RemoteCommit(meta, value)

    def get_value(self, key: str, version: int | None = None) -> bytes:
        return self._request(self.commit_uri(key, version))[1]

    def get_metadata(self, key: str, version: int | None = None) -> dict:
        return self._json(self.commit_uri(key, version) + '/meta')

    def log(self, key: str, before: int | None = None, limit: int | None = None) -> list:
        """Metadata of the versions of ``key``, newest first (with each commit's etcd ``revision``)."""
        query = {k: v for k, v in (('before', before), ('limit', limit)) if v is not None}
        return self._json(self.commit_uri(key) + '/log' + (f'?{urlencode(query)}' if query else ''))

    # -- writing

    def post_commit(self, metadata: dict, value) -> dict:
        """Commit ``value`` (bytes or str) with ``metadata`` (key, version, author, comment, empty) →
        the commit's metadata; VersionConflict when the version is not the next one."""
        data = value.encode('utf-8') if isinstance(value, str) else (value or b'')
        # Header values as UTF-8 bytes: http.client would send a str as latin-1 (and refuse 'Łukasz').
        headers = {'Content-Type': 'application/octet-stream',
                   'X-Rainer-Author': metadata['author'].encode('utf-8'),
                   'X-Rainer-Comment': metadata.get('comment', '').encode('utf-8'),
                   'X-Rainer-Empty': 'true' if metadata.get('empty', False) else 'false'}
        if metadata.get('mtime'):
            headers['X-Rainer-Modified-Time'] = metadata['mtime']
        url = self.commit_uri(metadata['key'], metadata['version'])
        try:
            return json.loads(self._request(url, data, headers)[1])
        except CommitsHTTPError as error:
            if error.status == 409 and error.body:
                conflict = json.loads(error.body)['conflict']
                raise VersionConflict(conflict['key'], conflict['expectedVersion'], conflict['providedVersion']) \
                    from None
            raise

    def revert(self, key: str, to_version: int, author: str, comment: str | None = None) -> dict:
        """A new commit of ``to_version``'s payload on top of the latest → its metadata."""
        old = self.get_commit(key, to_version)
        latest = self.get_metadata(key)
        return self.post_commit({'key': key, 'version': latest['version'] + 1, 'author': author,
                                 'comment': comment if comment is not None else f'Revert to version {to_version}',
                                 'empty': old.empty}, old.value)

    # -- HTTP

    def _json(self, url: str):
        return json.loads(self._request(url)[1])

    def _request(self, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple:
        headers = dict(headers or {})
        if data is not None and self.token is not None:
            headers['Authorization'] = f'Bearer {self.token}'
        request = urllib.request.Request(url, data=data, headers=headers, method='POST' if data is not None else 'GET')
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            if error.code == 404:
                raise CommitNotFound(f'{url}: 404 {body.decode("utf-8", "replace").strip()}') from None
            raise CommitsHTTPError(error.code, body.decode('utf-8', 'replace').strip()[:500], url, body) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, 'reason', error)
            raise CommitsHTTPError(0, f'cannot reach the commits API: {reason}', url) from None
