"""A small HTTP/1.1 load generator for the commits API benchmark, run as its own process so that it
does not share the server's interpreter: N keep-alive connections, each sending its next request as
soon as the answer came.

    python benchmarks/_http_load.py --port P --connections 16 --seconds 5 get KEY
    python benchmarks/_http_load.py --port P --connections 16 --seconds 5 post KEYPREFIX

``get`` reads ``/KEY``; ``post`` commits to ``/KEYPREFIX-<connection>/<version>``, each connection on its
own key from version 1 up. Prints one JSON line: requests, seconds, per status, this process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


async def _connection(host, port, method, target, index, deadline, counts):
    reader, writer = await asyncio.open_connection(host, port)
    version = 0
    try:
        while time.monotonic() < deadline:
            if method == 'get':
                request = f'GET /{target} HTTP/1.1\r\nHost: {host}\r\n\r\n'.encode()
            else:
                version += 1
                body = f'value {version} of connection {index}\n'.encode()
                request = (f'POST /{target}-{index}/{version} HTTP/1.1\r\nHost: {host}\r\n'
                           f'X-Rainer-Author: bench\r\nContent-Length: {len(body)}\r\n\r\n').encode() + body
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b'\r\n', b''):
                    break
                name, _, value = line.partition(b':')
                if name.strip().lower() == b'content-length':
                    length = int(value)
            await reader.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


async def main(args):
    counts: dict = {}
    started = time.monotonic()
    cpu = os.times()
    deadline = started + args.seconds
    await asyncio.gather(*(_connection(args.host, args.port, args.method, args.target, i, deadline, counts)
                           for i in range(args.connections)))
    elapsed = time.monotonic() - started
    after = os.times()
    print(json.dumps({'requests': sum(counts.values()), 'seconds': elapsed, 'status': counts,
                      'cpu_seconds': (after.user - cpu.user) + (after.system - cpu.system)}), flush=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--connections', type=int, default=16)
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('method', choices=('get', 'post'))
    parser.add_argument('target')
    asyncio.run(main(parser.parse_args()))
