"""``poolfetch worker``'s engine: attempt frames from the run's stream, answers back to it.

A worker schedules nothing: the coordinator's runner decided when each attempt may start.
The main thread reads attempts through the consumer group, never more than this process has
free threads, and hands them to an ``AttemptPool`` (the same pool of thread-local, pre-warmed
Sessions a ``--processes`` child runs); each thread runs its attempt, commits a complete body
into the output folder, and publishes its ``Done`` frame and acknowledges (and deletes) the
attempt in one transaction.

A killed worker's attempts stay pending in the group: after ``claim_idle_s`` without a
heartbeat another worker takes them over (``XAUTOCLAIM``). Live workers reset the idle time of
their own pending attempts every ``HEARTBEAT_S`` (``XCLAIM`` to themselves), so only dead
workers' attempts are taken. The loop ends when the coordinator marks the run done, when the
run's keys are gone, or when cancelled; Redis failing raises ``CoordinationError``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from poolfetch.core import codec
from poolfetch.core.attempt_pool import AttemptPool
from poolfetch.core.errors import CoordinationError
from poolfetch.core.frames import Done, Job
from poolfetch.core.redis.keys import GROUP, RunKeys, failed, text_of

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
#: How long one read of the stream waits for an attempt, and how often dead workers' pending
#: attempts are looked for.
READ_BLOCK_MS = 200
CLAIM_EVERY_S = 1.0


class WorkerLoop:
    """One worker process's attempts of one run."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RunKeys,
        pool: AttemptPool,
        name: str,
        claim_idle_s: float,
        cancelled: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = keys
        self._pool = pool
        self._name = name
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._cancelled = cancelled
        self._clock = clock
        self._inbox: queue.SimpleQueue[tuple[str, Job] | None] = queue.SimpleQueue()
        self._free = pool.workers
        self._freed = threading.Condition()
        #: Attempt entries read and not yet answered (their ids, for the heartbeat).
        self._pending: set[str] = set()
        self._failure: CoordinationError | None = None
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_heartbeat = clock() + HEARTBEAT_S
        #: Attempts answered by this worker.
        self.answered = 0

    @property
    def running(self) -> int:
        """Attempts being run now."""
        return self._pool.workers - self._free

    def run(self) -> None:
        """Work until the run is done (returns) or Redis fails (raises)."""
        self._pool.start(self._work)
        try:
            self._read_loop()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):  # else: the run ended and its keys expired meanwhile
                raise failed(exc) from exc
        except redis.RedisError as exc:
            raise failed(exc) from exc
        finally:
            for _ in range(self._pool.workers):
                self._inbox.put(None)
        if self._failure is not None:
            raise self._failure

    def _read_loop(self) -> None:
        while not self._cancelled.is_set() and self._failure is None:
            free = self._wait_for_free_thread()
            self._heartbeat()
            if free == 0:
                continue
            entries = self._reclaim(free) or self._read(free)
            if not entries:
                if self._client.exists(self._keys.done):
                    return
                continue
            for entry_id, fields in entries:
                self._take(text_of(entry_id), fields)

    def _take(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            job = codec.loads(Job, fields[b"job"])
        except (KeyError, codec.CodecError) as exc:
            log.warning("dropped attempt %s that is not poolfetch's: %s", entry_id, exc)
            self._client.xack(self._keys.attempts, GROUP, entry_id)
            return
        with self._freed:
            self._free -= 1
            self._pending.add(entry_id)
        self._inbox.put((entry_id, job))

    def _wait_for_free_thread(self) -> int:
        with self._freed:
            if self._free == 0:
                self._freed.wait(READ_BLOCK_MS / 1000)
            return self._free

    def _read(self, count: int) -> list[tuple[Any, dict[bytes, bytes]]]:
        reply: Any = self._client.xreadgroup(
            GROUP, self._name, {self._keys.attempts: ">"}, count=count, block=READ_BLOCK_MS
        )
        return [entry for _, entries in reply or [] for entry in entries]

    def _reclaim(self, count: int) -> list[tuple[Any, dict[bytes, bytes]]]:
        """Attempts of a dead worker (pending longer than ``claim_idle``), now ours."""
        now = self._clock()
        if now < self._next_claim:
            return []
        self._next_claim = now + CLAIM_EVERY_S
        claimed: Any = self._client.xautoclaim(
            self._keys.attempts,
            GROUP,
            self._name,
            self._claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = text_of(claimed[0])
        entries = [(eid, fields) for eid, fields in claimed[1] if fields]
        if entries:
            log.info("took over %d attempts of a worker that stopped answering", len(entries))
        return entries

    def _heartbeat(self) -> None:
        now = self._clock()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + HEARTBEAT_S
        with self._freed:
            ids = list(self._pending)
        if ids:  # reset the idle time of our own attempts, so nobody takes them from us
            self._client.xclaim(self._keys.attempts, GROUP, self._name, 0, ids, justid=True)  # type: ignore[arg-type]

    def _work(self, _index: int) -> None:
        """One worker thread: attempts from the shared inbox until the stop mark."""
        while (item := self._inbox.get()) is not None:
            entry_id, job = item
            self._answer(entry_id, self._pool.execute(job))

    def _answer(self, entry_id: str, done: Done) -> None:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self._keys.answers,
                    {"done": codec.dumps(done), "worker": self._name},
                    nomkstream=True,
                )
                pipe.xack(self._keys.attempts, GROUP, entry_id)
                pipe.xdel(self._keys.attempts, entry_id)
                pipe.execute()
        except redis.RedisError as exc:
            self._failure = failed(exc)
        with self._freed:
            self._pending.discard(entry_id)
            self._free += 1
            self.answered += 1
            self._freed.notify()
