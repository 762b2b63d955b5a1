"""The textbook bulk fetcher, as a baseline: what poolfetch's engine should not be slower than.

ThreadPoolExecutor(N) workers, each with its own ``requests.Session`` (``threading.local``)
mounting ``HTTPAdapter(pool_connections=20, pool_maxsize=20)``; one ``session.get(url)`` per
URL, body read with ``.content``; the URL file is streamed (at most 4 x N URLs submitted ahead).
No rate limit, no retries, no records: the bare cost of requests + urllib3 + threads.
Prints nothing; exit status 1 if any URL failed (exception or status >= 400).

Usage: ``python reference_client.py URLFILE [--workers 20]``
"""

from __future__ import annotations

import sys
import threading

import requests
from pool_driver import drive
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


if __name__ == "__main__":
    sys.exit(drive(fetch, __doc__.splitlines()[0]))
