"""``RedisWorkers``: a shared run's attempts executed by ``poolfetch worker`` processes.

The coordinator is an ordinary ``Runner``; this is its ``AttemptWorkers``. Its limiter decides
every attempt start, exactly as with ``--processes``, so every limit (rate, learned rate and
concurrency, announced quotas, pauses) holds across machines by construction. ``submit`` queues
one attempt frame (``frames.Job``, the typed codec) and ``flush`` adds them to the run's attempt
stream in one round trip; workers read them through a consumer group, only as many as they have
free threads. A reader thread takes the workers' ``Done`` frames off the answer stream and hands
them to the runner's inbox; it also counts the workers present (their threads are ``capacity``:
with none, nothing is dispatched) and keeps the run's keys alive.

A killed worker's attempts stay pending in the consumer group and another worker takes them over
after its ``--claim-idle`` (``worker.WorkerLoop``); the coordinator waits for them instead of
running them again (``Answers.lost`` is never called), so a URL is fetched twice only when a
worker is declared dead while still alive, and even then its second answer is ignored: an answer
for an attempt id no longer in flight is dropped. Redis failing ends the run
(``Answers.failed`` / ``CoordinationError`` from ``flush``: exit 69, summary written).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

import redis

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig
from poolfetch.core.executors import Answers
from poolfetch.core.frames import Done, Job
from poolfetch.core.redis.keys import (
    KEEPALIVE_S,
    RunKeys,
    end_run,
    failed,
    keep_alive,
    publish_run,
    text_of,
)
from poolfetch.core.redis.presence import PresenceLog, present
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.sinks import sweep_temps
from poolfetch.core.transport import Attempt

log = logging.getLogger(__name__)

#: Answers read per round trip, and how long one read waits for the first.
_READ_COUNT = 500
_READ_BLOCK_MS = 100
#: How often the workers present are counted (more often while there is none).
_COUNT_EVERY_S = 1.0
_COUNT_ALONE_S = 0.1
#: How long ``start`` looks for workers already waiting for a run, and how often.
_FIRST_WORKER_WAIT_S = 1.0
_FIRST_WORKER_POLL_S = 0.02


class RedisWorkers:
    """The workers of one shared run, as the coordinator's runner sees them."""

    def __init__(
        self,
        client: redis.Redis,
        config: FetchConfig,
        answers: Answers,
        *,
        on_count: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        """``on_count``: told the workers present each time they are counted. ``clock`` and
        ``pause`` (sleep, default: until ``close``) are injected for tests."""
        self._client = client
        self._config = config
        self._answers = answers
        self._on_count = on_count or (lambda count: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: dict[int, PendingJob] = {}
        self._outgoing: list[bytes] = []
        self._ids = itertools.count()
        self._capacity = 0
        self._most_workers = 0
        self._presence = PresenceLog(clock())
        self._next_count = 0.0
        self._next_keepalive = clock() + KEEPALIVE_S
        self._stop = threading.Event()
        self._pause = pause or self._stop.wait
        self._reader = threading.Thread(target=self._read, name="poolfetch-redis", daemon=True)
        self._last_answer = "0-0"
        self._shared_dir: Path | None = None
        self.keys: RunKeys | None = None

    @property
    def capacity(self) -> int:
        """The threads of the workers connected now (0: nothing is dispatched)."""
        return self._capacity

    @property
    def sessions(self) -> int:
        return 0  # the coordinator fetches nothing; each worker builds its own

    @property
    def processes(self) -> int:
        """The most worker processes connected at once so far."""
        return self._most_workers

    @property
    def idle_hosts(self) -> Container[str]:
        return frozenset()  # which worker takes an attempt is the workers' race, not ours

    def start(self) -> None:
        """Publish the run (workers waiting for one join it) and start reading answers."""
        self.keys = publish_run(self._client, self._config)
        if self._config.output_dir is not None:
            self._shared_dir = Path(self._config.output_dir).resolve()
        try:
            self._await_first_worker()
        except redis.RedisError as exc:
            raise failed(exc) from exc
        self._reader.start()

    def _await_first_worker(self) -> None:
        """Workers already waiting join within a poll or two of the run's publication: count
        them before the first dispatch instead of letting the runner's loop find them later
        (a short run's start-up). Bounded: with no worker the run waits anyway."""
        deadline = self._clock() + _FIRST_WORKER_WAIT_S
        while True:
            now = self._clock()
            self._count(now)
            if self._capacity or now >= deadline:
                return
            self._pause(_FIRST_WORKER_POLL_S)

    def submit(self, pending: PendingJob) -> None:
        attempt_id = next(self._ids)
        with self._lock:
            self._in_flight[attempt_id] = pending
        self._outgoing.append(codec.dumps(Job(attempt_id, pending.job)))

    def flush(self) -> None:
        """Add the attempts submitted since the last call to the stream, in one round trip."""
        if not self._outgoing or self.keys is None:
            return
        frames, self._outgoing = self._outgoing, []
        try:
            if len(frames) == 1:  # the common case once running: one answer, one new attempt
                self._client.xadd(self.keys.attempts, {"job": frames[0]})
                return
            with self._client.pipeline(transaction=False) as pipe:
                for data in frames:
                    pipe.xadd(self.keys.attempts, {"job": data})
                pipe.execute()
        except redis.RedisError as exc:
            raise failed(exc) from exc

    def answered(self, worker: int) -> None:
        return None  # the reader keeps the count

    def close(self) -> None:
        """Mark the run done (the workers exit), let its keys expire, and remove temporary
        files of killed workers (no worker of this run writes one any more)."""
        self._stop.set()  # the reader (a daemon) ends after its current read, answering nothing
        if self.keys is not None:
            end_run(self._client, self.keys)
        if self._shared_dir is not None:
            removed = sweep_temps(str(self._shared_dir))
            if removed:
                log.info("removed %d temporary files of killed workers", removed)

    # -- the reader thread --------------------------------------------------------------------

    def _read(self) -> None:
        assert self.keys is not None
        keys = self.keys
        try:
            while not self._stop.is_set():
                reply: Any = self._client.xread(
                    {keys.answers: self._last_answer}, count=_READ_COUNT, block=_READ_BLOCK_MS
                )
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._last_answer = text_of(entry_id)
                        self.settle(fields)
                now = self._clock()
                if now >= self._next_count:
                    self._count(now)
                    # answers read are not needed again: the stream stays short on long runs
                    self._client.xtrim(keys.answers, minid=self._last_answer)
                if now >= self._next_keepalive:
                    keep_alive(self._client, keys)
                    self._next_keepalive = now + KEEPALIVE_S
        except redis.RedisError as exc:
            if not self._stop.is_set():
                self._answers.failed(failed(exc))

    def settle(self, fields: dict[bytes, bytes]) -> None:
        """One answer from the stream to the runner, unless its attempt is no longer in flight
        (a worker declared dead answered after all, or a frame that is not ours)."""
        try:
            done = codec.loads(Done, fields[b"done"])
        except (KeyError, codec.CodecError) as exc:
            log.warning("ignored an answer that is not poolfetch's: %s", exc)
            return
        with self._lock:
            pending = self._in_flight.pop(done.id, None)
        if pending is None:
            log.debug("ignored a second answer to attempt %d", done.id)
            return
        pending.ran_on = text_of(fields.get(b"worker", b"?"))
        self._answers.deliver(pending, self._local(done.attempt), -1)

    def _local(self, attempt: Attempt) -> Attempt:
        """The body's path as the coordinator's ``-o`` was given (workers use it absolute)."""
        saved, shared = attempt.saved_path, self._shared_dir
        if saved is None or shared is None or self._config.output_dir is None:
            return attempt
        relative = os.path.relpath(saved, shared)
        path = os.path.join(str(self._config.output_dir), relative)
        return Attempt(attempt.outcome, None, attempt.next_hop, path)

    def _count(self, now: float) -> None:
        assert self.keys is not None
        seen = present(self._client, self.keys)
        self._capacity = seen.threads
        self._most_workers = max(self._most_workers, seen.workers)
        self._presence.update(seen.workers, now)
        self._on_count(seen.workers)
        self._next_count = now + (_COUNT_EVERY_S if seen.workers else _COUNT_ALONE_S)


def redis_workers(
    client: redis.Redis, config: FetchConfig, on_count: Callable[[int], None] | None = None
) -> Callable[[Answers], RedisWorkers]:
    """The ``Runner(workers=...)`` factory of a shared run's coordinator."""

    def build(answers: Answers) -> RedisWorkers:
        return RedisWorkers(client, config, answers, on_count=on_count)

    return build
