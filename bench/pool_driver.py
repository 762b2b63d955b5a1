"""The shared driver of the two baseline clients: stream a URL file into a thread pool.

``naive_client.py`` and ``reference_client.py`` differ only in how one URL is fetched; this is
the rest (command line, streaming with at most 4 x N URLs submitted ahead, exit status 1 if any
URL failed), so the comparison between them measures the fetch and nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait


def drive(fetch: Callable[[str], bool], description: str) -> int:
    """Fetch every URL of the file named on the command line; 1 if any failed, else 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("urlfile")
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    failed = 0
    pending: set[Future[bool]] = set()
    with ThreadPoolExecutor(args.workers) as pool, open(args.urlfile, encoding="utf-8") as urls:
        for line in urls:
            url = line.strip()
            if not url or url.startswith("#"):
                continue
            if len(pending) >= 4 * args.workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed += sum(not f.result() for f in done)
            pending.add(pool.submit(fetch, url))
        failed += sum(not f.result() for f in pending)
    return 1 if failed else 0
