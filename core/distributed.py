"""A run shared through Redis: the job stream, the results stream, and the worker's adapters.

Shape of a shared run (``poolfetch run --redis URL`` + ``poolfetch worker --redis URL``):

* the **coordinator** publishes the run's options under a new run id, points
  ``poolfetch:current`` at it, streams the sources into the ``jobs`` stream (at most
  ``lookahead`` unfinished at a time), reads the ``results`` stream and writes records, state
  and summary exactly as a local run does; it fetches nothing itself;
* each **worker** process reads jobs through the consumer group ``workers``, fetches them with
  its own thread-local sessions under the shared ``RedisLimiter``, publishes each result and
  acknowledges the job in one transaction; it exits when the coordinator marks the run done;
* a job whose worker died stays pending in the group; after ``claim_idle`` seconds without a
  heartbeat another worker takes it over (``XAUTOCLAIM``). Live workers refresh their pending
  jobs every few seconds, so only dead workers' jobs are taken. A job fetched twice (its worker
  died after publishing, before acknowledging) is recorded once: the coordinator keeps the
  first result per job;
* each worker also marks itself present in the run's ``workers`` set every ``PRESENCE_S`` (on
  the Redis clock), so the coordinator can show how many are connected and warn when none is;
* every key of a run expires: ``RUN_TTL_S`` after the coordinator last refreshed it (so a
  killed coordinator's run goes away too), ``FINISHED_TTL_S`` after the run ended (long enough
  for workers to see ``done``). Nothing in Redis is needed to resume: ``--state`` holds that.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from poolfetch.core.access import AccessOptions
from poolfetch.core.admission import SourceLine
from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy, Timeouts
from poolfetch.core.errors import ConfigError, CoordinationError
from poolfetch.core.models import FetchResult
from poolfetch.core.redact import redact_text, redact_url
from poolfetch.core.request import CommandLineRequest

CURRENT_RUN_KEY = "poolfetch:current"
GROUP = "workers"
HEARTBEAT_S = 5.0
READ_COUNT = 16
READ_BLOCK_MS = 500
#: A running run's keys live this long after the coordinator last refreshed them.
RUN_TTL_S = 3600
#: How often the coordinator refreshes them.
KEEPALIVE_S = 60.0
#: A finished run's keys live this long: workers see ``done`` within a second.
FINISHED_TTL_S = 60
#: How often a worker marks itself present, and after how long without it it is gone.
PRESENCE_S = 2.0
PRESENCE_TIMEOUT_S = 10
#: Mark a worker present (Redis clock); the set expires once no worker refreshes it.
_MARK_PRESENT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
"""
#: Forget workers not seen for ARGV[1] seconds; the number still present.
_COUNT_PRESENT = """
local t = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The Redis keys of one run."""

    run_id: str

    def _key(self, name: str) -> str:
        return f"poolfetch:run:{self.run_id}:{name}"

    @property
    def config(self) -> str:
        return self._key("config")

    @property
    def jobs(self) -> str:
        return self._key("jobs")

    @property
    def results(self) -> str:
        return self._key("results")

    @property
    def done(self) -> str:
        return self._key("done")

    @property
    def workers(self) -> str:
        return self._key("workers")

    @property
    def run_keys(self) -> tuple[str, ...]:
        """The keys the coordinator keeps alive and lets expire (the limiter's expire alone)."""
        return (self.config, self.jobs, self.results, self.done)


def text_of(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(url: str) -> redis.Redis:
    """A client for ``url``, checked with a PING so a wrong URL fails at once, clearly.

    A URL that is not a Redis URL at all is a ``ConfigError`` (a usage error, exit 2); a
    Redis that cannot be reached is a ``CoordinationError`` (exit 69).
    """
    try:
        parts = urlsplit(url)
        database = parts.path.lstrip("/")
        if parts.scheme in ("redis", "rediss") and database and not database.isdigit():
            raise ValueError(f"the database must be a number, not {database!r}")
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        raise ConfigError(
            f"--redis {redact_url(url)} is not a Redis URL ({redact_text(str(exc))});"
            " expected redis://HOST:PORT/DB"
        ) from exc
    try:
        client.ping()
    except redis.RedisError as exc:
        # the URL may hold a password (redis://user:PW@host): never print it
        message = f"cannot use Redis at {redact_url(url)}: {redact_text(str(exc))}"
        raise CoordinationError(message) from exc
    return client


def config_to_json(config: FetchConfig, output_dir: str | None) -> str:
    """The run options workers need, as JSON (the output folder made absolute)."""
    data = dataclasses.asdict(config)
    data["retry"]["retry_on"] = sorted(config.retry.retry_on)
    data["output_dir"] = output_dir
    data["state_path"] = None
    data["headers"] = [list(h) for h in config.headers]
    body = config.request.body
    data["request"]["body"] = None if body is None else base64.b64encode(body).decode("ascii")
    user = config.access.user
    data["access"]["user"] = list(user) if user is not None else None
    return json.dumps(data)


def config_from_json(text: str, workers: int | None) -> FetchConfig:
    """Rebuild the coordinator's options in a worker (its own ``--workers`` if given)."""
    data = json.loads(text)
    retry = dict(data.pop("retry"))
    retry["retry_on"] = frozenset(retry["retry_on"])
    count = workers if workers is not None else data.pop("workers")
    data.pop("workers", None)
    output = data.pop("output_dir")
    request = dict(data.pop("request", None) or {})
    if request.get("body") is not None:
        request["body"] = base64.b64decode(request["body"])
    request["record_headers"] = tuple(request.get("record_headers") or ())
    return FetchConfig(
        **{
            k: v
            for k, v in data.items()
            if k not in {"rate", "timeouts", "headers", "lookahead", "access"}
        },
        request=CommandLineRequest(**request),
        workers=count,
        rate=RateLimit(**data["rate"]),
        retry=RetryPolicy(**retry),
        timeouts=Timeouts(**data["timeouts"]),
        headers=tuple((name, value) for name, value in data["headers"]),
        access=_access_from(data.get("access")),
        output_dir=Path(output) if output else None,
        lookahead=max(8, 2 * count),
    )


def _access_from(data: dict[str, Any] | None) -> AccessOptions:
    if not data:
        return AccessOptions()
    user = data.pop("user", None)
    return AccessOptions(**data, user=(user[0], user[1]) if user else None)


def publish_run(client: redis.Redis, config: FetchConfig) -> RunKeys:
    """Create a run: its options, its job stream and group; make it the current run."""
    keys = RunKeys(uuid.uuid4().hex[:16])
    output = str(Path(config.output_dir).resolve()) if config.output_dir else None
    try:
        client.set(keys.config, config_to_json(config, output), ex=RUN_TTL_S)
        client.xgroup_create(keys.jobs, GROUP, id="0", mkstream=True)
        # made here, so that workers add results with NOMKSTREAM: a result published after
        # the run's keys expired cannot bring back a results stream that never expires
        client.xgroup_create(keys.results, "coordinator", id="0", mkstream=True)
        expire_run(client, keys, RUN_TTL_S)
        client.set(CURRENT_RUN_KEY, keys.run_id, ex=RUN_TTL_S)
    except redis.RedisError as exc:
        raise CoordinationError(f"Redis failed: {exc}") from exc
    return keys


def expire_run(client: redis.Redis, keys: RunKeys, seconds: int) -> None:
    """Let every key of the run expire in ``seconds`` (refreshed while it runs)."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys.run_keys:
            pipe.expire(key, seconds)
        pipe.execute()


def count_workers(client: redis.Redis, keys: RunKeys) -> int:
    """How many worker processes marked themselves present in the last few seconds."""
    return int(client.eval(_COUNT_PRESENT, 1, keys.workers, PRESENCE_TIMEOUT_S))


class WorkerPresence:
    """A worker's mark in the run's ``workers`` set, refreshed from its own thread (the job
    reader may be blocked for a long time behind slow fetches)."""

    def __init__(self, client: redis.Redis, keys: RunKeys, consumer: str) -> None:
        self._client = client
        self._keys = keys
        self._consumer = consumer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poolfetch-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        ttl = PRESENCE_TIMEOUT_S * 6
        while not self._stop.is_set():
            with contextlib.suppress(redis.RedisError):  # the job reader reports Redis failing
                self._client.eval(_MARK_PRESENT, 1, self._keys.workers, self._consumer, ttl)
            self._stop.wait(PRESENCE_S)


def wait_for_run(client: redis.Redis, cancelled: threading.Event) -> RunKeys | None:
    """Block until a coordinator publishes a run that is not done (None if cancelled)."""
    while not cancelled.is_set():
        try:
            current: Any = client.get(CURRENT_RUN_KEY)
            if current is not None:
                keys = RunKeys(text_of(current))
                if not client.exists(keys.done) and client.exists(keys.config):
                    return keys
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis failed: {exc}") from exc
        cancelled.wait(0.5)
    return None


class PendingJobs:
    """Entry ids this worker has read and not yet acknowledged (for heartbeats)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def add(self, entry_id: str) -> None:
        with self._lock:
            self._ids.add(entry_id)

    def discard(self, entry_id: str) -> None:
        with self._lock:
            self._ids.discard(entry_id)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._ids)


class RedisJobSource:
    """A worker's input: jobs from the group, dead workers' jobs reclaimed, until done."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RunKeys,
        consumer: str,
        claim_idle_s: float,
        pending: PendingJobs,
        cancelled: threading.Event,
    ) -> None:
        self._client = client
        self._keys = keys
        self._consumer = consumer
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._pending = pending
        self._cancelled = cancelled
        self._next_heartbeat = time.monotonic() + HEARTBEAT_S
        self._claim_cursor = "0-0"

    def __iter__(self) -> Iterator[SourceLine]:
        try:
            while not self._cancelled.is_set():
                self._heartbeat()
                entries = self._reclaim() or self._read()
                if not entries:
                    if self._client.exists(self._keys.done):
                        return
                    continue
                for entry_id, fields in entries:
                    yield self._line(entry_id, fields)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the run ended and its keys expired meanwhile
                return
            raise CoordinationError(f"Redis failed: {exc}") from exc
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis failed: {exc}") from exc

    def _line(self, entry_id: Any, fields: dict[bytes, bytes]) -> SourceLine:
        ident = text_of(entry_id)
        self._pending.add(ident)
        validators = tuple(tuple(v) for v in json.loads(fields[b"validators"]))
        return SourceLine(
            fields[b"url"], tag=f"{ident}|{fields[b'seq'].decode()}", validators=validators
        )

    def _read(self) -> list[tuple[Any, dict[bytes, bytes]]]:
        answer: Any = self._client.xreadgroup(
            GROUP, self._consumer, {self._keys.jobs: ">"}, count=READ_COUNT, block=READ_BLOCK_MS
        )
        return [entry for _, entries in answer or [] for entry in entries]

    def _reclaim(self) -> list[tuple[Any, dict[bytes, bytes]]]:
        claimed: Any = self._client.xautoclaim(
            self._keys.jobs,
            GROUP,
            self._consumer,
            self._claim_idle_ms,
            start_id=self._claim_cursor,
            count=READ_COUNT,
        )
        cursor, entries = claimed[0], claimed[1]
        self._claim_cursor = text_of(cursor)
        return [(eid, fields) for eid, fields in entries if fields]

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + HEARTBEAT_S
        ids = self._pending.snapshot()
        if ids:  # reset the idle time of our own jobs, so nobody reclaims them from us
            self._client.xclaim(
                self._keys.jobs, GROUP, self._consumer, 0, list[Any](ids), justid=True
            )


class RedisResultSink:
    """A worker's output: each result published and its job acknowledged, atomically."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RunKeys,
        consumer: str,
        output_dir: Path | None,
        pending: PendingJobs,
    ) -> None:
        self._client = client
        self._keys = keys
        self._consumer = consumer
        self._output_dir = output_dir
        self._pending = pending

    def write(self, result: FetchResult) -> None:
        entry_id, _, seq = (result.tag or "").partition("|")
        final = result.final
        rel_path = None
        if result.path is not None and self._output_dir is not None:
            rel_path = os.path.relpath(result.path, self._output_dir)
        payload = {
            "seq": int(seq),
            "record": result.to_record(),
            "host": result.host,
            "attempt_log": result.attempt_log,
            "etag": final.etag if final else None,
            "last_modified": final.last_modified if final else None,
            "digest": final.digest if final else None,
            "rel_path": rel_path,
            "worker": self._consumer,
        }
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(self._keys.results, {"data": json.dumps(payload)}, nomkstream=True)
                pipe.xack(self._keys.jobs, GROUP, entry_id)
                pipe.execute()
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis failed: {exc}") from exc
        self._pending.discard(entry_id)

    def close(self) -> None:
        pass
