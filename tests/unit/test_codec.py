"""The typed codec, and the frames between the main process and its worker processes."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy
from poolfetch.core.errors import ConnectError, FetchError, OutputError
from poolfetch.core.frames import STOP, Done, Job, Setup, WireError, frame, read_frame
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.transport import Attempt


def test_a_job_and_its_redirect_hop_round_trip() -> None:
    job = FetchJob(
        seq=7,
        url="https://example.com/a?b=1",
        host="example.com:443",
        validators=(("If-None-Match", '"v1"'),),
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
    data["error"]["type"] = "NoSuchError"
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


@pytest.mark.parametrize(
    "data",
    [
        {"seq": "7", "url": "u", "host": "h"},  # a string where an int belongs
        {"seq": True, "url": "u", "host": "h"},  # a bool is no int here
        {"url": "u", "host": "h"},  # a required field missing
        ["not", "an", "object"],
    ],
)
def test_a_value_that_does_not_fit_its_type_is_refused(data: object) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(FetchJob, data)


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
