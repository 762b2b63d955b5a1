"""The textbook bulk fetcher, as a baseline: what poolfetch's engine should not be slower than.

ThreadPoolExecutor(N) workers, each with its own ``requests.Session`` (``threading.local``)
mounting ``HTTPAdapter(pool_connections=20, pool_maxsize=20)``; one ``session.get(url)`` per
URL, body read with ``.content``; the URL file is streamed (at most 4 x N URLs submitted ahead).
No rate limit, no retries, no records: the bare cost of requests + urllib3 + threads.
Prints nothing; exit status 1 if any URL failed (exception or status >= 400).

Usage: ``python reference_client.py URLFILE [--workers 20]``
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import requests
from requests.adapters import HTTPAdapter

_local = threading.local()


def session() -> requests.Session:
    """This thread's session, built on first use and kept for the thread's life."""
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        adapter = HTTPAdapter(pool_connections=20, pool_maxsize=20)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        _local.session = current
    return current


def fetch(url: str) -> bool:
    try:
        response = session().get(url)
        _ = response.content
    except requests.RequestException:
        return False
    return response.status_code < 400


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
