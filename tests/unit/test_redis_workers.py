"""``RedisWorkers``' own logic with a fake Redis client: capacity from the workers present,
answers to attempts no longer in flight dropped, body paths as the coordinator gave ``-o``,
Redis failing ends the run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import CoordinationError
from poolfetch.core.executors import Answers
from poolfetch.core.frames import Done, Job
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.redis.executor import RedisWorkers
from poolfetch.core.redis.presence import parse_members
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.transport import Attempt


class _Pipe:
    def __init__(self, client: FakeRedis) -> None:
        self._client = client

    def __enter__(self) -> _Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def xadd(self, key: str, fields: dict[str, bytes]) -> None:
        self._client.added.append(fields["job"])

    def expire(self, key: str, seconds: int) -> None:
        return None

    def execute(self) -> None:
        if self._client.broken:
            raise redis.ConnectionError("gone")


class FakeRedis:
    """What ``RedisWorkers`` calls, in memory; ``present`` are the presence set's members."""

    def __init__(self, present: list[bytes]) -> None:
        self.present = present
        self.added: list[bytes] = []
        self.broken = False
        #: Presence counts that find nobody before ``present`` (workers joining late).
        self.join_after = 0
        self.counted = 0
        self.answers: list[tuple[bytes, dict[bytes, bytes]]] = []
        self._read = threading.Event()

    def set(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get(self, key: str) -> None:
        return None

    def xgroup_create(self, *args: Any, **kwargs: Any) -> None:
        return None

    def expire(self, *args: Any) -> None:
        return None

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self)

    def xadd(self, key: str, fields: dict[str, bytes]) -> None:
        if self.broken:
            raise redis.ConnectionError("gone")
        self.added.append(fields["job"])

    def eval(self, script: str, keys: int, *args: Any) -> list[bytes]:
        if self.broken:
            raise redis.ConnectionError("gone")
        self.counted += 1
        return self.present if self.counted > self.join_after else []

    def xtrim(self, key: str, minid: str) -> None:
        return None

    def xread(self, streams: dict[str, str], count: int, block: int) -> list[Any]:
        if self.broken:
            raise redis.ConnectionError("gone")
        self._read.wait(block / 1000)
        return []


def _pending(n: int) -> PendingJob:
    return PendingJob(FetchJob(seq=n, url=f"http://h/{n}", host="h:80"))


def _done(attempt_id: int, saved: str | None = None) -> dict[bytes, bytes]:
    attempt = Attempt(AttemptOutcome(started=0.0, elapsed=0.1, status=200), None, None, saved)
    return {b"done": codec.dumps(Done(attempt_id, attempt)), b"worker": b"w1"}


class _Inbox:
    def __init__(self) -> None:
        self.delivered: list[tuple[PendingJob, Attempt]] = []
        self.failures: list[Exception] = []
        self.failed = threading.Event()

    def answers(self) -> Answers:
        def fail(error: Exception) -> None:
            self.failures.append(error)
            self.failed.set()

        return Answers(
            deliver=lambda p, a, w: self.delivered.append((p, a)),
            lost=lambda p: pytest.fail("a shared run never re-runs an attempt as lost"),
            failed=fail,
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def _workers(
    client: FakeRedis, inbox: _Inbox, config: FetchConfig | None = None, clock: _Clock | None = None
) -> RedisWorkers:
    clock = clock or _Clock()
    workers = RedisWorkers(
        client,  # type: ignore[arg-type]
        config or FetchConfig(),
        inbox.answers(),
        clock=clock,
        pause=clock.pause,
    )
    workers.start()
    return workers


def test_capacity_is_the_threads_the_present_workers_announce() -> None:
    assert parse_members([b"4 host-1", b"3 host 2", b"junk"]).threads == 7
    inbox, clock = _Inbox(), _Clock()
    alone = _workers(FakeRedis([]), inbox, clock=clock)
    assert alone.capacity == 0  # no worker: the runner dispatches nothing
    assert 0.9 < clock.now < 1.1  # after looking for one for a second
    alone.close()
    late = FakeRedis([b"4 a", b"3 b"])
    late.join_after = 3  # they join the run a few polls after it was published
    clock.now = 0.0
    two = _workers(late, inbox, clock=clock)
    assert (two.capacity, two.processes, two.sessions) == (7, 2, 0)
    assert clock.now < 0.1  # found at once: the first attempts go out with the first dispatch
    two.close()


def test_a_second_answer_to_an_attempt_is_dropped() -> None:
    client, inbox = FakeRedis([b"2 a"]), _Inbox()
    workers = _workers(client, inbox)
    first, second = _pending(1), _pending(2)
    workers.submit(first)
    workers.submit(second)
    workers.flush()
    frames = [codec.loads(Job, raw) for raw in client.added]  # one round trip, two frames
    assert [f.job for f in frames] == [first.job, second.job]
    ids = [f.id for f in frames]
    workers.settle(_done(ids[1]))
    workers.settle(_done(ids[1]))  # taken over from a worker thought dead, answered twice
    workers.settle(_done(999))  # never ours
    assert [p for p, _ in inbox.delivered] == [second]
    assert second.ran_on == "w1"
    workers.close()


def test_a_body_path_is_given_as_the_coordinator_named_its_output_folder(tmp_path: Path) -> None:
    client, inbox = FakeRedis([b"1 a"]), _Inbox()
    relative = Path("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        workers = _workers(client, inbox, FetchConfig(output_dir=relative))
        workers.submit(_pending(1))
        workers.flush()
        attempt_id = codec.loads(Job, client.added[0]).id
        workers.settle(_done(attempt_id, str(tmp_path / "out" / "h" / "1")))
        workers.close()
    assert inbox.delivered[0][1].saved_path == "out/h/1"


def test_redis_failing_ends_the_run() -> None:
    client, inbox = FakeRedis([b"1 a"]), _Inbox()
    workers = _workers(client, inbox)
    workers.submit(_pending(1))
    client.broken = True
    with pytest.raises(CoordinationError, match="Redis failed"):
        workers.flush()  # raised in the runner's loop: it stops and writes its summary
    assert inbox.failed.wait(5)  # and the answer reader says so too
    assert isinstance(inbox.failures[0], CoordinationError)
    workers.close()
