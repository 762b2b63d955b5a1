"""Requests beyond GET, through the real CLI against the practice server, asserting on what the
server received (method, body digest, content type) and what the user sees (records, files,
exit codes)."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
from pathlib import Path

from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer, RequestLogEntry


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _received(server: PracticeServer) -> list[RequestLogEntry]:
    return sorted(server.requests(), key=lambda e: e.path)


def _lines(path: Path, *lines: object) -> Path:
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_json_posts_every_url_with_its_body_and_content_types(
    server: PracticeServer, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_bytes(b'{"query": "caf\xc3\xa9", "n": [1, 2]}\n')
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/echo?i={i}" for i in range(3)])
    result = run_cli("run", str(urls), "--json", f"@{payload}")
    assert result.code == 0, result.stderr
    received = _received(server)
    assert [e.method for e in received] == ["POST"] * 3
    assert {e.body_sha256 for e in received} == {_sha(payload.read_bytes())}
    assert {e.content_type for e in received} == {"application/json"}
    assert {e.headers["Accept"] for e in received} == {"application/json"}
    # what /echo answered: the record's sha256 is the digest of the body that came back
    echo = {
        "method": "POST",
        "content_type": "application/json",
        "bytes": len(payload.read_bytes()),
        "sha256": _sha(payload.read_bytes()),
    }
    answer = json.dumps(echo).encode() + b"\n"
    for number, record in enumerate(sorted(result.records, key=lambda r: r["url"]), 1):
        assert record["method"] == "POST"
        assert (record["source"], record["line"]) == (str(urls), number)
        assert record["final_url"] == record["url"]
        assert record["content_type"] == "application/json"
        assert record["sha256"] == _sha(answer)


def test_data_is_a_form_post_unless_header_or_method_say_otherwise(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/echo"])
    form = run_cli("run", str(urls), "-d", "a=1&b=2")
    typed = run_cli("run", str(urls), "-d", "a,b", "-H", "Content-Type: text/csv", "-X", "PUT")
    assert (form.code, typed.code) == (0, 0), form.stderr + typed.stderr
    first, second = server.requests()
    assert (first.method, first.content_type, first.body_sha256) == (
        "POST",
        "application/x-www-form-urlencoded",
        _sha("a=1&b=2"),
    )
    assert (second.method, second.content_type, second.body_sha256) == (
        "PUT",
        "text/csv",
        _sha("a,b"),
    )
    assert typed.records[0]["method"] == "PUT"


def test_bad_bodies_are_usage_errors_before_anything_is_sent(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/echo"])
    not_json = run_cli("run", str(urls), "--json", '{"a": 1,}')
    missing = run_cli("run", str(urls), "-d", f"@{tmp_path / 'missing.txt'}")
    both = run_cli("run", str(urls), "-d", "a=1", "--json", "{}")
    assert (not_json.code, missing.code, both.code) == (2, 2, 2)
    assert "--json: not valid JSON: Expecting property name" in not_json.stderr
    assert "line 1 column 9" in not_json.stderr
    assert "--data @" in missing.stderr and "No such file" in missing.stderr
    assert "not both" in both.stderr
    for run in (not_json, missing, both):
        assert "Traceback" not in run.stderr and run.stdout == ""
    assert server.requests() == []


def test_a_body_at_dash_is_read_from_standard_input_unless_it_carries_the_urls(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/echo?i={i}" for i in range(2)])
    body = b'{"from": "stdin", "bytes": "\xc3\xa9"}'
    piped = run_cli("run", str(urls), "--json", "@-", input=body)
    assert piped.code == 0, piped.stderr
    assert [(e.method, e.body_sha256) for e in server.requests()] == [("POST", _sha(body))] * 2
    # the URLs on standard input too: a usage error naming the option, nothing sent
    for sources in ((), ("-",)):
        both = run_cli("run", *sources, "-d", "@-", input=f"{server.url}/echo\n")
        assert both.code == 2 and "Traceback" not in both.stderr
        assert "--data @-: standard input carries the URLs" in both.stderr
    assert len(server.requests()) == 2


def test_request_objects_override_the_command_line_and_bad_ones_say_why(
    server: PracticeServer, tmp_path: Path
) -> None:
    base = server.url
    source = _lines(
        tmp_path / "in.jsonl",
        f"{base}/echo?plain",
        "# a comment still counts as a line",
        {"url": f"{base}/echo?put", "method": "PUT", "data": "x=1", "id": "row-3"},
        {"url": f"{base}/echo?json", "json": {"k": "v"}, "headers": {"X-Trace": "t1"}, "id": 4},
        '{"url": "http://h/", "method": "POST",}',
        {"method": "POST"},
        {"url": f"{base}/echo?x", "headers": {"X-A": 1}},
    )
    summary = tmp_path / "summary.json"
    result = run_cli(
        "run", str(source), "-X", "PATCH", "-d", "cli=1", "--summary-json", str(summary)
    )
    assert result.code == 1, result.stderr
    assert json.loads(summary.read_text())["by_method"] == {"PATCH": 5, "PUT": 1}
    by_line = {r["line"]: r for r in result.records}
    assert sorted(by_line) == [1, 3, 4, 5, 6, 7]
    assert {r["source"] for r in result.records} == {str(source)}
    assert (by_line[1]["method"], by_line[3]["method"], by_line[4]["method"]) == (
        "PATCH",
        "PUT",
        "PATCH",
    )
    assert (by_line[3]["id"], by_line[4]["id"]) == ("row-3", 4)
    assert "id" not in by_line[1]
    assert (
        "not valid JSON: Expecting property name enclosed in double quotes at column 39"
        in (by_line[5]["error"])
    )
    assert by_line[6]["error"] == 'request object has no "url"'
    assert by_line[7]["error"] == 'request object header "X-A" must be a string, not a number'
    assert all(by_line[n]["attempts"] == 0 and by_line[n]["final_url"] is None for n in (5, 6, 7))
    got = {e.path.split("?")[1]: e for e in server.requests()}
    assert sorted(got) == ["json", "plain", "put"]
    assert (got["plain"].method, got["plain"].body_sha256) == ("PATCH", _sha("cli=1"))
    assert (got["put"].method, got["put"].body_sha256) == ("PUT", _sha("x=1"))
    assert got["put"].content_type == "application/x-www-form-urlencoded"
    assert (got["json"].method, got["json"].body_sha256) == ("PATCH", _sha('{"k":"v"}'))
    assert got["json"].content_type == "application/json"
    assert got["json"].headers["X-Trace"] == "t1"


def test_a_post_is_retried_only_where_the_server_cannot_have_acted(
    server: PracticeServer, tmp_path: Path
) -> None:
    base = server.url
    closed = f"http://127.0.0.1:{_free_port()}/nothing-listens"
    source = write_urls(
        tmp_path / "u.txt",
        [
            f"{base}/fail/1/a?status=500",
            f"{base}/fail/1/b?status=503",
            f"{base}/fail/1/c?status=429",
            f"{base}/reset",
            closed,
        ],
    )
    common = ("--retries", "2", "--backoff", "0", "--no-adaptive")
    result = run_cli("run", str(source), "-d", "order=1", *common)
    assert result.code == 1, result.stderr
    by_url = {r["url"]: r for r in result.records}
    first = by_url[f"{base}/fail/1/a?status=500"]
    assert (first["ok"], first["attempts"], first["status"]) == (False, 1, 500)
    assert "not retried" in first["error"] and "--retry-unsafe" in first["error"]
    assert by_url[f"{base}/fail/1/b?status=503"]["attempts"] == 2
    assert by_url[f"{base}/fail/1/b?status=503"]["ok"]
    assert by_url[f"{base}/fail/1/c?status=429"]["attempts"] == 2
    assert by_url[f"{base}/reset"]["attempts"] == 1  # sent, then reset: it may have acted
    assert by_url[closed]["attempts"] == 3  # refused: nothing was sent, so retried
    paths = [e.path for e in server.requests()]
    assert paths.count("/fail/1/a?status=500") == 1 and paths.count("/reset") == 1
    server.reset_log()
    again = write_urls(tmp_path / "again.txt", [f"{base}/fail/1/d?status=500", f"{base}/reset"])
    unsafe = run_cli("run", str(again), "-d", "order=1", "--retry-unsafe", *common)
    by_url = {r["url"]: r for r in unsafe.records}
    assert by_url[f"{base}/fail/1/d?status=500"]["attempts"] == 2
    assert by_url[f"{base}/reset"]["attempts"] == 3


def test_redirects_change_the_method_as_rfc_9110_and_curl_do(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    base = server.url
    other = f"{second_server.url}/echo"
    source = _lines(
        tmp_path / "in.jsonl",
        {"url": f"{base}/redirect-to?url=/echo%3Fs303&status=303", "method": "PUT", "data": "b"},
        {"url": f"{base}/redirect-to?url=/echo%3Fs302&status=302", "data": "b"},
        {"url": f"{base}/redirect-to?url=/echo%3Fput302&status=302", "method": "PUT", "data": "b"},
        {"url": f"{base}/redirect-to?url=/echo%3Fs307&status=307", "data": "b"},
        {
            "url": f"{base}/redirect-to?url={other}%3Fs308&status=308",
            "data": "b",
            "headers": {"Authorization": "Bearer Pw9Secret"},
        },
    )
    result = run_cli("run", str(source), "-H", "Content-Type: text/plain")
    assert result.code == 0, result.stderr
    landed = {
        e.path.split("?")[1]: e
        for e in server.requests() + second_server.requests()
        if e.path.startswith("/echo")
    }
    assert (landed["s303"].method, landed["s303"].body_sha256) == ("GET", None)
    assert landed["s303"].content_type is None  # the body went, and its type with it
    assert (landed["s302"].method, landed["s302"].body_sha256) == ("GET", None)
    assert (landed["put302"].method, landed["put302"].body_sha256) == ("PUT", _sha("b"))
    assert (landed["s307"].method, landed["s307"].body_sha256) == ("POST", _sha("b"))
    assert landed["s307"].content_type == "text/plain"
    assert (landed["s308"].method, landed["s308"].body_sha256) == ("POST", _sha("b"))
    assert "Authorization" not in landed["s308"].headers  # the chain left the host
    records = {r["line"]: r for r in result.records}
    assert records[1]["method"] == "PUT" and records[1]["final_url"] == f"{base}/echo?s303"
    assert records[5]["final_url"] == f"{other}?s308"
    assert "Pw9Secret" not in result.stdout + result.stderr


def test_state_keys_requests_by_method_url_and_body(server: PracticeServer, tmp_path: Path) -> None:
    base = server.url
    state = tmp_path / "state.db"
    source = _lines(
        tmp_path / "in.jsonl",
        {"url": f"{base}/etag/r", "data": "a=1"},
        {"url": f"{base}/etag/r", "data": "a=2"},
        f"{base}/etag/r",
    )
    first = run_cli("run", str(source), "--state", str(state), "-o", str(tmp_path / "out"))
    assert first.code == 0, first.stderr
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT method, body_sha256 FROM urls ORDER BY url").fetchall()
    db.close()
    assert sorted(rows, key=str) == sorted(
        [("GET", None), ("POST", _sha("a=1")), ("POST", _sha("a=2"))], key=str
    )
    server.reset_log()
    second = run_cli("run", str(source), "--state", str(state), "-o", str(tmp_path / "out"))
    assert second.code == 0, second.stderr
    sent = {(e.method, e.body_sha256): e.headers for e in server.requests()}
    assert len(sent) == 3
    assert "If-None-Match" in sent[("GET", None)]  # the GET is conditional again
    assert "If-None-Match" not in sent[("POST", _sha("a=1"))]
    get = next(r for r in second.records if r["method"] == "GET")
    posts = [r for r in second.records if r["method"] == "POST"]
    assert get["unchanged"] and get["sha256"] == _sha("resource r version 1")
    assert get["sha256"] == _sha(Path(get["path"]).read_bytes())
    assert [p["unchanged"] for p in posts] == [False, False]
    assert len({p["path"] for p in [*posts, get]}) == 3  # three requests, three bodies


def test_output_names_a_file_under_the_output_dir_safely(
    server: PracticeServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "evil").symlink_to(outside)
    base = server.url
    source = _lines(
        tmp_path / "in.jsonl",
        {"url": f"{base}/bytes/10", "output": "reports/a.bin", "id": 1},
        {"url": f"{base}/bytes/20", "output": "reports/a.bin", "id": 2},
        {"url": f"{base}/bytes/30", "output": "../escape.bin"},
        {"url": f"{base}/bytes/40", "output": "evil/x.bin"},
        f"{base}/bytes/50",
    )
    result = run_cli("run", str(source), "-o", str(out))
    assert result.code == 1, result.stderr
    by_line = {r["line"]: r for r in result.records}
    assert by_line[1]["ok"] and by_line[1]["path"] == str(out / "reports" / "a.bin")
    assert (out / "reports" / "a.bin").read_bytes() == _sample(10)
    assert by_line[1]["sha256"] == _sha(_sample(10))
    assert by_line[2]["error"] == (
        "output 'reports/a.bin' is already named by an earlier request of this run"
    )
    assert by_line[2]["attempts"] == 0
    assert "'..'" in by_line[3]["error"] and by_line[3]["attempts"] == 0
    assert not by_line[4]["ok"] and "cannot create folder" in by_line[4]["error"]
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.bin").exists()
    assert by_line[5]["ok"] and "~" in Path(by_line[5]["path"]).name  # generated names as ever
    assert [e.path for e in server.requests()].count("/bytes/20") == 0


def _sample(size: int) -> bytes:
    pattern = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n"
    return (pattern * (size // len(pattern) + 1))[:size]


def test_records_say_where_a_request_ended_and_what_came_back(
    server: PracticeServer, tmp_path: Path
) -> None:
    base = server.url
    source = write_urls(
        tmp_path / "u.txt",
        [f"{base}/redirect/2", f"{base}/etag/h", f"{base}/status/404", "ftp://nope/"],
    )
    result = run_cli(
        "run", str(source), "--record-header", "ETag", "--record-header", "content-type"
    )
    assert result.code == 1, result.stderr
    by_line = {r["line"]: r for r in result.records}
    redirect, etag, missing, bad = (by_line[n] for n in (1, 2, 3, 4))
    assert redirect["final_url"] == f"{base}/redirect/0"
    assert redirect["sha256"] == _sha("done")
    assert etag["headers"] == {"etag": '"1"', "content-type": "text/plain; charset=utf-8"}
    assert etag["content_type"] == "text/plain; charset=utf-8"
    assert missing["sha256"] is None and missing["content_type"] == "text/plain; charset=utf-8"
    assert missing["final_url"] == f"{base}/status/404"
    assert bad["final_url"] is None and bad["content_type"] is None and bad["headers"] == {}
    assert {r["method"] for r in result.records} == {"GET"}
    plain = run_cli("run", str(source))
    assert all("headers" not in r for r in plain.records)
    out = tmp_path / "out"
    stdin = run_cli("run", "-", "-X", "HEAD", "-o", str(out), input=f"\n{base}/fixed\n")
    assert (stdin.records[0]["source"], stdin.records[0]["line"]) == ("-", 2)
    assert stdin.records[0]["method"] == "HEAD" and stdin.records[0]["sha256"] is None
    assert stdin.records[0]["ok"] and server.requests()[-1].method == "HEAD"
    assert stdin.records[0]["path"] is None and list(out.iterdir()) == []  # nothing to save
