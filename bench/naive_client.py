"""The common mistake, as a baseline: ``requests.get(url)`` per URL from a thread pool.

Each ``requests.get`` builds a throwaway Session, so every URL pays a new TCP connection (and
leaves a TIME_WAIT socket behind). ThreadPoolExecutor(N), URL file streamed (at most 4 x N
submitted ahead), body read with ``.content``. Prints nothing; exit status 1 if any URL failed.

Usage: ``python naive_client.py URLFILE [--workers 20]``
"""

from __future__ import annotations

import sys

import requests
from pool_driver import drive


def fetch(url: str) -> bool:
    try:
        response = requests.get(url)
        _ = response.content
    except requests.RequestException:
        return False
    return response.status_code < 400


if __name__ == "__main__":
    sys.exit(drive(fetch, __doc__.splitlines()[0]))
