"""-C partial bodies: the resume rules (bodies.py), the writers (partials.py), the state rows."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from poolfetch.core.bodies import ResumePoint, Verdict, judge, keeps_partial, resume_validator
from poolfetch.core.errors import BodyTooLargeError, ConnectError, FetchError, OutputError
from poolfetch.core.models import AttemptOutcome, FetchJob, FetchResult
from poolfetch.core.partials import PartialBodies, PartialNotice, TempBodies
from poolfetch.core.request import RequestSpec
from poolfetch.core.sinks import PARTIAL_PREFIX, BodyStore
from poolfetch.core.state import StateStore

URL = "http://example.com/big/file.iso"
ETAG = '"v1"'
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
RESUME = ResumePoint(1000, ETAG)


# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ETag": ETAG, "Last-Modified": DATE}, ETAG),
        ({"ETag": 'W/"weak"', "Last-Modified": DATE}, DATE),  # weak never matches If-Range
        ({"Last-Modified": DATE}, DATE),
        ({"ETag": "unquoted"}, None),
        ({}, None),
        ({"ETag": ETAG, "Content-Encoding": "gzip"}, None),  # offsets of coded bytes
        ({"ETag": ETAG, "Content-Encoding": "identity"}, ETAG),
    ],
)
def test_resume_validator(headers: dict[str, str], expected: str | None) -> None:
    assert resume_validator(headers) == expected


@pytest.mark.parametrize(
    ("status", "headers", "resume", "verdict"),
    [
        (200, {}, None, Verdict.WHOLE),
        (206, {"Content-Range": "bytes 0-9/10"}, None, Verdict.WHOLE),
        (206, {"Content-Range": "bytes 1000-1999/2000", "ETag": ETAG}, RESUME, Verdict.APPEND),
        (206, {"Content-Range": "bytes 1000-1999/*"}, RESUME, Verdict.APPEND),
        (206, {"Content-Range": "bytes 999-1999/2000"}, RESUME, Verdict.REFETCH),
        (206, {"Content-Range": "bytes 1000-1999/2000", "ETag": '"v2"'}, RESUME, Verdict.REFETCH),
        (206, {}, RESUME, Verdict.REFETCH),
        (206, {"Content-Type": "multipart/byteranges; boundary=x"}, RESUME, Verdict.REFETCH),
        (200, {"ETag": '"v2"'}, RESUME, Verdict.WHOLE),  # changed, or Range ignored
        (416, {"Content-Range": "bytes */1000"}, RESUME, Verdict.REFETCH),
        (503, {}, RESUME, Verdict.WHOLE),  # an error: judged by the retry policy
    ],
)
def test_judge(status: int, headers: dict[str, str], resume, verdict: Verdict) -> None:
    assert judge(status, headers, resume) is verdict


def test_a_resume_asks_for_the_rest_under_its_validator_without_coding() -> None:
    assert dict(RESUME.request_headers()) == {
        "Range": "bytes=1000-",
        "If-Range": ETAG,
        "Accept-Encoding": "identity",
    }


def test_only_cut_offs_worth_resuming_keep_their_partial() -> None:
    assert keeps_partial(ConnectError("reset")) and keeps_partial(FetchError("cancelled"))
    assert not keeps_partial(BodyTooLargeError("max-bytes"))
    assert not keeps_partial(OutputError("disk full"))


# --- the writers --------------------------------------------------------------------------


class _MainThread:
    """Stands in for the runner: records every notice and answers ``started`` at once."""

    def __init__(self) -> None:
        self.notices: list[PartialNotice] = []

    def __call__(self, notice: PartialNotice) -> None:
        self.notices.append(notice)
        notice.done.set()

    @property
    def kinds(self) -> list[str]:
        return [n.kind for n in self.notices]


def _job() -> FetchJob:
    return FetchJob(seq=1, url=URL, host="example.com:80")


def _resume(bodies: PartialBodies) -> ResumePoint | None:
    """What an attempt starting now would be offered (the attempt then ends)."""
    point = bodies.begin(_job())
    bodies.end(_job())
    return point


def _open(bodies: PartialBodies, headers: dict[str, str], offset: int):
    """An attempt that begins and gets a response with ``headers``."""
    bodies.begin(_job())
    return bodies.open(_job(), headers, offset)


def _partial_files(root: Path) -> list[Path]:
    return list(root.rglob(f"{PARTIAL_PREFIX}*"))


def test_a_cut_off_body_is_kept_recorded_and_offered_for_resume(tmp_path: Path) -> None:
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    writer = _open(bodies, {"ETag": ETAG}, 0)
    writer.write(b"a" * 100)
    assert main.kinds == []  # one piece: no round trip yet
    writer.write(b"b" * 50)
    assert main.kinds == ["started"] and main.notices[0].validator == ETAG
    writer.abort(ConnectError("reset"))
    assert main.kinds == ["started", "kept"] and main.notices[1].held == 150
    assert _resume(bodies) == ResumePoint(150, ETAG)
    [partial] = _partial_files(tmp_path)
    assert partial.read_bytes() == b"a" * 100 + b"b" * 50
    store.close()
    assert _partial_files(tmp_path) == [partial]  # closing the run keeps it


def test_resuming_appends_and_digests_the_whole_body(tmp_path: Path) -> None:
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    first = _open(bodies, {"ETag": ETAG}, 0)
    first.write(b"x" * 10)
    first.write(b"y" * 10)
    first.abort(FetchError("cancelled"))
    resume = _resume(bodies)
    assert resume == ResumePoint(20, ETAG)
    writer = _open(bodies, {"ETag": ETAG, "Content-Range": "bytes 20-29/30"}, 20)
    writer.write(b"z" * 10)
    pending, digest = writer.finish()
    assert writer.offset == 20 and writer.size == 30
    path = store.commit(pending)
    body = b"x" * 10 + b"y" * 10 + b"z" * 10
    assert Path(path).read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()
    assert not _partial_files(tmp_path)
    assert _resume(bodies) is None


def test_a_new_version_replaces_the_old_row_before_its_first_byte(tmp_path: Path) -> None:
    """Otherwise a kill -9 right after the first piece would leave new bytes under the old
    validator, and a server back at the old version would append to them."""
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    old = _open(bodies, {"ETag": ETAG}, 0)
    old.write(b"old")
    old.write(b"old")
    old.abort(ConnectError("reset"))
    main.notices.clear()
    writer = _open(bodies, {"ETag": '"v2"'}, 0)  # a 200 with another ETag
    writer.write(b"new")
    assert [(n.kind, n.validator) for n in main.notices] == [("started", '"v2"')]
    writer.abort(ConnectError("reset"))
    assert _resume(bodies) == ResumePoint(3, '"v2"')
    main.notices.clear()
    writer = _open(bodies, {}, 0)  # and one without any validator: the row goes first
    writer.write(b"x")
    assert main.kinds == ["dropped"]


def test_a_body_without_validator_is_not_kept(tmp_path: Path) -> None:
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    writer = _open(bodies, {}, 0)
    writer.write(b"a")
    writer.write(b"b")
    writer.abort(ConnectError("reset"))
    assert main.kinds == ["dropped"]
    assert not _partial_files(tmp_path)


def test_a_body_too_large_is_not_kept(tmp_path: Path) -> None:
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    writer = _open(bodies, {"ETag": ETAG}, 0)
    writer.write(b"a")
    writer.write(b"b")
    writer.abort(BodyTooLargeError("max-bytes"))
    assert main.kinds == ["started", "dropped"]
    assert not _partial_files(tmp_path) and _resume(bodies) is None


def test_a_state_row_under_another_dir_is_not_resumed(tmp_path: Path) -> None:
    store = BodyStore(tmp_path / "out")
    bodies = PartialBodies(store, _MainThread())
    (tmp_path / "out" / "example.com" / "big").mkdir(parents=True)
    Path(store.partial_path(URL)).write_bytes(b"12345")
    bodies.expect(_job(), ("elsewhere/" + Path(store.partial_path(URL)).name, ETAG, 5))
    assert _resume(bodies) is None
    bodies.expect(_job(), (store.partial_path(URL), ETAG, 5))
    assert _resume(bodies) == ResumePoint(5, ETAG)
    bodies.drop(_job())
    assert not _partial_files(tmp_path) and _resume(bodies) is None


def test_the_same_url_twice_in_flight_shares_no_partial_file(tmp_path: Path) -> None:
    import threading

    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    owner = _open(bodies, {"ETag": ETAG}, 0)
    owner.write(b"a")
    owner.write(b"a")
    owner.abort(ConnectError("reset"))
    assert bodies.begin(_job()) == ResumePoint(2, ETAG)  # this thread owns the URL now
    seen: list[object] = []

    def other_worker() -> None:
        seen.append(bodies.begin(_job()))
        writer = bodies.open(_job(), {"ETag": ETAG}, 0)
        writer.write(b"whole")
        pending, _ = writer.finish()
        seen.append(pending.partial)
        store.discard(pending)
        bodies.end(_job())

    thread = threading.Thread(target=other_worker)
    thread.start()
    thread.join()
    assert seen == [None, False]  # no resume offered, a temporary file written
    [partial] = _partial_files(tmp_path)
    assert partial.read_bytes() == b"aa"  # the owner's partial file untouched
    bodies.end(_job())


def test_only_gets_are_resumable_and_an_output_name_is_followed(tmp_path: Path) -> None:
    store, main = BodyStore(tmp_path), _MainThread()
    bodies = PartialBodies(store, main)
    post = FetchJob(seq=1, url=URL, host="example.com:80", request=RequestSpec("POST", body=b"x"))
    assert bodies.begin(post) is None
    writer = bodies.open(post, {"ETag": ETAG}, 0)
    writer.write(b"a")
    writer.write(b"b")
    writer.abort(ConnectError("reset"))
    assert main.kinds == [] and not [p for p in tmp_path.rglob("*") if p.is_file()]
    bodies.end(post)
    named = FetchJob(
        seq=2, url=URL, host="example.com:80", request=RequestSpec(output="isos/file.iso")
    )
    assert bodies.begin(named) is None
    writer = bodies.open(named, {"ETag": ETAG}, 0)
    writer.write(b"a")
    writer.write(b"b")
    writer.abort(ConnectError("reset"))
    assert main.notices[-1].path == str(tmp_path / "isos" / f"{PARTIAL_PREFIX}file.iso.part")
    assert bodies.begin(named) == ResumePoint(2, ETAG)
    bodies.end(named)


def test_temp_bodies_never_resume_and_leave_nothing_when_cut_off(tmp_path: Path) -> None:
    store = BodyStore(tmp_path)
    bodies = TempBodies(store)
    assert bodies.begin(_job()) is None
    writer = _open(bodies, {"ETag": ETAG}, 0)
    writer.write(b"abc")
    writer.abort(ConnectError("reset"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# --- the state ----------------------------------------------------------------------------


def _ok(url: str) -> tuple[FetchResult, AttemptOutcome]:
    result = FetchResult(url=url, ok=True, status=200, attempts=1, bytes=5, path="out/x")
    return result, AttemptOutcome(started=0.0, elapsed=0.1, status=200, etag=ETAG)


def test_partial_rows_live_until_the_body_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.begin(refresh=False)
    store.partial_started(URL, "out/.p", ETAG)
    # committed at once: another connection (a kill -9 now) sees it
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT url, validator, held FROM partials").fetchall() == [
            (URL, ETAG, 0)
        ]
    other.close()
    store.partial_kept(URL, 4096)
    assert store.partial(URL) == ("out/.p", ETAG, 4096)
    store.record(URL, *_ok(URL))
    assert store.partial(URL) is None
    store.finish(completed=True)


def test_stale_partials_are_those_of_urls_this_run_did_not_see(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    store.partial_started("http://a/", "out/.a", ETAG)
    store.partial_started("http://b/", "out/.b", ETAG)
    store.finish(completed=True)
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=True)
    failed = FetchResult(url="http://a/", ok=False, status=None, attempts=1)
    store.record("http://a/", failed, AttemptOutcome(started=0.0, elapsed=0.1))
    assert store.stale_partials() == ["out/.b"]  # the paths of the files to remove
    assert store.partial("http://b/") is None and store.partial("http://a/") is not None
    store.finish(completed=True)


def test_a_version_3_file_gains_the_partials_table(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    store = StateStore(path)
    store.finish(completed=False)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE partials")
        db.execute("PRAGMA user_version = 3")
    db.close()
    store = StateStore(path)
    store.begin(refresh=False)
    assert store.partial(URL) is None
    store.partial_started(URL, "out/.p", ETAG)
    assert store.partial(URL) == ("out/.p", ETAG, 0)
    store.finish(completed=True)
