"""``--limit-rate``: body bytes per second over all workers together.

A token bucket on bytes, kept as a "theoretical arrival time" (GCRA): each piece of body a
worker has just read reserves its share of the line, ``len / rate`` seconds after the end of the
previous reservation (or now, if the line was idle), and the worker waits until its reservation
is no more than ``burst`` seconds ahead. Reservations are taken under one lock, so workers are
served in the order they read and the total never exceeds ``rate * elapsed + burst bytes``;
the wait itself happens outside the lock, on the run's cancel event, so a signal ends it.

The burst is short (``BURST_S`` of the rate) so that the rate holds over a few seconds, not
only on average: a 10 MB body at 1 MiB/s takes 10 s minus at most 50 ms. Paying after reading
(instead of before) keeps one lock operation per piece and no extra system call; to keep
pieces small against the rate, ``read_size`` says how much a worker should read at once.

With ``--processes`` the children read the bodies, so the line is one for all of them: its
arrival time lives in a small shared file (``SharedLine``, created by the main process, opened
by each child), updated under a file lock, on the machine's monotonic clock (the same in every
process). A share of the rate per child would hold the total too, but would halve a lone big
body's speed with two processes.

This is separate from the request limiter (``limiter.py``): that one bounds request *starts*,
this one bounds *bytes*; a run may use either, both or neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Protocol

#: Seconds of the rate that may pass at once (a run starts with this credit).
BURST_S = 0.05
#: Smallest read while limiting: below this the per-read overhead would dominate.
MIN_READ = 1024


_TAT = struct.Struct("=d")


class Line(Protocol):
    """Where the bucket's theoretical arrival time is kept, updated atomically."""

    def take(self, now: float, seconds: float) -> float:
        """Reserve ``seconds`` of the line after ``max(its end, now)``; return its new end."""
        ...


class LocalLine:
    """The line of one process: a float under a lock. It starts idle (one burst of credit)."""

    def __init__(self, start: float) -> None:
        self._lock = threading.Lock()
        self._tat = start

    def take(self, now: float, seconds: float) -> float:
        with self._lock:
            self._tat = max(self._tat, now) + seconds
            return self._tat


class SharedLine:
    """The line of every process of a run: eight bytes of a file, mapped, under ``flock``.

    ``create`` makes the file (the main process, before its children start) and ``close``
    with ``remove`` deletes it; each child opens it by path. ``flock`` excludes other processes
    (each has its own open file); the lock inside excludes this process's other threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, _TAT.size)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, start: float) -> SharedLine:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="poolfetch-limit-rate-", dir=folder)
        try:
            os.write(fd, _TAT.pack(start))
        finally:
            os.close(fd)
        return cls(path)

    def take(self, now: float, seconds: float) -> float:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                (tat,) = _TAT.unpack_from(self._map)
                tat = max(tat, now) + seconds
                _TAT.pack_into(self._map, 0, tat)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            return float(tat)

    def close(self, *, remove: bool = False) -> None:
        self._map.close()
        os.close(self._fd)
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class BandwidthLimiter:
    """A thread-safe byte bucket of ``rate`` bytes per second; time is injected. ``line``:
    where its state lives (default: in this process; ``SharedLine``: shared by processes)."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] = time.sleep,
        burst_s: float = BURST_S,
        line: Line | None = None,
    ) -> None:
        if rate < 1:
            raise ValueError(f"rate must be at least 1 byte/s, not {rate}")
        self.rate = rate
        self._clock = clock
        self._wait = wait
        self._burst = burst_s
        self._line = line if line is not None else LocalLine(clock())

    def reserve(self, size: int) -> float:
        """Account for ``size`` bytes just read; return how long the reader must now wait."""
        now = self._clock()
        tat = self._line.take(now, size / self.rate)
        return max(0.0, tat - now - self._burst)

    def consume(self, size: int) -> None:
        """Account for ``size`` bytes and wait for them (the injected ``wait`` may end early,
        e.g. ``Event.wait`` on cancel)."""
        delay = self.reserve(size)
        if delay > 0:
            self._wait(delay)

    def read_size(self, largest: int) -> int:
        """How much one read should ask for: about a tenth of a second of the rate, so the
        waits stay short and even, at most ``largest``."""
        return max(MIN_READ, min(largest, self.rate // 10))
