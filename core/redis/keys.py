"""A shared run's Redis keys, how a run is published and found, and its expiry.

Every key of a run is ``poolfetch:run:<id>:<name>``; ``poolfetch:current`` names the run workers
should join. Every key expires: ``RUN_TTL_S`` after the coordinator last refreshed it (so a
killed coordinator's run goes away too) and ``FINISHED_TTL_S`` after the run ended (long enough
for workers to see ``done``). Nothing in Redis is needed to resume a run: ``--state`` holds that.
The run's options travel as the typed codec of ``FetchConfig`` (``core.codec``), as they do to
``--processes`` children.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import ConfigError, CoordinationError
from poolfetch.core.redact import redact_text, redact_url

CURRENT_RUN_KEY = "poolfetch:current"
#: The consumer group of the workers on the attempt stream.
GROUP = "workers"
#: A running run's keys live this long after the coordinator last refreshed them.
RUN_TTL_S = 3600
#: How often the coordinator refreshes them.
KEEPALIVE_S = 60.0
#: A finished run's keys live this long: workers see ``done`` within a second.
FINISHED_TTL_S = 60
#: How often a waiting worker looks for a run.
_WAIT_POLL_S = 0.1


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
    def attempts(self) -> str:
        """The stream of attempt frames (read by the workers' consumer group)."""
        return self._key("jobs")

    @property
    def answers(self) -> str:
        """The stream of ``Done`` frames (read by the coordinator)."""
        return self._key("results")

    @property
    def done(self) -> str:
        return self._key("done")

    @property
    def workers(self) -> str:
        return self._key("workers")

    @property
    def run_keys(self) -> tuple[str, ...]:
        """The keys the coordinator keeps alive and lets expire (``workers`` expires alone)."""
        return (self.config, self.attempts, self.answers, self.done)


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


def failed(exc: redis.RedisError) -> CoordinationError:
    """The error a shared run ends with when Redis fails (exit 69)."""
    return CoordinationError(f"Redis failed: {redact_text(str(exc))}")


def publish_run(client: redis.Redis, config: FetchConfig) -> RunKeys:
    """Create a run: its options, its streams and group; make it the current run."""
    keys = RunKeys(uuid.uuid4().hex[:16])
    output = Path(config.output_dir).resolve() if config.output_dir is not None else None
    shared = dataclasses.replace(config, output_dir=output, state_path=None)
    try:
        client.set(keys.config, codec.dumps(shared), ex=RUN_TTL_S)
        client.xgroup_create(keys.attempts, GROUP, id="0", mkstream=True)
        # made here, so that workers add answers with NOMKSTREAM: an answer published after
        # the run's keys expired cannot bring back a stream that never expires
        client.xgroup_create(keys.answers, "coordinator", id="0", mkstream=True)
        expire_run(client, keys, RUN_TTL_S)
        client.set(CURRENT_RUN_KEY, keys.run_id, ex=RUN_TTL_S)
    except redis.RedisError as exc:
        raise failed(exc) from exc
    return keys


def keep_alive(client: redis.Redis, keys: RunKeys) -> None:
    """The run is still going: its keys live another ``RUN_TTL_S``."""
    expire_run(client, keys, RUN_TTL_S)
    client.expire(CURRENT_RUN_KEY, RUN_TTL_S)


def end_run(client: redis.Redis, keys: RunKeys) -> None:
    """Mark the run done (workers exit) and let its keys expire soon; quiet if Redis is gone."""
    with contextlib.suppress(redis.RedisError):
        client.set(keys.done, "1", ex=FINISHED_TTL_S)
        expire_run(client, keys, FINISHED_TTL_S)
        current: Any = client.get(CURRENT_RUN_KEY)
        if current is not None and text_of(current) == keys.run_id:
            client.delete(CURRENT_RUN_KEY)


def expire_run(client: redis.Redis, keys: RunKeys, seconds: int) -> None:
    """Let every key of the run expire in ``seconds`` (refreshed while it runs)."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys.run_keys:
            pipe.expire(key, seconds)
        pipe.execute()


def run_config(raw: bytes, workers: int | None) -> FetchConfig:
    """The coordinator's options as a worker uses them (its own ``--workers`` if given)."""
    try:
        config = codec.loads(FetchConfig, raw)
    except codec.CodecError as exc:
        raise CoordinationError(f"the run's options in Redis are not poolfetch's: {exc}") from exc
    return config if workers is None else dataclasses.replace(config, workers=workers)


def wait_for_run(client: redis.Redis, cancelled: threading.Event) -> tuple[RunKeys, bytes] | None:
    """Block until a coordinator publishes a run that is not done: its keys and options
    (None if cancelled)."""
    while not cancelled.is_set():
        try:
            current: Any = client.get(CURRENT_RUN_KEY)
            if current is not None:
                keys = RunKeys(text_of(current))
                raw: Any = client.get(keys.config)
                if raw is not None and not client.exists(keys.done):
                    return keys, bytes(raw)
        except redis.RedisError as exc:
            raise failed(exc) from exc
        cancelled.wait(_WAIT_POLL_S)
    return None
