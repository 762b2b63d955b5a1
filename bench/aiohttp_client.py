"""An asyncio baseline: one aiohttp ClientSession, N connections, N worker tasks.

What a single-threaded event loop does with the same job (no threads, no GIL hand-offs). The
URL file is streamed: the N tasks share one line iterator. Body read with ``await r.read()``.
Prints nothing; exit status 1 if any URL failed. aiohttp is the optional ``bench`` extra.

Usage: ``python aiohttp_client.py URLFILE [--connections 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator

import aiohttp


def urls_of(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        url = line.strip()
        if url and not url.startswith("#"):
            yield url


async def worker(session: aiohttp.ClientSession, urls: Iterator[str]) -> int:
    failed = 0
    for url in urls:
        try:
            async with session.get(url) as response:
                await response.read()
                failed += response.status >= 400
        except aiohttp.ClientError:
            failed += 1
    return failed


async def run(path: str, connections: int) -> int:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        with open(path, encoding="utf-8") as lines:
            urls = urls_of(lines)
            counts = await asyncio.gather(*(worker(session, urls) for _ in range(connections)))
    return sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urlfile")
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    return 1 if asyncio.run(run(args.urlfile, args.connections)) else 0


if __name__ == "__main__":
    sys.exit(main())
