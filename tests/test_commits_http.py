"""The commits HTTP API (txaioetcd.commits.web, Rainer's routes and ours) served in-process on 127.0.0.1
against a real etcd; CommitsClient (pyrainer's shapes) run in a thread; 503 while etcd is down and the
recovery after; and ``python -m txaioetcd commits serve`` as a process of its own."""

import base64
import difflib
import json
import os
import re
import signal
import sys
import urllib.request
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from io import BytesIO
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import protocol, threads
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from _loopback import connected, until, within
from txaioetcd import KeySet
from txaioetcd.commits import CommitStore
from txaioetcd.commits.http import CommitsClient, CommitsHTTPError, RemoteCommit
from txaioetcd.commits.web import CommitsResource
from txaioetcd.errors import CommitNotFound, VersionConflict

pytestmark = pytest.mark.filterwarnings('ignore:Using readBody with a transport:DeprecationWarning')

NS = 'ns'
META_FIELDS = {'key', 'version', 'author', 'comment', 'mtime', 'empty'}
NASTY = '<script>alert(1)</script> & "quotes"'
NASTY_KEY = '<img src=x onerror=alert(1)>&"quotes"'    # no '/': a key names one record
MTIME = '2026-12-03T06:30:00.123Z'


# -- helpers

@asynccontextmanager
async def serving(reactor, store, **options):
    """The commits API of ``store`` on 127.0.0.1, a free port → its base URL (ending in '/')."""
    from twisted.web.server import Site
    site = Site(CommitsResource(store, **options))
    site.displayTracebacks = False
    port = reactor.listenTCP(0, site, interface='127.0.0.1')
    try:
        yield f'http://127.0.0.1:{port.getHost().port}/'
    finally:
        await port.stopListening()


class Answer:
    def __init__(self, status, headers, body, length=None):
        self.status = status
        self._headers = headers
        self.body = body
        self.length = length        # the Content-Length (Agent takes it out of the headers)

    def header(self, name):
        """The last value of header ``name`` (str, decoded as UTF-8), or None."""
        values = self._headers.getRawHeaders(name.encode('ascii'))
        return values[-1].decode('utf-8') if values else None

    def headers(self, name):
        return [v.decode('utf-8') for v in self._headers.getRawHeaders(name.encode('ascii'), [])]

    @property
    def text(self):
        return self.body.decode('utf-8')

    def json(self):
        assert self.header('content-type') == 'application/json', self.header('content-type')
        assert self.body.endswith(b'\r\n'), self.body
        return json.loads(self.body)

    def __repr__(self):
        return f'<Answer {self.status} {self.body[:200]!r}>'


class _ChunkedBody(FileBodyProducer):
    """A body producer of unknown length: the request goes out chunked, without Content-Length."""

    def __init__(self, data):
        super().__init__(BytesIO(data))
        self.length = UNKNOWN_LENGTH


async def http(reactor, method, url, headers=None, body=None, timeout=15.0, chunked=False):
    """One request with twisted.web's Agent (a new connection, closed after) → Answer."""
    agent = Agent(reactor, connectTimeout=5)
    raw = Headers()
    for name, value in (headers or {}).items():
        raw.addRawHeader(name.encode('ascii'), value if isinstance(value, bytes) else value.encode('utf-8'))
    producer = None
    if body is not None:
        producer = _ChunkedBody(body) if chunked else FileBodyProducer(BytesIO(body))

    async def go():
        response = await agent.request(method.encode('ascii'), url.encode('ascii'), raw, producer)
        return Answer(response.code, response.headers, await readBody(response),
                      None if response.length is UNKNOWN_LENGTH else response.length)
    return await Deferred.fromCoroutine(go()).addTimeout(timeout, reactor)


def post(reactor, base, path, body=b'', author='alice', comment=None, headers=None, **options):
    given = {} if author is None else {'X-Rainer-Author': author}
    if comment is not None:
        given['X-Rainer-Comment'] = comment
    given.update(headers or {})
    return http(reactor, 'POST', base + path, given, body, **options)


async def snapshot(client, store, prefix):
    """Everything under the test's prefix (key, value, mod_revision) and the heads through the store."""
    kvs = (await client.get(KeySet(prefix, prefix=True))).kvs
    heads = await store.heads(all=True)
    return ([(kv.key, kv.value, kv.mod_revision) for kv in kvs],
            {key: (c.meta, c.payload) for key, c in heads.items()})


def meta_dict(meta):
    return {'key': meta.key, 'version': meta.version, 'author': meta.author, 'comment': meta.comment,
            'mtime': meta.mtime, 'empty': meta.empty}


class Page(HTMLParser):
    """What a page holds: every start tag, table rows (cell texts), links, headings and paragraphs."""

    ALLOWED = {'html', 'head', 'meta', 'title', 'style', 'body', 'h1', 'h2', 'p', 'a', 'table', 'thead',
               'tbody', 'tr', 'th', 'td', 'pre', 'span', 'i'}

    def __init__(self, body: bytes):
        super().__init__(convert_charrefs=True)
        self.tags, self.rows, self.links, self.blocks = [], [], [], []
        self._row = self._cell = self._block = None
        self._pre = None
        self._link = None
        self.pres = []
        self.feed(body.decode('utf-8'))
        self.close()
        unexpected = set(self.tags) - self.ALLOWED
        assert not unexpected, f'tags that are no part of the page: {unexpected}'

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        names = {name for name, _ in attrs}
        assert names <= {'href', 'class', 'id', 'lang', 'charset'}, f'<{tag}> with attributes {attrs}'
        attrs = dict(attrs)
        if tag == 'tr':
            self._row = (attrs.get('class'), [])
        elif tag in ('td', 'th') and self._row is not None:
            self._cell = []
        elif tag == 'a':
            self._link = (attrs.get('href'), [])
            self.links.append(self._link)
        elif tag in ('h1', 'h2', 'p', 'title'):
            self._block = (tag, attrs.get('id'), [])
        elif tag == 'pre':
            self._pre = []

    def handle_endtag(self, tag):
        if tag == 'a':
            self._link = None
        if tag in ('td', 'th') and self._cell is not None:
            self._row[1].append(''.join(self._cell))
            self._cell = None
        elif tag == 'tr' and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ('h1', 'h2', 'p', 'title') and self._block is not None:
            self.blocks.append((self._block[0], self._block[1], ''.join(self._block[2])))
            self._block = None
        elif tag == 'pre' and self._pre is not None:
            self.pres.append(''.join(self._pre))
            self._pre = None

    def handle_data(self, data):
        for part in (self._cell, self._block[2] if self._block else None, self._pre,
                     self._link[1] if self._link else None):
            if part is not None:
                part.append(data)

    def texts(self, tag):
        return [text for name, _, text in self.blocks if name == tag]


def html_page(answer):
    assert answer.status == 200, answer
    assert answer.header('content-type') == 'text/html; charset=UTF-8'
    body = answer.body.lower()
    assert b'<script' not in body and b'<img' not in body, answer.body
    return Page(answer.body)


def in_thread(function, *args, **kwargs):
    """A synchronous call (CommitsClient, urllib) in the reactor's thread pool: the reactor keeps
    serving meanwhile."""
    return threads.deferToThread(function, *args, **kwargs)


@pytest.fixture
def store(client, prefix):
    return CommitStore(client, NS, prefix=prefix)


# -- GET /

@pytest_twisted.ensureDeferred
async def test_list_heads_all_and_payloads(reactor, client, store, prefix):
    await store.commit('a', b'alpha', 1, 'alice', 'first', mtime=MTIME)
    a2 = await store.commit('a', 'alpha 2 \u00e9'.encode('utf-8'), 2, 'bob', 'second')
    b = await store.commit('b', b'\x00\xff\xfe binary', 1, 'carol')
    await store.commit('gone', b'x', 1, 'dave')
    gone = await store.uncommit('gone', 'dave', 'removed')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base)
        assert answer.status == 200
        listing = answer.json()
        assert listing == {'a': meta_dict(a2), 'b': meta_dict(b)}
        assert all(set(entry) == META_FIELDS for entry in listing.values())
        assert list(listing) == ['a', 'b']

        everything = (await http(reactor, 'GET', base + '?all=yes')).json()
        assert everything == {'a': meta_dict(a2), 'b': meta_dict(b), 'gone': meta_dict(gone)}
        assert everything['gone']['empty'] is True and everything['gone']['version'] == 2

        utf8 = (await http(reactor, 'GET', base + '?payload_utf8=yes&all=yes')).json()
        assert utf8['a']['payload_utf8'] == 'alpha 2 \u00e9'
        assert utf8['b']['payload_utf8'] == b'\x00\xff\xfe binary'.decode('utf-8', 'replace')
        assert 'payload_utf8' not in utf8['gone'] and 'payload_base64' not in utf8['a']
        assert set(utf8['gone']) == META_FIELDS

        b64 = (await http(reactor, 'GET', base + '?payload_base64=yes')).json()
        assert base64.b64decode(b64['b']['payload_base64']) == b'\x00\xff\xfe binary'
        assert base64.b64decode(b64['a']['payload_base64']) == 'alpha 2 \u00e9'.encode('utf-8')
        assert set(b64['a']) == META_FIELDS | {'payload_base64'}

        both = (await http(reactor, 'GET', base + '?payload_base64=yes&payload_utf8=yes')).json()
        assert set(both['a']) == META_FIELDS | {'payload_base64', 'payload_utf8'}


@pytest_twisted.ensureDeferred
async def test_list_of_an_empty_namespace(reactor, store):
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base)
        assert answer.status == 200 and answer.json() == {} and answer.body == b'{}\r\n'
        await store.commit('k', b'v', 1, 'a')
        await store.uncommit('k', 'a')
        assert (await http(reactor, 'GET', base)).json() == {}
        assert list((await http(reactor, 'GET', base + '?all=1')).json()) == ['k']


@pytest.mark.parametrize('value, shown', [('yes', True), ('YES', True), ('True', True), ('1', True),
                                          ('no', False), ('No', False), ('FALSE', False), ('0', False)])
@pytest_twisted.ensureDeferred
async def test_boolean_parameters_any_case(reactor, store, value, shown):
    await store.commit('live', b'v', 1, 'a')
    await store.commit('dead', b'v', 1, 'a')
    await store.uncommit('dead', 'a')
    async with serving(reactor, store) as base:
        listing = (await http(reactor, 'GET', f'{base}?all={value}&payload_utf8={value}')).json()
        assert ('dead' in listing) is shown and 'live' in listing
        assert ('payload_utf8' in listing['live']) is shown


@pytest.mark.parametrize('name', ['all', 'payload_utf8', 'payload_base64'])
@pytest.mark.parametrize('value', ['maybe', '', '2', 'yess'])
@pytest_twisted.ensureDeferred
async def test_invalid_boolean_parameter_is_400(reactor, store, name, value):
    await store.commit('k', b'v', 1, 'a')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', f'{base}?{name}={value}')
        assert answer.status == 400
        assert answer.text == f"Invalid '{name}' parameter (should be boolean)"
        assert answer.header('content-type') == 'text/plain; charset=UTF-8'


# -- GET /:key, /:key/:version, the meta routes

@pytest_twisted.ensureDeferred
async def test_get_payload_and_rainer_headers(reactor, store):
    first = await store.commit('cfg', b'one\n', 1, 'alice', 'the first', mtime=MTIME)
    second = await store.commit('cfg', b'two\n', 2, 'bob', '')
    async with serving(reactor, store) as base:
        for path, commit, payload in (('cfg', second, b'two\n'), ('cfg/2', second, b'two\n'),
                                      ('cfg/1', first, b'one\n')):
            answer = await http(reactor, 'GET', base + path)
            assert answer.status == 200 and answer.body == payload, path
            assert answer.header('content-type') == 'text/plain; charset=UTF-8'
            assert answer.length == len(payload)
            assert answer.header('x-rainer-key') == 'cfg'
            assert answer.header('x-rainer-version') == str(commit.version)
            assert answer.header('x-rainer-author') == commit.author
            assert answer.header('x-rainer-comment') == commit.comment
            assert answer.header('x-rainer-modified-time') == commit.mtime
            assert answer.header('x-rainer-empty') == 'No'
            assert answer.header('etag') == f'"{commit.version}"'
            assert answer.header('x-etcd-revision') == str(commit.revision)
        assert first.revision < second.revision
        assert (await http(reactor, 'GET', base + 'cfg/1')).header('x-rainer-modified-time') == MTIME
        trailing = await http(reactor, 'GET', base + 'cfg/')
        assert trailing.status == 200 and trailing.body == b'two\n'


@pytest_twisted.ensureDeferred
async def test_head_request_has_the_headers_and_no_body(reactor, store):
    commit = await store.commit('k', b'twelve bytes', 1, 'alice', 'c')

    def head(url, path):
        # http.client, to see the Content-Length of a HEAD answer as it came
        import http.client
        connection = http.client.HTTPConnection('127.0.0.1', int(url.split(':')[2].rstrip('/')), timeout=10)
        try:
            connection.request('HEAD', '/' + path)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()
    async with serving(reactor, store) as base:
        status, headers, body = await in_thread(head, base, 'k')
        assert status == 200 and body == b''
        assert headers['content-length'] == '12'
        assert headers['x-rainer-version'] == '1' and headers['etag'] == '"1"'
        assert headers['x-etcd-revision'] == str(commit.revision)
        assert headers['content-type'] == 'text/plain; charset=UTF-8'
        status, headers, body = await in_thread(head, base, 'nothing')
        assert status == 404 and body == b''
        answer = await http(reactor, 'HEAD', base + 'k')
        assert answer.status == 200 and answer.body == b'' and answer.header('x-rainer-key') == 'k'


@pytest_twisted.ensureDeferred
async def test_tombstone_reads_as_an_empty_commit(reactor, store):
    await store.commit('k', b'v', 1, 'alice')
    tomb = await store.uncommit('k', 'bob', 'bye')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base + 'k')
        assert answer.status == 200 and answer.body == b''
        assert answer.header('x-rainer-empty') == 'Yes' and answer.header('x-rainer-version') == '2'
        assert answer.header('content-type') == 'text/plain; charset=UTF-8'
        assert (await http(reactor, 'GET', base + 'k/meta')).json() == meta_dict(tomb)
        assert (await http(reactor, 'GET', base + 'k/1')).body == b'v'


@pytest_twisted.ensureDeferred
async def test_meta_routes(reactor, store):
    first = await store.commit('k', b'1', 1, 'alice', 'first', mtime=MTIME)
    second = await store.commit('k', b'2', 2, 'bob', 'second')
    async with serving(reactor, store) as base:
        latest = await http(reactor, 'GET', base + 'k/meta')
        assert latest.status == 200 and latest.json() == meta_dict(second)
        assert set(latest.json()) == META_FIELDS
        assert (await http(reactor, 'GET', base + 'k/1/meta')).json() == meta_dict(first)
        assert (await http(reactor, 'GET', base + 'k/2/meta')).json() == meta_dict(second)
        assert (await http(reactor, 'GET', base + 'k/1/meta')).json()['mtime'] == MTIME


@pytest.mark.parametrize('path', ['nothing', 'nothing/meta', 'nothing/1', 'nothing/1/meta', 'nothing/log',
                                  'k/2', 'k/2/meta', 'k/99', 'k/1/meta/more', 'k/1/other',
                                  'k/diff/1/2', 'nothing/diff/1/1', 'k/7?html', 'nothing?html',
                                  'nothing/log?html', 'k/diff/1/5?html'])
@pytest_twisted.ensureDeferred
async def test_unknown_is_404_key_not_found(reactor, store, path):
    await store.commit('k', b'v', 1, 'alice')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base + path)
        assert answer.status == 404 and answer.text == 'Key not found', answer
        assert answer.header('content-type') == 'text/plain; charset=UTF-8'


@pytest.mark.parametrize('path', ['k/0', 'k/abc', 'k/-1', 'k/1.5', 'k/0/meta', 'k/diff/x/1', 'k/diff/1/0'])
@pytest_twisted.ensureDeferred
async def test_malformed_version_is_400(reactor, store, path):
    await store.commit('k', b'v', 1, 'alice')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base + path)
        assert answer.status == 400 and answer.text.startswith('a version is a positive integer'), answer


@pytest_twisted.ensureDeferred
async def test_binary_payload_round_trip_as_octet_stream(reactor, client, store, prefix):
    payload = bytes(range(256)) * 4 + b'\xc3'          # not UTF-8
    async with serving(reactor, store) as base:
        written = await post(reactor, base, 'blob/1', payload,
                             headers={'Content-Type': 'application/octet-stream'})
        assert written.status == 200 and written.json()['version'] == 1
        assert (await store.get('blob')).payload == payload
        answer = await http(reactor, 'GET', base + 'blob')
        assert answer.status == 200 and answer.body == payload
        assert answer.header('content-type') == 'application/octet-stream'
        assert (await http(reactor, 'GET', base + 'blob/1')).body == payload
        listing = (await http(reactor, 'GET', base + '?payload_base64=yes')).json()
        assert base64.b64decode(listing['blob']['payload_base64']) == payload
        fetched = await in_thread(CommitsClient(base).get_value, 'blob')
        assert fetched == payload


@pytest_twisted.ensureDeferred
async def test_unicode_key(reactor, store):
    key = 'gr\u00fc\u00dfe'
    quoted = quote(key, safe='')
    assert quoted == 'gr%C3%BC%C3%9Fe'
    async with serving(reactor, store) as base:
        written = await post(reactor, base, f'{quoted}/1', 'Gr\u00fc\u00dfe!'.encode('utf-8'), comment='hallo')
        assert written.status == 200 and written.json()['key'] == key
        assert (await store.get(key)).payload == 'Gr\u00fc\u00dfe!'.encode('utf-8')
        answer = await http(reactor, 'GET', base + quoted)
        assert answer.status == 200 and answer.text == 'Gr\u00fc\u00dfe!'
        assert answer.header('x-rainer-key') == quoted
        assert (await http(reactor, 'GET', f'{base}{quoted}/meta')).json()['key'] == key
        assert list((await http(reactor, 'GET', base)).json()) == [key]
        assert [e['version'] for e in (await http(reactor, 'GET', f'{base}{quoted}/log')).json()] == [1]
        second = await post(reactor, base, f'{quoted}/2', b'again', headers={'X-Rainer-Key': key})
        assert second.status == 200 and second.json()['version'] == 2
        page = html_page(await http(reactor, 'GET', base + '?html'))
        assert page.rows[1][1][0] == key
        assert any(href == f'/{quoted}?html' for href, _ in page.links)


@pytest_twisted.ensureDeferred
async def test_x_rainer_key_given_back_as_the_server_sent_it(reactor, store):
    """A client that echoes X-Rainer-Key as a GET gave it (URL-quoted for a non-ASCII key) must not be
    refused for a key that matches."""
    key = 'gr\u00fc\u00dfe'
    quoted = quote(key, safe='')
    await store.commit(key, b'v', 1, 'alice')
    async with serving(reactor, store) as base:
        echoed = (await http(reactor, 'GET', base + quoted)).header('x-rainer-key')
        answer = await post(reactor, base, f'{quoted}/2', b'w', headers={'X-Rainer-Key': echoed})
        assert answer.status == 200, answer


# -- POST /:key/:version

@pytest_twisted.ensureDeferred
async def test_post_commits_and_answers_the_meta(reactor, client, store, prefix):
    async with serving(reactor, store) as base:
        answer = await post(reactor, base, 'k/1', b'hello', comment='the first',
                            headers={'X-Rainer-Modified-Time': MTIME, 'X-Rainer-Empty': 'no',
                                     'X-Rainer-Key': 'k', 'X-Rainer-Version': '1'})
        assert answer.status == 200
        meta = answer.json()
        assert meta == {'key': 'k', 'version': 1, 'author': 'alice', 'comment': 'the first', 'mtime': MTIME,
                        'empty': False}
        stored = await store.get('k')
        assert stored.payload == b'hello' and meta_dict(stored.meta) == meta
        assert answer.header('etag') == '"1"'
        assert answer.header('x-etcd-revision') == str(stored.meta.revision)

        # no comment, no mtime: the comment is '', the time is now, as Rainer writes it
        second = await post(reactor, base, 'k/2', b'world')
        assert second.status == 200
        meta2 = second.json()
        assert meta2['comment'] == '' and meta2['version'] == 2 and meta2['empty'] is False
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', meta2['mtime'])
        assert second.header('etag') == '"2"'
        assert int(second.header('x-etcd-revision')) > int(answer.header('x-etcd-revision'))

        # a tombstone
        tomb = await post(reactor, base, 'k/3', b'', headers={'X-Rainer-Empty': 'Yes'})
        assert tomb.status == 200 and tomb.json()['empty'] is True
        assert (await store.meta('k')).empty is True
        assert 'k' not in (await http(reactor, 'GET', base)).json()

        # an mtime with an offset is kept as it was given
        offset = await post(reactor, base, 'o/1', b'x', headers={'X-Rainer-Modified-Time': '2026-12-03T07:30:00+01:00'})
        assert offset.status == 200 and offset.json()['mtime'] == '2026-12-03T07:30:00+01:00'
        assert (await store.meta('o')).mtime == '2026-12-03T07:30:00+01:00'

        # an empty but not removed payload
        empty = await post(reactor, base, 'e/1', b'')
        assert empty.status == 200 and empty.json()['empty'] is False
        assert (await store.get('e')).payload == b''


@pytest.mark.parametrize('value, empty', [('yes', True), ('TRUE', True), ('1', True), ('No', False),
                                          ('false', False), ('0', False)])
@pytest_twisted.ensureDeferred
async def test_post_x_rainer_empty_booleans(reactor, store, value, empty):
    async with serving(reactor, store) as base:
        answer = await post(reactor, base, 'k/1', b'', headers={'X-Rainer-Empty': value})
        assert answer.status == 200 and answer.json()['empty'] is empty
        assert (await store.meta('k')).empty is empty


REFUSED = [
    ('k/1', {'author': None}, 400, 'Missing header: X-Rainer-Author'),
    ('k/1', {'author': ''}, 400, 'Empty header: X-Rainer-Author'),
    ('k/1', {'headers': {'X-Rainer-Empty': 'maybe'}}, 400, 'Malformed header: X-Rainer-Empty'),
    ('k/1', {'headers': {'X-Rainer-Empty': ''}}, 400, 'Malformed header: X-Rainer-Empty'),
    ('k/1', {'headers': {'X-Rainer-Empty': 'yes'}, 'body': b'x'}, 400,
     'Empty payload required with X-Rainer-Empty'),
    ('k/1', {'headers': {'X-Rainer-Key': 'other'}}, 400, 'X-Rainer-Key must match URL key, or be omitted'),
    ('k/1', {'headers': {'X-Rainer-Version': '2'}}, 400,
     'X-Rainer-Version must match URL version, or be omitted'),
    ('k/1', {'headers': {'X-Rainer-Version': '01'}}, 400,
     'X-Rainer-Version must match URL version, or be omitted'),
    ('k/1', {'headers': {'X-Rainer-Modified-Time': 'yesterday'}}, 400, 'Malformed header: X-Rainer-Modified-Time'),
    ('k/0', {}, 400, "a version is a positive integer, not '0'"),
    ('k/x', {}, 400, "a version is a positive integer, not 'x'"),
    ('', {}, 405, 'POST a commit to /:key/:version'),
    ('k', {}, 404, 'POST a commit to /:key/:version'),
    ('k/1/meta', {}, 404, 'POST a commit to /:key/:version'),
]


@pytest.mark.parametrize('path, options, status, reason', REFUSED,
                         ids=[f'{r[2]}-{r[3][:40]}-{i}' for i, r in enumerate(REFUSED)])
@pytest_twisted.ensureDeferred
async def test_refused_post_writes_nothing(reactor, client, store, prefix, path, options, status, reason):
    options = dict(options)
    body = options.pop('body', b'payload')
    async with serving(reactor, store) as base:
        before = await snapshot(client, store, prefix)
        answer = await post(reactor, base, path, body, **options)
        assert answer.status == status and answer.text == reason, answer
        assert answer.header('content-type') == 'text/plain; charset=UTF-8'
        assert await snapshot(client, store, prefix) == before
        # the same once the key exists: the request is refused before any version check
        await store.commit('k', b'v1', 1, 'alice')
        before = await snapshot(client, store, prefix)
        again = await post(reactor, base, path, body, **options)
        assert again.status == status and again.text == reason, again
        assert await snapshot(client, store, prefix) == before


@pytest_twisted.ensureDeferred
async def test_version_conflict_is_409_with_rainer_json(reactor, client, store, prefix):
    async with serving(reactor, store) as base:
        ahead = await post(reactor, base, 'k/3', b'x')
        assert ahead.status == 409
        assert ahead.json() == {'conflict': {'key': 'k', 'expectedVersion': 1, 'providedVersion': 3}}
        assert await snapshot(client, store, prefix) == ([], {})
        assert (await post(reactor, base, 'k/1', b'one')).status == 200
        before = await snapshot(client, store, prefix)
        for version in (1, 3, 10):
            answer = await post(reactor, base, f'k/{version}', b'again')
            assert answer.status == 409
            assert answer.json() == {'conflict': {'key': 'k', 'expectedVersion': 2, 'providedVersion': version}}
        assert await snapshot(client, store, prefix) == before
        assert (await post(reactor, base, 'k/2', b'two')).status == 200


@pytest_twisted.ensureDeferred
async def test_if_match(reactor, client, store, prefix):
    async with serving(reactor, store) as base:
        # no version yet: "0" matches, * does not (there is nothing to match)
        star = await post(reactor, base, 'k/1', b'x', headers={'If-Match': '*'})
        assert star.status == 412 and star.header('etag') == '"0"'
        assert await snapshot(client, store, prefix) == ([], {})
        first = await post(reactor, base, 'k/1', b'one', headers={'If-Match': '"0"'})
        assert first.status == 200 and first.header('etag') == '"1"'

        etag = (await http(reactor, 'GET', base + 'k')).header('etag')
        assert etag == '"1"'
        second = await post(reactor, base, 'k/2', b'two', headers={'If-Match': etag})
        assert second.status == 200 and second.header('etag') == '"2"'

        before = await snapshot(client, store, prefix)
        stale = await post(reactor, base, 'k/3', b'three', headers={'If-Match': '"1"'})
        assert stale.status == 412 and stale.header('etag') == '"2"'
        assert stale.text == "If-Match \"1\" does not match the latest version of 'k' (\"2\")"
        unquoted = await post(reactor, base, 'k/3', b'three', headers={'If-Match': '2'})
        assert unquoted.status == 412
        assert await snapshot(client, store, prefix) == before

        listed = await post(reactor, base, 'k/3', b'three', headers={'If-Match': '"7", "2"'})
        assert listed.status == 200 and listed.header('etag') == '"3"'
        anything = await post(reactor, base, 'k/4', b'four', headers={'If-Match': '*'})
        assert anything.status == 200
        assert (await store.meta('k')).version == 4


@pytest_twisted.ensureDeferred
async def test_token_guards_writes_only(reactor, client, store, prefix):
    await store.commit('k', b'v1', 1, 'alice')
    async with serving(reactor, store, token='s3cret') as base:
        before = await snapshot(client, store, prefix)
        for given in (None, '', 'Bearer wrong', 's3cret', 'Basic s3cret', 'Bearer', 'Bearer s3cret2'):
            headers = {} if given is None else {'Authorization': given}
            answer = await post(reactor, base, 'k/2', b'v2', headers=headers)
            assert answer.status == 401, (given, answer)
            assert answer.header('www-authenticate') == 'Bearer'
            assert answer.text == 'writes need Authorization: Bearer <token>'
        assert await snapshot(client, store, prefix) == before
        # reads need no token
        assert (await http(reactor, 'GET', base + 'k')).body == b'v1'
        assert list((await http(reactor, 'GET', base)).json()) == ['k']
        ok = await post(reactor, base, 'k/2', b'v2', headers={'Authorization': 'Bearer s3cret'})
        assert ok.status == 200 and ok.json()['version'] == 2
        # the token is checked before anything else: a malformed request without it is a 401
        bad = await post(reactor, base, 'k/9', b'', author=None)
        assert bad.status == 401


@pytest.mark.parametrize('chunked', [False, True], ids=['content-length', 'chunked'])
@pytest_twisted.ensureDeferred
async def test_body_over_max_body_is_413(reactor, client, store, prefix, chunked):
    async with serving(reactor, store, max_body=10) as base:
        answer = await post(reactor, base, 'k/1', b'x' * 11, chunked=chunked)
        assert answer.status == 413 and answer.text.startswith('Payload too large'), answer
        assert await snapshot(client, store, prefix) == ([], {})
        exact = await post(reactor, base, 'k/1', b'y' * 10, chunked=chunked)
        assert exact.status == 200
        assert (await store.get('k')).payload == b'y' * 10


@pytest_twisted.ensureDeferred
async def test_max_body_defaults_to_the_store_limit(reactor, client, prefix):
    store = CommitStore(client, NS, prefix=prefix, max_payload=100)
    async with serving(reactor, store) as base:
        answer = await post(reactor, base, 'k/1', b'x' * 101)
        assert answer.status == 413, answer
        assert await snapshot(client, store, prefix) == ([], {})
        assert (await post(reactor, base, 'k/1', b'x' * 100)).status == 200
    # a body the resource takes but the store refuses: 413 too, nothing written
    async with serving(reactor, store, max_body=1000) as base:
        before = await snapshot(client, store, prefix)
        answer = await post(reactor, base, 'k/2', b'x' * 500)
        assert answer.status == 413 and 'max_payload' in answer.text, answer
        assert await snapshot(client, store, prefix) == before


@pytest.mark.parametrize('key', ['a b', 'semi;colon', '%41', 'dots..', 'q?x=1&y', 'hash#tag', 'plus+'])
@pytest_twisted.ensureDeferred
async def test_keys_with_url_specials(reactor, store, key):
    quoted = quote(key, safe='')
    async with serving(reactor, store) as base:
        answer = await post(reactor, base, f'{quoted}/1', b'v')
        assert answer.status == 200, answer
        assert answer.json()['key'] == key
        assert (await store.get(key)).payload == b'v'
        assert (await http(reactor, 'GET', base + quoted)).body == b'v'


@pytest_twisted.ensureDeferred
async def test_key_with_slash_cannot_be_named(reactor, client, store, prefix):
    async with serving(reactor, store) as base:
        # twisted.web splits the path before unquoting: the key is 'a/b', which no commit can have
        answer = await post(reactor, base, 'a%2Fb/1', b'v')
        assert answer.status == 400 and '"/"' in answer.text, answer
        assert await snapshot(client, store, prefix) == ([], {})
        assert (await http(reactor, 'GET', base + 'a%2Fb')).status == 400
        assert (await http(reactor, 'GET', base + 'a%2Fb/log')).status == 400


# -- GET /:key/log and /:key/diff/A/B

@pytest_twisted.ensureDeferred
async def test_log_newest_first_with_revisions(reactor, store):
    metas = [await store.commit('k', f'v{n}'.encode(), n, f'author{n}', f'comment {n}') for n in range(1, 6)]
    await store.commit('other', b'x', 1, 'z')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base + 'k/log')
        assert answer.status == 200
        log = answer.json()
        assert log == [dict(meta_dict(m), revision=m.revision) for m in reversed(metas)]
        assert [e['revision'] for e in log] == sorted((e['revision'] for e in log), reverse=True)
        assert [e['version'] for e in (await http(reactor, 'GET', base + 'k/log?limit=2')).json()] == [5, 4]
        assert [e['version'] for e in (await http(reactor, 'GET', base + 'k/log?before=3')).json()] == [2, 1]
        assert [e['version'] for e in (await http(reactor, 'GET', base + 'k/log?before=5&limit=2')).json()] == [4, 3]
        assert [e['version'] for e in (await http(reactor, 'GET', base + 'k/log?limit=1000')).json()] == [5, 4, 3, 2, 1]
        assert (await http(reactor, 'GET', base + 'k/log?before=1')).status == 404
        for query in ('limit=0', 'limit=abc', 'limit=1001', 'limit=-1', 'before=0', 'before=x'):
            bad = await http(reactor, 'GET', f'{base}k/log?{query}')
            name = query.split('=')[0]
            assert bad.status == 400 and bad.text.startswith(f"Invalid '{name}' parameter"), (query, bad)


@pytest_twisted.ensureDeferred
async def test_log_pages_past_one_etcd_page(reactor, store):
    for n in range(1, 106):
        await store.commit('k', b'%d' % n, n, 'a')
    async with serving(reactor, store) as base:
        log = (await http(reactor, 'GET', base + 'k/log')).json()
        assert [e['version'] for e in log] == list(range(105, 0, -1))
        tail = (await http(reactor, 'GET', base + 'k/log?before=102&limit=3')).json()
        assert [e['version'] for e in tail] == [101, 100, 99]


@pytest_twisted.ensureDeferred
async def test_diff_text(reactor, store):
    old = 'same\nold line\nend\n'
    new = 'same\nnew line\nend\nadded\n'
    await store.commit('k', old.encode(), 1, 'a')
    await store.commit('k', new.encode(), 2, 'a')
    async with serving(reactor, store) as base:
        answer = await http(reactor, 'GET', base + 'k/diff/1/2')
        assert answer.status == 200
        assert answer.header('content-type') == 'text/plain; charset=UTF-8'
        expected = ''.join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                'k version 1', 'k version 2'))
        assert answer.text == expected
        assert '-old line\n' in answer.text and '+new line\n' in answer.text and '+added\n' in answer.text
        backwards = await http(reactor, 'GET', base + 'k/diff/2/1')
        assert '+old line\n' in backwards.text and '-added\n' in backwards.text
        assert (await http(reactor, 'GET', base + 'k/diff/1/1')).body == b''
        assert (await http(reactor, 'GET', base + 'k/diff/1/3')).status == 404


@pytest_twisted.ensureDeferred
async def test_diff_without_final_newline(reactor, store):
    await store.commit('k', b'a\nb', 1, 'x')
    await store.commit('k', b'a\nc', 2, 'x')
    async with serving(reactor, store) as base:
        text = (await http(reactor, 'GET', base + 'k/diff/1/2')).text
        assert text.endswith('-b\n+c\n') and text.count('\n') == len(text.splitlines())


# -- the HTML view

@pytest_twisted.ensureDeferred
async def test_html_heads_page_escapes_everything(reactor, store):
    await store.commit(NASTY_KEY, b'p', 1, NASTY, NASTY, mtime=MTIME)
    plain = await store.commit('plain', b'p', 1, 'bob', '')
    await store.commit('removed', b'p', 1, 'carol')
    await store.uncommit('removed', 'carol', NASTY)
    async with serving(reactor, store) as base:
        for headers, path in (({'Accept': 'text/html'}, ''), ({}, '?html'), ({}, '?html=1'),
                              ({'Accept': 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8'}, '')):
            answer = await http(reactor, 'GET', base + path, headers)
            page = html_page(answer)
            assert b'&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;' in answer.body
            assert page.rows[0] == (None, ['key', 'version', 'author', 'time', 'comment'])
            assert page.rows[1:] == [(None, [NASTY_KEY, '1', NASTY, MTIME, NASTY]),
                                     (None, ['plain', '1', 'bob', plain.mtime, ''])]
            assert page.texts('h1') == [NS] and page.texts('title') == [f'{NS}: commits']
            assert f'/{quote(NASTY_KEY, safe="")}?html' in [href for href, _ in page.links]
            assert '/?html&all=yes' in [href for href, _ in page.links]

        everything = html_page(await http(reactor, 'GET', base + '?html&all=yes'))
        rows = {cells[0]: (css, cells) for css, cells in everything.rows[1:]}
        assert list(rows) == [NASTY_KEY, 'plain', 'removed']
        assert rows['removed'][0] == 'tomb' and rows['removed'][1][1] == '2 (removed)'
        assert rows['removed'][1][4] == NASTY
        assert '/?html' in [href for href, _ in everything.links]

        # the link to a key's page works
        href = f'/{quote(NASTY_KEY, safe="")}?html'
        followed = html_page(await http(reactor, 'GET', base.rstrip('/') + href))
        assert followed.texts('h1') == [NASTY_KEY]

        # JSON is still the answer for clients that prefer it
        for accept in ('application/json', 'application/json, text/html', '*/*'):
            assert (await http(reactor, 'GET', base, {'Accept': accept})).header('content-type') == \
                'application/json', accept


@pytest_twisted.ensureDeferred
async def test_html_of_an_empty_namespace(reactor, store):
    async with serving(reactor, store) as base:
        page = html_page(await http(reactor, 'GET', base + '?html'))
        assert page.rows == [] and 'No commits yet.' in page.texts('p')


@pytest_twisted.ensureDeferred
async def test_html_history_page(reactor, store):
    first = await store.commit(NASTY_KEY, b'line <b>one</b>\n', 1, NASTY, NASTY, mtime=MTIME)
    second = await store.commit(NASTY_KEY, b'line <b>two</b>\n', 2, 'bob', '')
    third = await store.uncommit(NASTY_KEY, 'carol', 'gone & done')
    quoted = quote(NASTY_KEY, safe='')
    async with serving(reactor, store) as base:
        for path, headers in ((f'{quoted}?html', {}), (quoted, {'Accept': 'text/html'}),
                              (f'{quoted}/log?html', {}), (f'{quoted}/log', {'Accept': 'text/html'}),
                              (f'{quoted}/2?html', {})):
            answer = await http(reactor, 'GET', base + path, headers)
            page = html_page(answer)
            assert page.texts('h1') == [NASTY_KEY], path
            assert page.texts('title') == [f'{NASTY_KEY}: history']
            assert page.texts('h2') == ['version 3 (removed)', 'version 2', 'version 1']
            assert [i for name, i, _ in page.blocks if name == 'h2'] == ['v3', 'v2', 'v1']
            paragraphs = page.texts('p')
            assert f'{NASTY}, {MTIME}, etcd revision {first.revision}: {NASTY}' in paragraphs
            assert f'bob, {second.mtime}, etcd revision {second.revision}: no comment' in paragraphs
            assert f'carol, {third.mtime}, etcd revision {third.revision}: gone & done' in paragraphs
            assert b'<b>' not in answer.body
            # diffs: v1 shown whole, v2 against v1, v3 (empty) against v2
            assert page.pres[2] == 'line <b>one</b>\n'
            assert '-line <b>one</b>' in page.pres[1] and '+line <b>two</b>' in page.pres[1]
            assert '-line <b>two</b>' in page.pres[0]
            assert 'span' in page.tags

        # a limited page diffs its oldest commit against the one before it
        limited = html_page(await http(reactor, 'GET', f'{base}{quoted}/log?html&limit=1&before=3'))
        assert limited.texts('h2') == ['version 2']
        assert '-line <b>one</b>' in limited.pres[0]


@pytest_twisted.ensureDeferred
async def test_html_diff_page(reactor, store):
    await store.commit(NASTY_KEY, b'<script>alert(1)</script>\nsame\n', 1, NASTY)
    await store.commit(NASTY_KEY, b'"quotes" & more\nsame\n', 2, NASTY)
    await store.commit('k', b'x\n', 1, 'a')
    await store.commit('k', b'x\n', 2, 'a', 'no change')
    quoted = quote(NASTY_KEY, safe='')
    async with serving(reactor, store) as base:
        for path, headers in ((f'{quoted}/diff/1/2?html', {}), (f'{quoted}/diff/1/2', {'Accept': 'text/html'})):
            answer = await http(reactor, 'GET', base + path, headers)
            page = html_page(answer)
            assert page.texts('h1') == [f'{NASTY_KEY}: version 1 \u2192 2']
            assert page.texts('title') == [f'{NASTY_KEY}: diff']
            assert (f'/{quoted}/log?html', ['history']) in page.links
            pre = page.pres[0]
            assert '-<script>alert(1)</script>' in pre and '+"quotes" & more' in pre and ' same' in pre
        unchanged = html_page(await http(reactor, 'GET', base + 'k/diff/1/2?html'))
        assert unchanged.pres == ['(no change in the payload)']


# -- CommitsClient (pyrainer's shapes), in a thread

@pytest_twisted.ensureDeferred
async def test_commits_client_pyrainer_shapes(reactor, client, store, prefix):
    async with serving(reactor, store) as base:
        cc = CommitsClient(base, timeout=10)
        assert cc.commit_uri('k') == base + 'k'
        assert cc.commit_uri('k', 3) == base + 'k/3'
        assert cc.commit_uri('gr\u00fc\u00dfe', 1) == base + 'gr%C3%BC%C3%9Fe/1'
        assert CommitsClient(base.rstrip('/')).commit_uri('k') == base + 'k'

        assert await in_thread(cc.list) == {}
        meta = await in_thread(cc.post_commit, {'key': 'k', 'version': 1, 'author': 'alice',
                                                'comment': 'first', 'mtime': MTIME}, 'text one')
        assert meta == {'key': 'k', 'version': 1, 'author': 'alice', 'comment': 'first', 'mtime': MTIME,
                        'empty': False}
        meta2 = await in_thread(cc.post_commit, {'key': 'k', 'version': 2, 'author': 'bob'}, b'\x00bin\xff')
        assert meta2['version'] == 2 and meta2['comment'] == ''
        await in_thread(cc.post_commit, {'key': 'gone', 'version': 1, 'author': 'c'}, b'x')
        tomb = await in_thread(cc.post_commit, {'key': 'gone', 'version': 2, 'author': 'c', 'empty': True}, None)
        assert tomb['empty'] is True
        assert (await store.get('k')).payload == b'\x00bin\xff'

        listing = await in_thread(cc.list)
        assert listing == {'k': meta2}
        assert set((await in_thread(cc.list, all=True))) == {'k', 'gone'}

        full = await in_thread(cc.list_full)
        assert set(full) == {'k'} and isinstance(full['k'], RemoteCommit)
        assert full['k'].value == b'\x00bin\xff' and full['k'].meta == meta2
        full_all = await in_thread(cc.list_full, all=True)
        assert full_all['gone'].value is None and full_all['gone'].empty is True

        commit = await in_thread(cc.get_commit, 'k', 1)
        assert (commit.key, commit.version, commit.author, commit.comment, commit.mtime, commit.empty) == \
            ('k', 1, 'alice', 'first', MTIME, False)
        assert commit.value == b'text one'
        latest = await in_thread(cc.get_commit, 'k')
        assert latest.version == 2 and latest.value == b'\x00bin\xff'
        removed = await in_thread(cc.get_commit, 'gone')
        assert removed.empty and removed.value is None
        assert await in_thread(cc.get_value, 'k') == b'\x00bin\xff'
        assert await in_thread(cc.get_value, 'k', 1) == b'text one'
        assert await in_thread(cc.get_metadata, 'k') == meta2
        assert await in_thread(cc.get_metadata, 'k', 1) == meta

        log = await in_thread(cc.log, 'k')
        assert [e['version'] for e in log] == [2, 1] and all('revision' in e for e in log)
        assert [e['version'] for e in await in_thread(cc.log, 'k', limit=1)] == [2]
        assert [e['version'] for e in await in_thread(cc.log, 'k', before=2)] == [1]

        reverted = await in_thread(cc.revert, 'k', 1, 'dave')
        assert reverted['version'] == 3 and reverted['comment'] == 'Revert to version 1'
        assert (await store.get('k')).payload == b'text one'
        again = await in_thread(cc.revert, 'k', 2, 'dave', 'back to binary')
        assert again['version'] == 4 and again['comment'] == 'back to binary'
        assert await in_thread(cc.get_value, 'k') == b'\x00bin\xff'
        # reverting to a tombstone removes the key again
        back = await in_thread(cc.revert, 'gone', 2, 'eve')
        assert back['empty'] is True and back['version'] == 3


@pytest_twisted.ensureDeferred
async def test_commits_client_errors(reactor, client, store, prefix):
    await store.commit('k', b'v1', 1, 'alice')
    async with serving(reactor, store, token='tok') as base:
        cc = CommitsClient(base, timeout=10)
        before = await snapshot(client, store, prefix)
        with pytest.raises(VersionConflict) as conflict:
            await in_thread(CommitsClient(base, token='tok').post_commit,
                            {'key': 'k', 'version': 5, 'author': 'a'}, b'x')
        assert (conflict.value.key, conflict.value.expected_version, conflict.value.provided_version) == \
            ('k', 2, 5)
        with pytest.raises(CommitsHTTPError) as unauthorized:
            await in_thread(cc.post_commit, {'key': 'k', 'version': 2, 'author': 'a'}, b'x')
        assert unauthorized.value.status == 401
        assert await snapshot(client, store, prefix) == before
        for call in (lambda: cc.get_commit('nothing'), lambda: cc.get_value('k', 7),
                     lambda: cc.get_metadata('nothing'), lambda: cc.log('nothing'),
                     lambda: cc.get_metadata('k', 2)):
            with pytest.raises(CommitNotFound):
                await in_thread(call)
        with pytest.raises(CommitsHTTPError) as bad:
            await in_thread(CommitsClient(base, token='tok').post_commit,
                            {'key': 'k', 'version': 2, 'author': 'a', 'empty': True}, b'x')
        assert bad.value.status == 400 and 'Empty payload required' in str(bad.value)
        ok = await in_thread(CommitsClient(base, token='tok').post_commit,
                             {'key': 'k', 'version': 2, 'author': 'a'}, 'v2')
        assert ok['version'] == 2
    # nothing listens there any more
    with pytest.raises(CommitsHTTPError) as unreachable:
        await in_thread(CommitsClient(base, timeout=5).list)
    assert unreachable.value.status == 0 and 'cannot reach' in str(unreachable.value)


@pytest_twisted.ensureDeferred
async def test_commits_client_non_ascii_author_and_comment(reactor, store):
    """Authors like 'Jörg' and 'Łukasz': CommitsClient sends header values as UTF-8; a client that sends
    a str header the way urllib/requests (and so pyrainer) do, as latin-1, is understood too."""
    async with serving(reactor, store) as base:
        cc = CommitsClient(base, timeout=10)
        meta = await in_thread(cc.post_commit, {'key': 'k', 'version': 1, 'author': '\u0141ukasz',
                                                'comment': 'Gr\u00fc\u00dfe \u2603'}, b'v')
        assert meta['author'] == '\u0141ukasz' and meta['comment'] == 'Gr\u00fc\u00dfe \u2603'
        assert (await store.meta('k')).author == '\u0141ukasz'

        def latin1_post():
            request = urllib.request.Request(f'{base}k/2', data=b'w', method='POST',
                                             headers={'X-Rainer-Author': 'J\u00f6rg', 'X-Rainer-Comment': 'sch\u00f6n'})
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        meta = await in_thread(latin1_post)
        assert (meta['author'], meta['comment']) == ('J\u00f6rg', 'sch\u00f6n')
        assert (await store.meta('k', 2)).author == 'J\u00f6rg'


@pytest_twisted.ensureDeferred
async def test_concurrent_posts_of_one_version_one_wins(reactor, client, store, prefix):
    await store.commit('k', b'v1', 1, 'alice')
    async with serving(reactor, store) as base:
        from twisted.internet.defer import gatherResults
        answers = await gatherResults([Deferred.fromCoroutine(post(reactor, base, 'k/2', b'w%d' % n, author=f'a{n}'))
                                       for n in range(6)])
        statuses = sorted(a.status for a in answers)
        assert statuses == [200] + [409] * 5
        for answer in answers:
            if answer.status == 409:
                assert answer.json()['conflict']['expectedVersion'] == 3
        winner = next(a for a in answers if a.status == 200).json()
        assert (await store.meta('k')).author == winner['author']
        assert len([e async for e in store.history('k')]) == 2


# -- etcd goes away and comes back

@pytest_twisted.ensureDeferred
async def test_503_while_etcd_is_down_and_recovery(reactor, etcd_factory, prefix):
    server = await in_thread(etcd_factory)
    async with connected(reactor, server.url, timeout=3) as own_client:
        store = CommitStore(own_client, NS, prefix=prefix)
        async with serving(reactor, store) as base:
            assert (await post(reactor, base, 'k/1', b'before')).status == 200
            await in_thread(server.stop)
            assert not server.running
            for path in ('', 'k', 'k/meta', 'k/log'):
                down = await http(reactor, 'GET', base + path, timeout=20)
                assert down.status == 503, (path, down)
                assert down.text.startswith('etcd is unavailable: '), down
                assert '\n' not in down.text
                assert down.header('retry-after') == '1'
                assert down.header('content-type') == 'text/plain; charset=UTF-8'
            refused = await post(reactor, base, 'k/2', b'while down', timeout=20)
            assert refused.status == 503, refused

            url = server.url
            await in_thread(server.start)
            assert server.url == url, 'etcd came back on other ports (the harness chose again)'

            async def answers():
                try:
                    return (await http(reactor, 'GET', base + 'k', timeout=5)).status == 200
                except Exception:
                    return False
            await until(reactor, answers, timeout=40, what='the API to answer 200 after etcd restarted',
                        interval=0.2)
            again = await http(reactor, 'GET', base + 'k')
            assert again.body == b'before' and again.header('x-rainer-version') == '1'
            # the refused write did not land; the next one does
            assert [e['version'] for e in (await http(reactor, 'GET', base + 'k/log')).json()] == [1]
            written = await post(reactor, base, 'k/2', b'after')
            assert written.status == 200 and written.json()['version'] == 2
            assert (await store.get('k')).payload == b'after'


# -- python -m txaioetcd commits serve

class _Server(protocol.ProcessProtocol):
    """A child process: its output, the Deferred of the 'serving ... at URL' line and of its end."""

    LINE = re.compile(rb"serving commits of namespace '([^']*)' at (http://127\.0\.0\.1:\d+/) \(etcd ([^;]*); "
                      rb"writes (need the token|open)\); Ctrl-C stops\n")

    def __init__(self):
        self.out = b''
        self.err = b''
        self.serving = Deferred()
        self.ended = Deferred()

    def outReceived(self, data):
        self.out += data
        found = self.LINE.search(self.out)
        if found and not self.serving.called:
            self.serving.callback(found)

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        if not self.serving.called:
            self.serving.errback(AssertionError(f'the server ended first: {reason.value}\nstdout: {self.out!r}\n'
                                                f'stderr: {self.err[-3000:]!r}'))
        self.ended.callback(reason.value.exitCode)


@asynccontextmanager
async def cli_server(reactor, *args):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ('TXAIOETCD_COMMITS_TOKEN', 'ETCDCTL_ENDPOINTS')}
    environment['PYTHONUNBUFFERED'] = '1'
    child = _Server()
    command = [sys.executable, '-m', 'txaioetcd', 'commits', 'serve', *args]
    process = reactor.spawnProcess(child, sys.executable, command, env=environment,
                                   path=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pid = process.pid
    try:
        found = await within(reactor, child.serving, 60, f'the "serving" line of {command}')
        yield child, found, pid
    finally:
        if not child.ended.called:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await within(reactor, child.ended, 10, f'pid {pid} to end after SIGKILL')


async def _stop_with_sigint(reactor, child, pid):
    os.kill(pid, signal.SIGINT)
    code = await within(reactor, child.ended, 10, f'the server (pid {pid}) to exit after SIGINT')
    assert code == 0, (code, child.out, child.err[-3000:])


@pytest_twisted.ensureDeferred
async def test_cli_serve(reactor, etcd, client, prefix):
    store = CommitStore(client, 't', prefix=prefix)
    async with cli_server(reactor, '--namespace', 't', '--listen', 'tcp:0', '--endpoints', etcd.url,
                          '--prefix', prefix.decode('ascii')) as (child, found, pid):
        assert found.group(1) == b't' and found.group(3).decode() == etcd.url
        assert found.group(4) == b'open'
        base = found.group(2).decode()
        written = await post(reactor, base, 'k/1', b'from the cli test', comment='c')
        assert written.status == 200 and written.json()['version'] == 1
        answer = await http(reactor, 'GET', base + 'k')
        assert answer.status == 200 and answer.body == b'from the cli test'
        # it landed in namespace 't' under the prefix
        commit = await store.get('k')
        assert commit.payload == b'from the cli test' and commit.meta.comment == 'c'
        assert answer.header('x-etcd-revision') == str(commit.meta.revision)
        assert list((await http(reactor, 'GET', base)).json()) == ['k']
        await _stop_with_sigint(reactor, child, pid)
    assert b'Traceback' not in child.err, child.err


@pytest_twisted.ensureDeferred
async def test_cli_serve_with_token(reactor, etcd, client, prefix):
    store = CommitStore(client, 't', prefix=prefix)
    async with cli_server(reactor, '--namespace', 't', '--listen', 'tcp:0', '--endpoints', etcd.url,
                          '--prefix', prefix.decode('ascii'), '--token', 'cli-token') as (child, found, pid):
        assert found.group(4) == b'need the token'
        base = found.group(2).decode()
        refused = await post(reactor, base, 'k/1', b'x')
        assert refused.status == 401 and refused.header('www-authenticate') == 'Bearer'
        assert await store.heads(all=True) == {}
        written = await post(reactor, base, 'k/1', b'with token', headers={'Authorization': 'Bearer cli-token'})
        assert written.status == 200
        assert (await http(reactor, 'GET', base + 'k')).body == b'with token'
        cc = CommitsClient(base, token='cli-token')
        assert (await in_thread(cc.post_commit, {'key': 'k', 'version': 2, 'author': 'x'}, b'two'))['version'] == 2
        assert (await store.get('k')).payload == b'two'
        await _stop_with_sigint(reactor, child, pid)
    assert b'Traceback' not in child.err, child.err
