"""An asyncio service on txaioetcd.aio, with nothing but the standard library around it: a small HTTP
server (``asyncio.start_server``) that stores and reads notes through the Database, takes its
configuration live from etcd (a Mirror: no round trip per request), and runs its janitor only while it
holds the leader lock - so of two instances exactly one cleans up, and the other takes over when the
first one stops.

    PUT /notes/<name>   store the body as a note (413 when larger than config max_note_bytes)
    GET /notes/<name>   the note (404 when there is none)
    GET /notes          the names of every note, one per line

Run: python examples/asyncio/notes_service.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

import asyncio
import os
import time

from txaioetcd.aio import Client, Database, KeySet, pmap
from txaioetcd.recipes.mirror import Mirror
from txaioetcd.testing import LocalEtcd

ROOT = b'examples/asyncio-notes/'
CONFIG = ROOT + b'config/'
LEADER = ROOT + b'janitor'


class Note:
    def __init__(self, text: str, author: str, created: float):
        self.text, self.author, self.created = text, author, created

    def marshal(self) -> dict:
        return {'text': self.text, 'author': self.author, 'created': self.created}

    @staticmethod
    def parse(data: dict) -> 'Note':
        return Note(data['text'], data['author'], data['created'])


notes = pmap.MapStringCbor(1, marshal=Note.marshal, unmarshal=Note.parse)


class NotesService:
    """One instance of the service: its own etcd client, HTTP listener, config mirror and janitor."""

    def __init__(self, name: str, url: str):
        self.name = name
        self.etcd = Client(url=url)
        self.db = Database(self.etcd, prefix=ROOT + b'db/')
        self.config = Mirror(self.etcd, KeySet(CONFIG, prefix=True))
        self.server = None
        self.janitor = None
        self.leading = asyncio.Event()
        self.cleaned = 0

    def setting(self, name: str, default: int) -> int:
        value = self.config.get(CONFIG + name.encode())
        return int(value) if value is not None else default

    async def start(self) -> int:
        await self.config.ready()
        self.server = await asyncio.start_server(self.handle, '127.0.0.1', 0)
        self.janitor = asyncio.create_task(self.lead())
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.janitor.cancel()                      # releases the lock if held (async with below)
        await asyncio.gather(self.janitor, return_exceptions=True)
        self.server.close()
        await self.server.wait_closed()
        self.config.close()
        await self.etcd.close()

    # -- the leader's job

    async def lead(self) -> None:
        async with self.etcd.lock(LEADER, ttl=5):
            print(f'{self.name} holds the janitor lock')
            self.leading.set()
            while True:
                self.cleaned += await self.clean()
                await asyncio.sleep(0.05)

    async def clean(self) -> int:
        """Delete notes older than config max_age_s (the janitor's job)."""
        oldest = time.time() - self.setting('max_age_s', 3600)
        async with self.db.begin(write=True) as txn:
            stale = [name async for name, note in notes.select(txn) if note.created < oldest]
            for name in stale:
                del notes[txn, name]
        for name in stale:
            print(f'{self.name} removed stale note {name!r}')
        return len(stale)

    # -- HTTP

    async def handle(self, reader, writer) -> None:
        try:
            method, path, body = await read_request(reader)
            status, reply = await self.answer(method, path, body)
        except ValueError as error:
            status, reply = 400, str(error).encode()
        writer.write(b'HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s'
                     % (status, len(reply), reply))
        await writer.drain()
        writer.close()

    async def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == '/notes' and method == 'GET':
            async with self.db.begin() as txn:
                names = [name async for name in notes.select(txn, return_values=False)]
            return 200, ''.join(name + '\n' for name in names).encode()
        if not path.startswith('/notes/') or len(path) == len('/notes/'):
            return 404, b'no such resource'
        name = path[len('/notes/'):]
        if method == 'GET':
            async with self.db.begin() as txn:
                note = await notes[txn, name]
            return (404, b'no such note') if note is None else (200, note.text.encode())
        if method == 'PUT':
            limit = self.setting('max_note_bytes', 64)
            if len(body) > limit:
                return 413, b'note of %d bytes is over the limit of %d' % (len(body), limit)
            async with self.db.begin(write=True) as txn:
                notes[txn, name] = Note(body.decode(), self.name, time.time())
            return 200, b'stored'
        return 405, b'GET or PUT'


async def read_request(reader) -> tuple[str, str, bytes]:
    head = await reader.readuntil(b'\r\n\r\n')
    request_line, *headers = head.decode('latin-1').split('\r\n')
    method, path, _ = request_line.split(' ')
    length = 0
    for header in headers:
        key, _, value = header.partition(':')
        if key.strip().lower() == 'content-length':
            length = int(value)
    return method, path, await reader.readexactly(length)


async def http(port: int, method: str, path: str, body: bytes = b'') -> tuple[int, str]:
    """A minimal HTTP client (the standard library has no asyncio one)."""
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(b'%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s'
                 % (method.encode(), path.encode(), len(body), body))
    response = await reader.read()
    writer.close()
    head, _, content = response.partition(b'\r\n\r\n')
    return int(head.split(b' ')[1]), content.decode()


async def main(url: str) -> None:
    operator = Client(url=url)                                 # stands for an operator's tool
    await operator.delete(KeySet(ROOT, prefix=True))
    await operator.set(CONFIG + b'max_note_bytes', b'16')

    first, second = NotesService('instance-a', url), NotesService('instance-b', url)
    port = await first.start()
    await asyncio.wait_for(first.leading.wait(), 10)            # instance-a takes the lock first
    other_port = await second.start()

    print('PUT hello ->', *await http(port, 'PUT', '/notes/hello', b'hello, world'))
    print('PUT long  ->', *await http(port, 'PUT', '/notes/long', b'x' * 40))
    result = await operator.set(CONFIG + b'max_note_bytes', b'64')    # raise the limit, live
    await first.config.wait_for(result.header.revision, timeout=10)
    print('PUT long  ->', *await http(port, 'PUT', '/notes/long', b'x' * 40))
    print('GET hello on the other instance ->', *await http(other_port, 'GET', '/notes/hello'))
    status, listing = await http(other_port, 'GET', '/notes')
    print('GET /notes ->', status, listing.split())

    await first.stop()                                         # the lock's holder goes away
    print('instance-a stopped')
    result = await operator.set(CONFIG + b'max_age_s', b'0')   # now every note is stale
    await second.config.wait_for(result.header.revision, timeout=10)
    await asyncio.wait_for(second.leading.wait(), 10)
    for _ in range(200):                                       # bounded: the janitor runs every 50 ms
        if second.cleaned == 2:
            break
        await asyncio.sleep(0.05)
    print(f'instance-b took over the janitor and removed {second.cleaned} notes')
    assert first.cleaned == 0 and second.cleaned == 2
    print('GET /notes ->', *await http(other_port, 'GET', '/notes'))
    await second.stop()
    await operator.close()


async def run() -> None:
    url = os.environ.get('ETCD_URL')
    if url:
        await main(url)
        return
    async with LocalEtcd() as etcd:                            # a private etcd for the run
        await main(etcd.url)


if __name__ == '__main__':
    asyncio.run(run())
