"""``WorkerLoop`` with a fake Redis client and a fake pool: a worker reads only as many attempts
as it has free threads, answers each with one transaction, and stops when the run is done."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from poolfetch.core import codec
from poolfetch.core.frames import Done, Job
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.redis.keys import RunKeys
from poolfetch.core.redis.worker import WorkerLoop
from poolfetch.core.transport import Attempt


class _Pipe:
    def __init__(self, client: FakeStream) -> None:
        self._client = client
        self._commands: list[tuple[str, Any]] = []

    def __enter__(self) -> _Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def xadd(self, key: str, fields: dict[str, Any], nomkstream: bool) -> None:
        self._commands.append(("xadd", fields))

    def xack(self, key: str, group: str, entry_id: str) -> None:
        self._commands.append(("xack", entry_id))

    def xdel(self, key: str, entry_id: str) -> None:
        self._commands.append(("xdel", entry_id))

    def execute(self) -> None:
        with self._client.lock:
            self._client.transactions.append(self._commands)


class FakeStream:
    """An attempt stream holding ``count`` frames; records what the worker asked for."""

    def __init__(self, count: int) -> None:
        self.entries = [
            (f"{i}-0".encode(), {b"job": codec.dumps(Job(i, FetchJob(i, f"http://h/{i}", "h")))})
            for i in range(count)
        ]
        self.asked: list[int] = []
        self.transactions: list[list[tuple[str, Any]]] = []
        self.lock = threading.Lock()

    def xreadgroup(self, group: str, name: str, streams: Any, count: int, block: int) -> Any:
        self.asked.append(count)
        taken, self.entries = self.entries[:count], self.entries[count:]
        if not taken:
            threading.Event().wait(0.01)
            return []
        return [(b"jobs", taken)]

    def xautoclaim(self, *args: Any, **kwargs: Any) -> Any:
        return [b"0-0", [], []]

    def xclaim(self, *args: Any, **kwargs: Any) -> None:
        return None

    def exists(self, key: str) -> int:
        with self.lock:
            return int(not self.entries and len(self.transactions) == 5)

    def pipeline(self, transaction: bool = True) -> _Pipe:
        assert transaction  # the answer and the acknowledgement are one
        return _Pipe(self)


class FakePool:
    """Two threads whose attempts wait for ``release``; counts how many ran at once."""

    workers = 2

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def start(self, loop: Callable[[int], None]) -> None:
        for index in range(self.workers):
            threading.Thread(target=loop, args=(index,), daemon=True).start()

    def execute(self, message: Job) -> Done:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait(5)
        with self._lock:
            self.running -= 1
        return Done(message.id, Attempt(AttemptOutcome(0.0, 0.1, status=200), None))


def test_a_worker_reads_no_more_attempts_than_it_has_free_threads() -> None:
    stream, pool = FakeStream(5), FakePool()
    loop = WorkerLoop(stream, RunKeys("r"), pool, "w1", 60.0, threading.Event())  # type: ignore[arg-type]
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    threading.Timer(0.1, pool.release.set).start()  # both threads busy for a while first
    runner.join(10)
    assert not runner.is_alive()  # the run is done: the loop ended
    assert pool.most == 2 and max(stream.asked) <= 2
    assert stream.asked[0] == 2  # then only what was freed: never 5 at once
    assert loop.answered == 5
    answered = sorted(codec.loads(Done, t[0][1]["done"]).id for t in stream.transactions)
    assert answered == list(range(5))
    for commands in stream.transactions:  # published, acknowledged and deleted together
        entry = commands[1][1]
        assert [c for c, _ in commands] == ["xadd", "xack", "xdel"] and commands[2][1] == entry
        assert commands[0][1]["worker"] == "w1"
