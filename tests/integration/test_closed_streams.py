"""Standard streams closed at start (``<&-``, ``>&-``, ``2>&-``), as some daemons and
schedulers leave them: a clear usage error where the run needs the stream, a normal run where
it does not, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import CLI, write_urls

from poolfetch.core.practice import PracticeServer

TIMEOUT_S = 30


def _run_closed(redirect: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with one standard stream closed by the shell (``redirect``: ``<&-`` …)."""
    command = f'exec "$@" {redirect}'
    return subprocess.run(
        ["sh", "-c", command, "sh", *CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_a_closed_standard_output_is_a_usage_error_unless_the_records_go_to_a_file(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/status/200"])
    refused = _run_closed(">&-", "run", "urls.txt", cwd=tmp_path)
    assert refused.returncode == 2
    assert "standard output is closed: give the records a file with --results" in refused.stderr
    by_path = _run_closed(">&-", "run", "urls.txt", "--results", "/dev/stdout", cwd=tmp_path)
    assert by_path.returncode == 2 and "standard output is closed" in by_path.stderr
    assert server.requests() == []  # refused before any request
    written = _run_closed(">&-", "run", "urls.txt", "--results", "r.jsonl", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert record["ok"] and record["status"] == 200
    assert "Traceback" not in refused.stderr + written.stderr


def test_a_closed_standard_error_loses_no_record(server: PracticeServer, tmp_path: Path) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/status/200", f"{server.url}/status/404"])
    # worker processes too, logging (-vv) to the stderr they inherit: not into their pipes
    args = ("-o", "out", "--retries", "0", "--processes", "2", "-w", "2", "-vv")
    result = _run_closed("2>&-", "run", "urls.txt", *args, cwd=tmp_path)
    assert result.returncode == 1  # one URL failed, and it says so by its exit code
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["status"] for r in records) == [200, 404]
    assert len(server.requests()) == 2


def test_a_closed_standard_input_is_a_usage_error_only_where_the_run_reads_it(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/echo"])
    no_source = _run_closed("<&-", "run", cwd=tmp_path)
    assert no_source.returncode == 2
    assert "standard input is closed: give the URLs as a file" in no_source.stderr
    body = _run_closed("<&-", "run", "urls.txt", "-d", "@-", cwd=tmp_path)
    assert body.returncode == 2
    assert "--data @-: standard input is closed: give the body as @FILE" in body.stderr
    by_path = _run_closed("<&-", "run", "/dev/stdin", cwd=tmp_path)  # not an empty list
    assert by_path.returncode == 2 and "standard input is closed" in by_path.stderr
    assert server.requests() == []
    from_file = _run_closed("<&-", "run", "urls.txt", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["ok"]
    assert "Traceback" not in no_source.stderr + body.stderr + from_file.stderr
