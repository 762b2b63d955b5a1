"""The coordinator of a shared run: sources into Redis, results out of it, records as usual.

It reads and parses the sources exactly as a local run does (bad lines and URLs a resumed
state already has become records here, never jobs), keeps at most ``lookahead`` jobs
unfinished in the stream, and turns each published result into a record, a state row and
statistics. It fetches nothing itself: the worker processes do. See ``distributed.py``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from poolfetch.core.admission import AdmissionReader, SourceEnd, SourceItem, SourceLine
from poolfetch.core.config import FetchConfig
from poolfetch.core.distributed import (
    CURRENT_RUN_KEY,
    FINISHED_TTL_S,
    KEEPALIVE_S,
    RUN_TTL_S,
    RunKeys,
    count_workers,
    expire_run,
    publish_run,
    text_of,
)
from poolfetch.core.errors import CoordinationError
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.models import AttemptOutcome, FetchResult
from poolfetch.core.rates import describe_rates
from poolfetch.core.records import carry_record_keys
from poolfetch.core.report import NullReporter, Reporter
from poolfetch.core.request import RequestBuilder
from poolfetch.core.runner import REPORT_INTERVAL_S, RunOutcome
from poolfetch.core.shutdown import CancelToken, ForcedExit
from poolfetch.core.sinks import JsonlSink, sweep_temps, write_or_stop
from poolfetch.core.state import StateStore
from poolfetch.core.stats import RunStats, StatsSnapshot
from poolfetch.core.triage import OutputClaims, ToFetch, apply_not_modified, triage

log = logging.getLogger(__name__)

RESULTS_BATCH = 500
#: Seconds with jobs waiting and no worker connected before the coordinator says so.
NO_WORKER_WARN_S = 5.0
#: How often the coordinator counts the workers connected.
PRESENCE_CHECK_S = 1.0
#: The summary's ``interrupted`` when Redis failed mid-run (exit 69).
UNAVAILABLE = "redis-unavailable"


class SeenJobs:
    """One bit per job sequence number: which results were already recorded (10^7 = 1.2 MB)."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, seq: int) -> bool:
        """Mark ``seq``; False if it was already marked (a duplicate result)."""
        index, bit = divmod(seq, 8)
        if index >= len(self._bits):
            self._bits.extend(bytes(index - len(self._bits) + 1024))
        if self._bits[index] & (1 << bit):
            return False
        self._bits[index] |= 1 << bit
        return True


class Coordinator:
    """Runs the coordinator side of one shared run."""

    def __init__(
        self,
        client: redis.Redis,
        config: FetchConfig,
        lines: Iterator[bytes | SourceLine],
        sink: JsonlSink,
        *,
        reporter: Reporter | None = None,
        state: StateStore | None = None,
        cancel: CancelToken | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._sink = sink
        self._reporter = reporter or NullReporter()
        self._state = state
        self._cancel = cancel or CancelToken()
        self._inbox: queue.SimpleQueue[SourceItem | SourceEnd] = queue.SimpleQueue()
        self._reader = AdmissionReader(lines, self._inbox.put, config.lookahead, self._cancel.event)
        self._stats = RunStats(
            workers=config.workers, clock=clock, rates=describe_rates(config.rate)
        )
        # seq -> (request, source, line) of jobs not yet recorded
        self._outstanding: dict[int, tuple[ToFetch, str | None, int]] = {}
        self._requests = RequestBuilder(
            config.request, config.headers, saves_bodies=config.output_dir is not None
        )
        self._claims = OutputClaims()
        self._seen = SeenJobs()
        self._source_done = False
        self._source_error: str | None = None
        self._last_result = "0-0"
        self._clock = clock
        self._presence = _Presence(clock())
        self.keys: RunKeys | None = None
        #: The summary as the run ended; set also when Redis failed (``run`` then raises).
        self.summary: dict[str, Any] | None = None

    def set_total(self, total: int) -> None:
        self._stats.total = total
        self._reporter.set_total(total)

    def run(self) -> RunOutcome:
        self.keys = publish_run(self._client, self._config)
        if self._state is not None:
            self._state.begin(refresh=self._config.refresh)
        self._reporter.start(self._stats.total)
        self._reader.start()
        failure: CoordinationError | None = None
        completed = False
        try:
            self._loop(self.keys)
            completed = not self._cancel.event.is_set()
        except ForcedExit:
            pass
        except CoordinationError as exc:
            failure = exc
            self._stats.interrupted = UNAVAILABLE
        finally:
            self._close(self.keys, completed=completed)
        summary = self.summary = self._stats.summary()
        self._reporter.finish(self._snapshot(), summary)
        if failure is not None:
            raise failure
        code = self._cancel.exit_code
        if code is None:
            code = (
                ExitCode.USAGE
                if self._source_error
                else (ExitCode.URLS_FAILED if self._stats.failed else ExitCode.OK)
            )
        return RunOutcome(code, summary, 0)

    def _loop(self, keys: RunKeys) -> None:
        next_report = 0.0
        next_keepalive = self._clock() + KEEPALIVE_S
        while not self._cancel.event.is_set():
            self._admit(keys)
            if self._source_done and not self._outstanding:
                return
            now = self._clock()
            try:
                self._collect(keys)
                if now >= self._presence.next_check:
                    self._presence.update(count_workers(self._client, keys), now)
                    self._presence.warn_if_alone(bool(self._outstanding), now)
                if now >= next_keepalive:
                    expire_run(self._client, keys, RUN_TTL_S)
                    self._client.expire(CURRENT_RUN_KEY, RUN_TTL_S)
                    next_keepalive = now + KEEPALIVE_S
            except redis.RedisError as exc:
                raise CoordinationError(f"Redis failed: {exc}") from exc
            if self._state is not None:
                self._state.commit_if_due()
            if now >= next_report:
                self._stats.in_flight = len(self._outstanding)
                self._reporter.update(self._snapshot())
                next_report = now + REPORT_INTERVAL_S

    def _snapshot(self) -> StatsSnapshot:
        return self._stats.snapshot({"worker_processes": self._presence.count})

    def _admit(self, keys: RunKeys) -> None:
        """Move parsed lines from the reader into the job stream (or straight to records)."""
        jobs: list[tuple[int, dict[Any, Any]]] = []
        while True:
            try:
                item = self._inbox.get(timeout=0.05 if not self._outstanding else 0)
            except queue.Empty:
                break
            if isinstance(item, SourceEnd):
                self._source_done, self._source_error = True, item.error
                break
            job = self._job_for(item)
            if job is not None:
                jobs.append(job)
        if not jobs:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for _, fields in jobs:
                    pipe.xadd(keys.jobs, fields)
                pipe.execute()
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis failed: {exc}") from exc

    def _job_for(self, item: SourceItem) -> tuple[int, dict[Any, Any]] | None:
        decided = triage(item, self._state, self._requests, self._claims)
        if isinstance(decided, FetchResult):
            self._emit(decided)
            return None
        self._outstanding[item.seq] = (decided, item.source, item.number)
        # the line as read (a URL or a request object): the worker parses it as a run would
        fields = {
            "seq": item.seq,
            "url": decided.text,
            "validators": json.dumps(decided.validators),
        }
        return item.seq, fields

    def _collect(self, keys: RunKeys) -> None:
        answer: Any = self._client.xread(
            {keys.results: self._last_result}, count=RESULTS_BATCH, block=200
        )
        for _, entries in answer or []:
            for entry_id, fields in entries:
                self._last_result = text_of(entry_id)
                self._settle(json.loads(fields[b"data"]))

    def _settle(self, payload: dict[str, Any]) -> None:
        seq = int(payload["seq"])
        outstanding = self._outstanding.pop(seq, None)
        if outstanding is None or not self._seen.add(seq):
            return  # a duplicate: the job was fetched again after its worker died
        request, source, line = outstanding
        attempt_log = payload["attempt_log"]
        for status, seconds, size in attempt_log:
            self._stats.attempt_finished(status, seconds, size)
        # a retry follows every failed attempt but the last (redirect hops are not failures)
        self._stats.retries += sum(1 for s, _, _ in attempt_log[:-1] if s is None or s >= 400)
        record = payload["record"]
        result = FetchResult(
            url=record["url"],
            ok=record["ok"],
            status=record["status"],
            attempts=record["attempts"],
            bytes=record["bytes"],
            elapsed_ms=record["elapsed_ms"],
            error=record["error"],
            host=payload["host"],
            extra={"worker": payload["worker"]},
            source=source,
            line=line or None,
        )
        carry_record_keys(result, record)
        if payload["rel_path"] is not None and self._config.output_dir is not None:
            result.path = os.path.join(str(self._config.output_dir), payload["rel_path"])
        apply_not_modified(result, request.key, self._state)
        if self._state is not None:
            final = AttemptOutcome(
                started=0.0,
                elapsed=0.0,
                status=result.status,
                etag=payload["etag"],
                last_modified=payload["last_modified"],
                digest=payload["digest"],
            )
            self._state.record(request.key, result, final, request.request)
        self._emit(result)

    def _emit(self, result: FetchResult) -> None:
        write_or_stop(self._sink, result, self._cancel)
        self._stats.record_written(result)
        self._reader.release_slot()

    def _close(self, keys: RunKeys, completed: bool) -> None:
        if self._cancel.signal is not None:
            self._stats.interrupted = self._cancel.signal.name
        try:
            self._client.set(keys.done, "1", ex=FINISHED_TTL_S)
            expire_run(self._client, keys, FINISHED_TTL_S)
            current: Any = self._client.get(CURRENT_RUN_KEY)
            if current is not None and text_of(current) == keys.run_id:
                self._client.delete(CURRENT_RUN_KEY)
        except redis.RedisError:
            pass  # Redis is gone; workers will notice on their own
        if completed and self._config.output_dir is not None:
            sweep_temps(str(self._config.output_dir))  # left by workers that were killed
        if self._state is not None:
            self._state.finish(completed=completed and self._source_error is None)
        self._sink.close()


class _Presence:
    """How many worker processes are connected, said in the log when it changes, and a
    warning once jobs have waited ``NO_WORKER_WARN_S`` with none (then again each time the
    last one goes away)."""

    def __init__(self, now: float) -> None:
        self.count = 0
        self.next_check = now
        self._alone_since = now
        self._warned = False

    def update(self, count: int, now: float) -> None:
        if count != self.count:
            log.info("worker processes connected: %d", count)
        if count == 0 and self.count > 0:
            self._alone_since, self._warned = now, False
        self.count = count
        self.next_check = now + PRESENCE_CHECK_S

    def warn_if_alone(self, jobs_waiting: bool, now: float) -> None:
        if self.count or not jobs_waiting or self._warned:
            return
        if now - self._alone_since >= NO_WORKER_WARN_S:
            self._warned = True
            log.warning(
                "no worker is connected to this run after %.0f s; start one with"
                " `poolfetch worker --redis URL` (same URL as this run's --redis)",
                now - self._alone_since,
            )
