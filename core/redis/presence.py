"""Which workers are connected to a shared run, and with how many threads.

Each worker marks itself in the run's ``workers`` sorted set every ``PRESENCE_S`` on the Redis
clock (so machines' clocks do not matter), its member naming its thread count and its name. The
coordinator counts the members seen in the last ``PRESENCE_TIMEOUT_S``: their threads are the
run's capacity (``RedisWorkers.capacity``), their number the live display's "worker processes".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import redis

from poolfetch.core.redis.keys import RunKeys, text_of

log = logging.getLogger(__name__)

#: How often a worker marks itself present, and after how long without it it is gone.
PRESENCE_S = 1.0
PRESENCE_TIMEOUT_S = 10
#: Seconds with no worker connected before the coordinator says so.
NO_WORKER_WARN_S = 5.0
#: Mark a worker present (Redis clock); the set expires once no worker refreshes it.
_MARK_PRESENT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
"""
#: Forget workers not seen for ARGV[1] seconds; the members still present.
_PRESENT = """
local t = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - tonumber(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


@dataclass(frozen=True, slots=True)
class Present:
    """The workers connected now."""

    workers: int
    threads: int


def member(threads: int, name: str) -> str:
    """A worker's member in the presence set: ``THREADS NAME``."""
    return f"{threads} {name}"


def parse_members(members: list[bytes | str]) -> Present:
    """The workers and their threads from the presence set's members (bad ones ignored)."""
    workers = threads = 0
    for raw in members:
        count, _, _ = text_of(raw).partition(" ")
        if count.isdigit():
            workers += 1
            threads += int(count)
    return Present(workers, threads)


def present(client: redis.Redis, keys: RunKeys) -> Present:
    """The workers marked present in the last ``PRESENCE_TIMEOUT_S`` seconds."""
    members = client.eval(_PRESENT, 1, keys.workers, PRESENCE_TIMEOUT_S)
    return parse_members(list(members))


class WorkerPresence:
    """A worker's mark in the run's ``workers`` set, refreshed from its own thread (the attempt
    reader may be blocked behind slow fetches)."""

    def __init__(self, client: redis.Redis, keys: RunKeys, name: str, threads: int) -> None:
        self._client = client
        self._keys = keys
        self._member = member(threads, name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poolfetch-presence", daemon=True)

    def start(self) -> None:
        self.mark()
        self._thread.start()

    def stop(self) -> None:
        """Stop marking and take the mark away (the coordinator stops counting us at once)."""
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._client.zrem(self._keys.workers, self._member)

    def mark(self) -> None:
        ttl = PRESENCE_TIMEOUT_S * 6
        with contextlib.suppress(redis.RedisError):  # the attempt reader reports Redis failing
            self._client.eval(_MARK_PRESENT, 1, self._keys.workers, self._member, ttl)

    def _loop(self) -> None:
        while not self._stop.wait(PRESENCE_S):
            self.mark()


class PresenceLog:
    """The coordinator's view of the workers over time: each change in the log, and a warning
    once the run has had no worker for ``NO_WORKER_WARN_S`` (then again each time the last one
    goes away)."""

    def __init__(self, now: float) -> None:
        self.count = 0
        self._alone_since = now
        self._warned = False

    def update(self, count: int, now: float) -> None:
        if count != self.count:
            log.info("worker processes connected: %d", count)
        if count == 0 and self.count > 0:
            self._alone_since, self._warned = now, False
        self.count = count
        if count or self._warned or now - self._alone_since < NO_WORKER_WARN_S:
            return
        self._warned = True
        log.warning(
            "no worker is connected to this run after %.0f s; start one with"
            " `poolfetch worker --redis URL` (same URL as this run's --redis)",
            now - self._alone_since,
        )
