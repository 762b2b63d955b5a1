"""Pin the process to one CPU: measured, the largest single speed-up for a GIL-bound fetcher.

poolfetch's workers spend their CPU in Python (requests, urllib3, http.client) under the GIL,
so a second core adds no parallel work, only the cost of handing the GIL between threads on
different cores (wake-ups across cores, cache lines moving). Measured on the 2-core benchmark
machine (docs/benchmarks.md, nginx, 20,000 URLs, 20 workers): 1,530 req/s and 0.70 ms CPU per
request unpinned, 2,190-2,430 req/s and 0.41-0.46 ms pinned.

The CPU is chosen from the ones the process may use by its pid, so several poolfetch processes
on one machine (``poolfetch worker``) spread over the cores instead of sharing the first one.
Nothing is pinned where the interpreter runs without a GIL, or where the platform cannot.
"""

from __future__ import annotations

import os
import sys


def pin_to_one_cpu() -> int | None:
    """Restrict this process to one of its allowed CPUs; return it (None if not pinned)."""
    gil_check = getattr(sys, "_is_gil_enabled", None)
    if gil_check is not None and not gil_check():
        return None
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) <= 1:
            return None
        cpu = allowed[os.getpid() % len(allowed)]
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu
