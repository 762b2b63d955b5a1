"""The common mistake, as a baseline: ``requests.get(url)`` per URL from a thread pool.

Each ``requests.get`` builds a throwaway Session, so every URL pays a new TCP connection (and
leaves a TIME_WAIT socket behind). ThreadPoolExecutor(N), URL file streamed (at most 4 x N
submitted ahead), body read with ``.content``. Prints nothing; exit status 1 if any URL failed.

Usage: ``python naive_client.py URLFILE [--workers 20]``
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import requests


def fetch(url: str) -> bool:
    try:
        response = requests.get(url)
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
