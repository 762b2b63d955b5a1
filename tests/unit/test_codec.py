"""The typed codec, and the frames between the main process and its worker processes."""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy
from poolfetch.core.errors import ConnectError, FetchError, OutputError
from poolfetch.core.frames import (
    STOP,
    Done,
    FrameReader,
    FrameWriter,
    Job,
    Setup,
    WireError,
    frame,
    read_frame,
)
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.transport import Attempt


def test_a_job_and_its_redirect_hop_round_trip() -> None:
    job = FetchJob(
        seq=7,
        url="https://example.com/a?b=1",
        host="example.com:443",
        validators=(("If-None-Match", '"v1"'),),
        tag="1-0",
        hop_url="https://other.example/next",
        hops=1,
        strip_credentials=True,
    )
    assert codec.loads(FetchJob, codec.dumps(job)) == job


def test_an_attempt_keeps_its_error_class_and_message() -> None:
    outcome = AttemptOutcome(started=1.5, elapsed=0.25, error=ConnectError("connection failed"))
    attempt = Attempt(outcome, None, next_hop=None, saved_path="out/a.html")
    back = codec.loads(Attempt, codec.dumps(attempt))
    assert type(back.outcome.error) is ConnectError
    assert str(back.outcome.error) == "connection failed"
    assert back.saved_path == "out/a.html" and back.outcome.elapsed == 0.25


def test_an_unknown_error_class_arrives_as_a_fetch_error() -> None:
    data = codec.encode(AttemptOutcome(started=0.0, elapsed=0.0, error=OutputError("x")))
    assert list(data[3]) == ["OutputError", "x"]
    data[3][0] = "NoSuchError"
    back = codec.decode(AttemptOutcome, data)
    assert type(back.error) is FetchError and str(back.error) == "x"


def test_the_whole_config_round_trips() -> None:
    config = FetchConfig(
        workers=12,
        rate=RateLimit(qps=2.5, burst=3, per_host_connections=4),
        retry=RetryPolicy(retry_on=frozenset({429, 503})),
        headers=(("Accept", "application/json"),),
        output_dir=Path("out"),
        max_bytes=1024,
        processes=2,
    )
    assert codec.loads(FetchConfig, codec.dumps(config)) == config


@dataclass(frozen=True)
class _Later:
    """A type grown with fields of every supported kind: they travel with no codec change."""

    name: str
    blob: bytes = b""
    counts: dict[str, int] = field(default_factory=dict)
    items: list[tuple[str, float]] = field(default_factory=list)
    maybe: int | None = None


def test_new_fields_travel_without_touching_the_codec() -> None:
    value = _Later("a", b"\x00\xff", {"x": 1}, [("p", 0.5)], 3)
    assert codec.loads(_Later, codec.dumps(value)) == value


_JOB = codec.encode(FetchJob(seq=7, url="u", host="h"))


@pytest.mark.parametrize(
    "data",
    [
        ["7", *_JOB[1:]],  # a string where an int belongs
        [True, *_JOB[1:]],  # a bool is no int here
        _JOB[1:],  # a field missing
        [*_JOB, None],  # one too many
        [*_JOB[:3], [["a", 1]], *_JOB[4:]],  # a header value that is no string
        [*_JOB[:8], ["GET", [], None, None, None, []], *_JOB[9:]],  # a list as request id
        {"seq": 7, "url": "u", "host": "h"},  # an object: the layout is an array
        ["not", "an", "object"],
    ],
)
def test_a_value_that_does_not_fit_its_type_is_refused(data: object) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(FetchJob, data)


def test_the_layout_is_the_fields_in_order_and_floats_accept_integers() -> None:
    job = FetchJob(seq=7, url="u", host="h", validators=(("If-None-Match", '"v"'),), line=3)
    assert json.loads(codec.dumps(job))[:4] == [7, "u", "h", [["If-None-Match", '"v"']]]
    outcome = codec.decode(AttemptOutcome, [1, 2, *codec.encode(AttemptOutcome(0.0, 0.0))[2:]])
    assert outcome.started == 1.0 and type(outcome.started) is float


def test_frames_round_trip_and_end_cleanly() -> None:
    job = Job(3, FetchJob(seq=1, url="http://a/", host="a:80"))
    done = Done(3, Attempt(AttemptOutcome(started=0.0, elapsed=0.1, status=200), None))
    setup = Setup(FetchConfig(), "1.0", 4, None)
    stream = io.BytesIO(frame(setup) + frame(job) + frame(done) + frame(STOP))
    assert read_frame(stream) == setup
    assert read_frame(stream) == job
    assert read_frame(stream) == done
    assert read_frame(stream) == STOP
    assert read_frame(stream) is None


def test_a_cut_frame_is_the_end_and_garbage_is_an_error() -> None:
    whole = frame(Job(1, FetchJob(seq=1, url="http://a/", host="a:80")))
    assert read_frame(io.BytesIO(whole[:-3])) is None
    with pytest.raises(WireError):
        read_frame(io.BytesIO(b"\x00\x00\x00\x02\x63{}"))
    with pytest.raises(WireError):
        read_frame(io.BytesIO(b"\x00\x00\x00\x02\x03{}"))


def test_a_frame_reader_returns_every_whole_frame_of_one_read_and_keeps_the_rest() -> None:
    read_end, write_end = os.pipe()
    reader = FrameReader(read_end)
    jobs = [Job(i, FetchJob(seq=i, url=f"http://a/{i}", host="a:80")) for i in range(4)]
    data = b"".join(frame(j) for j in jobs)
    cut = len(data) - 5
    os.write(write_end, data[:cut])
    assert reader.batch() == jobs[:3]  # the fourth is not whole yet
    os.write(write_end, data[cut:] + frame(STOP))
    assert reader.batch() == [jobs[3], STOP]
    os.write(write_end, frame(jobs[0])[:7])
    os.close(write_end)
    assert reader.batch() is None  # a frame cut by the writer's exit is the end
    os.close(read_end)


def test_a_frame_writer_keeps_frames_whole_when_threads_send_at_once() -> None:
    read_end, write_end = os.pipe()
    out = os.fdopen(write_end, "wb")
    writer = FrameWriter(out)
    answers = [Done(i, Attempt(AttemptOutcome(0.0, 0.1, status=200), None)) for i in range(200)]
    threads = [
        threading.Thread(target=lambda part=part: [writer.send(frame(a)) for a in part])
        for part in (answers[0::2], answers[1::2])
    ]
    for thread in threads:
        thread.start()
    reader = FrameReader(read_end)
    got: list[object] = []
    while len(got) < len(answers):
        got.extend(reader.batch() or [])
    for thread in threads:
        thread.join()
    out.close()
    assert sorted(got, key=lambda d: d.id) == answers  # type: ignore[attr-defined]
    os.close(read_end)
