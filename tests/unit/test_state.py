"""The SQLite state: schema migration, resume and new-run decisions, the lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from poolfetch.core.errors import StateError, StateLockedError
from poolfetch.core.models import AttemptOutcome, FetchResult
from poolfetch.core.state import _SCHEMA_V1, SCHEMA_VERSION, StateStore


def _ok(url: str, path: str | None = None) -> tuple[FetchResult, AttemptOutcome]:
    result = FetchResult(url=url, ok=True, status=200, attempts=1, bytes=5, path=path)
    outcome = AttemptOutcome(
        started=0.0,
        elapsed=0.1,
        status=200,
        etag='"v1"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
    )
    return result, outcome


def test_a_version_1_file_opens_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V1 + "PRAGMA user_version = 1;")
        db.execute("INSERT INTO runs (id, started_at, finished_at) VALUES (1, 0, 5)")
        db.execute(
            "INSERT INTO urls (url, run_id, ok, status, path, etag, last_modified, fetched_at)"
            " VALUES ('http://a/', 1, 1, 200, NULL, '\"e\"', NULL, 1)"
        )
    db.close()
    store = StateStore(path)
    assert store.schema_version == SCHEMA_VERSION
    store.begin(refresh=False)  # the v1 run had finished: a new run, with validators
    assert not store.resumed
    stored = store.lookup("http://a/")
    assert stored is not None and not stored.done_in_run
    assert stored.validators == (("If-None-Match", '"e"'),)
    store.finish(completed=True)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT attempts, bytes FROM urls").fetchone() == (0, 0)
        assert db.execute("SELECT outcome FROM runs WHERE id = 1").fetchone() == ("finished",)
    db.close()


def test_an_interrupted_run_is_resumed_and_a_finished_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.begin(refresh=False)
    store.record("http://a/", *_ok("http://a/"))
    store.finish(completed=False)  # SIGTERM
    store = StateStore(path)
    store.begin(refresh=False)
    assert store.resumed
    stored = store.lookup("http://a/")
    assert stored is not None and stored.done_in_run and stored.status == 200
    store.finish(completed=True)
    store = StateStore(path)
    store.begin(refresh=False)
    assert not store.resumed
    stored = store.lookup("http://a/")
    assert stored is not None and not stored.done_in_run
    assert dict(stored.validators) == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    store.finish(completed=True)


def test_refresh_starts_a_new_run_after_an_interrupted_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.begin(refresh=False)
    store.record("http://a/", *_ok("http://a/"))
    store.finish(completed=False)
    store = StateStore(path)
    store.begin(refresh=True)
    assert not store.resumed
    stored = store.lookup("http://a/")
    assert stored is not None and not stored.done_in_run
    store.finish(completed=True)


def test_validators_are_not_sent_when_the_body_file_is_gone(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    store.record("http://a/", *_ok("http://a/", path=str(tmp_path / "missing")))
    stored = store.lookup("http://a/")
    assert stored is not None and stored.validators == ()
    store.finish(completed=True)


def test_a_failure_keeps_the_last_good_body_and_validators(tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_text("x")
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    store.record("http://a/", *_ok("http://a/", path=str(body)))
    failed = FetchResult(url="http://a/", ok=False, status=503, attempts=4, error="HTTP 503")
    store.record("http://a/", failed, AttemptOutcome(started=0.0, elapsed=0.1, status=503))
    stored = store.lookup("http://a/")
    assert stored is not None and stored.path == str(body)
    assert ("If-None-Match", '"v1"') in stored.validators
    store.finish(completed=True)


def test_a_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = StateStore(path)
    with pytest.raises(StateLockedError):
        StateStore(path)
    first.begin(refresh=False)
    first.finish(completed=True)
    StateStore(path).finish(completed=True)  # released: usable again


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        StateStore(path)
