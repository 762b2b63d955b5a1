"""The state keyed by request (method, URL, body), the v2 -> v3 migration, and triage on it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from poolfetch.core.admission import SourceItem
from poolfetch.core.models import AttemptOutcome, FetchResult
from poolfetch.core.request import (
    FORM_TYPE,
    CommandLineRequest,
    RequestBuilder,
    RequestObject,
    RequestSpec,
    parse_request_object,
)
from poolfetch.core.state import _MIGRATIONS, _SCHEMA_V1, SCHEMA_VERSION, StateStore
from poolfetch.core.triage import OutputClaims, ToFetch, triage

URL = "http://h/api"


def _object(**fields: object) -> RequestObject:
    parsed = parse_request_object(json.dumps({"url": URL, **fields}))
    assert isinstance(parsed, RequestObject)
    return parsed


def _ok(digest: str = "d1") -> tuple[FetchResult, AttemptOutcome]:
    result = FetchResult(url=URL, ok=True, status=200, attempts=1, bytes=5)
    result.final_url, result.content_type = URL + "/final", "application/json"
    outcome = AttemptOutcome(started=0.0, elapsed=0.1, status=200, etag='"v1"', digest=digest)
    return result, outcome


def _v2_file(path: Path) -> None:
    """A state file as poolfetch wrote it before requests had methods (schema 2)."""
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V1 + _MIGRATIONS[1] + "PRAGMA user_version = 2;")
        db.execute("INSERT INTO runs (id, started_at, outcome) VALUES (1, 0, 'interrupted')")
        db.execute(
            "INSERT INTO urls (url, run_id, ok, status, path, etag, fetched_at, attempts, bytes,"
            " digest) VALUES (?, 1, 1, 200, NULL, '\"e\"', 1, 1, 7, 'abc')",
            (URL,),
        )
    db.close()


def test_a_version_2_file_migrates_and_its_rows_are_the_gets_of_their_urls(tmp_path):
    path = tmp_path / "v2.db"
    _v2_file(path)
    store = StateStore(path)
    assert store.schema_version == SCHEMA_VERSION
    store.begin(refresh=False)  # the v2 run was interrupted: resumed
    assert store.resumed
    stored = store.lookup(RequestSpec().key(URL))
    assert stored is not None and stored.done_in_run and stored.bytes == 7
    assert stored.digest == "abc"
    assert store.lookup(RequestSpec("POST", body=b"x").key(URL)) is None
    store.finish(completed=True)
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT method, body_sha256, final_url FROM urls").fetchone()
    db.close()
    assert row == ("GET", None, None)


def test_two_posts_of_different_bodies_are_two_entries(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    one, two = RequestSpec("POST", body=b"a=1"), RequestSpec("POST", body=b"a=2")
    store.record(one.key(URL), *_ok("d1"), one)
    store.record(two.key(URL), *_ok("d2"), two)
    first, second = store.lookup(one.key(URL)), store.lookup(two.key(URL))
    assert first is not None and second is not None
    assert (first.digest, second.digest) == ("d1", "d2")
    assert store.lookup(URL) is None  # the GET of that URL is a third request
    assert first.final_url == URL + "/final" and first.content_type == "application/json"
    store.finish(completed=True)
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute("SELECT method, body_sha256 FROM urls ORDER BY body_sha256").fetchall()
    db.close()
    assert rows == sorted([("POST", one.body_sha256), ("POST", two.body_sha256)], key=str)


def _item(seq: int, line: object, number: int = 1) -> SourceItem:
    return SourceItem(seq, line, source="in.jsonl", number=number)  # type: ignore[arg-type]


def test_a_resumed_run_skips_the_post_it_did_with_its_stored_record_keys(tmp_path):
    path = tmp_path / "s.db"
    builder = RequestBuilder(CommandLineRequest(), (), saves_bodies=False)
    obj = _object(data="a=1", id=3)
    spec = builder.resolve(obj)
    assert isinstance(spec, RequestSpec) and spec.headers == (("Content-Type", FORM_TYPE),)
    store = StateStore(path)
    store.begin(refresh=False)
    store.record(spec.key(URL), *_ok("d1"), spec)
    store.finish(completed=False)
    store = StateStore(path)
    store.begin(refresh=False)
    skipped = triage(_item(0, obj, number=4), store, builder)
    assert isinstance(skipped, FetchResult) and skipped.skipped == "done"
    record = skipped.to_record()
    assert record["sha256"] == "d1" and record["final_url"] == URL + "/final"
    assert (record["method"], record["source"], record["line"], record["id"]) == (
        "POST",
        "in.jsonl",
        4,
        3,
    )
    other = _object(data="a=2")
    assert isinstance(triage(_item(1, other), store, builder), ToFetch)
    store.finish(completed=True)


def test_validators_are_sent_for_a_get_not_for_a_post(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    builder = RequestBuilder(CommandLineRequest(), (), saves_bodies=False)
    post = RequestSpec("POST", body=b"x")
    for spec in (RequestSpec(), post):
        store.record(spec.key(URL), *_ok(), spec)
    store.finish(completed=True)
    store = StateStore(tmp_path / "s.db")
    store.begin(refresh=False)
    get = triage(_item(0, URL), store, builder)
    posted = triage(_item(1, _object(data="x")), store, builder)
    assert isinstance(get, ToFetch) and get.validators == (("If-None-Match", '"v1"'),)
    assert isinstance(posted, ToFetch) and posted.validators == ()
    store.finish(completed=True)


def test_a_second_request_naming_the_same_output_is_refused():
    builder = RequestBuilder(CommandLineRequest(), (), saves_bodies=True)
    claims = OutputClaims()
    first = parse_request_object('{"url": "http://h/1", "output": "a/x.json"}')
    second = parse_request_object('{"url": "http://h/2", "output": "a/x.json"}')
    other = parse_request_object('{"url": "http://h/3", "output": "a/y.json"}')
    assert isinstance(triage(_item(0, first), None, builder, claims), ToFetch)
    refused = triage(_item(1, second, number=2), None, builder, claims)
    assert isinstance(refused, FetchResult) and not refused.ok and refused.attempts == 0
    assert refused.error == "output 'a/x.json' is already named by an earlier request of this run"
    assert refused.url == "http://h/2" and refused.line == 2
    assert isinstance(triage(_item(2, other), None, builder, claims), ToFetch)
