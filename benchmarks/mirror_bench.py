"""Mirror memory and load time: 100,000 keys of 100-byte values held in a local Mirror.

    python benchmarks/mirror_bench.py [--keys 100000] [--url URL]

Without ``--url`` it starts an embedded etcd (as client_bench.py does) and stops it afterwards.
Memory is what ``tracemalloc`` sees allocated by building the mirror (snapshot loaded, watch
running), divided by the number of keys, and compared with the raw key + value bytes. Target: at most
3x the raw bytes.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import run_window  # noqa: E402
from client_bench import run  # noqa: E402

from txaioetcd import Client, KeySet  # noqa: E402
from txaioetcd.recipes.mirror import Mirror  # noqa: E402

VALUE = b'v' * 100


async def main(reactor, args, etcd_info: dict):
    client = Client(reactor, args.url, timeout=60)
    prefix = b'/txaioetcd-mirror-bench/%d/' % os.getpid()
    keys = [prefix + b'%08d' % i for i in range(args.keys)]
    try:
        await run_window(lambda i: client.set(keys[i], VALUE), 64, 0, args.keys, args.keys)
        raw = sum(len(key) + len(VALUE) for key in keys)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        t0 = time.perf_counter()
        mirror = Mirror(client, KeySet(prefix, prefix=True))
        await mirror.ready()
        loaded = time.perf_counter() - t0
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        used = sum(stat.size_diff for stat in after.compare_to(before, 'filename'))
        assert len(mirror) == args.keys
        print(f'etcd {etcd_info.get("etcd")}: mirror of {args.keys:,} keys ({len(keys[0])}-byte keys, '
              f'{len(VALUE)}-byte values) loaded in {loaded:.2f} s ({args.keys / loaded:,.0f} keys/s)')
        print(f'  memory {used / args.keys:,.0f} bytes/key = {used / raw:.2f}x the raw key+value bytes '
              f'(target <= 3x: {"PASS" if used / raw <= 3 else "MISS"})')
        mirror.close()
    finally:
        await client.delete(KeySet(prefix, prefix=True), timeout=120)
        await client.close()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--keys', type=int, default=100_000)
    parser.add_argument('--url', help='use this etcd instead of starting one')
    return parser.parse_args(argv)


if __name__ == '__main__':
    run(parse_args(), main)
