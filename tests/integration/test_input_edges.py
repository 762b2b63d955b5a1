"""Input edge cases through the real CLI: byte order marks, Unicode white space around URLs,
lines longer than a read, and passwords in bad lines (records, summary, stderr)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest
from support import CLI, run_cli

from poolfetch.core.practice import PracticeServer

pytestmark = pytest.mark.integration

BOM = b"\xef\xbb\xbf"


def test_bom_and_unicode_white_space_around_urls(server: PracticeServer, tmp_path: Path) -> None:
    url = f"{server.url}/fixed"
    first = tmp_path / "first.txt"
    first.write_bytes(BOM + f"{url}?a\n".encode())
    second = tmp_path / "second.txt"
    lines = [
        "# a comment after a BOM",
        f"\xa0{url}?b\u3000",
        f"\u2003 \t{url}?c\u200a\r",
        "\u3000\xa0",
        "\u3000# an indented comment",
        f"\x1c{url}?d",
        f"{url}?e\x85",
    ]
    second.write_bytes(BOM + "\n".join(lines).encode() + b"\n")
    summary = tmp_path / "summary.json"
    result = run_cli("run", str(first), str(second), "--summary-json", str(summary))
    assert result.code == 1, result.stderr
    # split on LF only: a record may hold U+0085, which str.splitlines (CliResult.records) splits on
    records = [json.loads(line) for line in result.stdout.split("\n") if line]
    assert sorted(r["url"] for r in records if r["ok"]) == [f"{url}?a", f"{url}?b", f"{url}?c"]
    bad = [r for r in records if not r["ok"]]
    assert len(bad) == 2
    assert all("control character" in r["error"] and r["attempts"] == 0 for r in bad)
    assert json.loads(summary.read_text())["total"] == len(records) == 5
    assert len(server.requests()) == 3


def test_urls_padded_with_more_white_space_than_a_read(
    server: PracticeServer, tmp_path: Path
) -> None:
    url = f"{server.url}/fixed"
    source = tmp_path / "urls.txt"
    source.write_bytes(
        b" " * 100_000
        + f"{url}?lead\n{url}?trail".encode()
        + "\u3000".encode() * 40_000
        + b"\r\n"
        + b"\t" * 50_000
        + b"\n"  # a blank line however long
        + f"{url}?long/".encode()
        + b" " * 40_000
        + b"x\n"  # white space inside: 40,000 characters is too long for a URL
    )
    result = run_cli("run", str(source))
    assert result.code == 1, result.stderr
    records = result.records
    assert sorted(r["url"] for r in records if r["ok"]) == [f"{url}?lead", f"{url}?trail"]
    (bad,) = [r for r in records if not r["ok"]]
    assert "longer than 8192" in bad["error"]
    assert bad["url"].startswith(f"{url}?long/")


def test_bad_lines_never_show_a_password(tmp_path: Path) -> None:
    lines = [
        "http://u:Pw9Secret@[::1/",
        "http://u:Pw9Secret@ex\uff03ample/",
        "http://u:Pw9Secret@[zz]/",
        "http://u:Pw9Secret@h:abc/",
        "http://u:Pw9Secret@h/a b?next=http://v:Pw9Secret@w/",
        f"http://u:Pw9Secret@h/{'a' * 9000}",
    ]
    source = tmp_path / "urls.txt"
    source.write_bytes("\n".join(lines).encode() + b"\n")
    summary = tmp_path / "summary.json"
    result = run_cli("run", "-v", str(source), "--summary-json", str(summary))
    assert result.code == 1, result.stderr
    assert len(result.records) == len(lines)
    assert all(not r["ok"] and "u:***@" in r["url"] for r in result.records)
    for text in (result.stdout, result.stderr, summary.read_text()):
        assert "Pw9Secret" not in text
    errors = {r["error"] for r in result.records}
    assert "port is not a number" in errors


def test_redis_error_does_not_show_the_password(tmp_path: Path) -> None:
    source = tmp_path / "urls.txt"
    source.write_text("http://127.0.0.1:9/\n")
    result = run_cli("run", str(source), "--redis", "redis://user:Pw9Secret@127.0.0.1:9/0")
    assert result.code == 69, result.stderr
    assert "Pw9Secret" not in result.stderr
    assert "redis://user:***@127.0.0.1:9/0" in result.stderr


def test_reading_standard_input_from_a_terminal_says_so(
    server: PracticeServer, tmp_path: Path
) -> None:
    """No source and stdin a terminal: one line on stderr says where URLs are read from."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    with subprocess.Popen(
        [*CLI, "run", "--no-progress"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    ) as proc:
        os.close(terminal)
        try:
            assert proc.stderr is not None
            ready, _, _ = select.select([proc.stderr], [], [], 20)
            first = proc.stderr.readline().decode() if ready else ""
            os.write(controller, f"{server.url}/fixed\n\x04".encode())  # a URL, then Ctrl-D
            out, _ = proc.communicate(timeout=20)
        finally:
            os.close(controller)
    assert "reading URLs from standard input" in first
    assert proc.returncode == 0 and json.loads(out)["ok"]


@pytest.mark.parametrize("length", [20_000, 1_000_000])  # within one read, and past it
def test_a_bad_line_over_the_limit_carries_its_head_and_says_how_long_it_was(
    tmp_path: Path, length: int
) -> None:
    """Contract (Records: more keys): the first 8,192 characters in url, the length in error."""
    line = "http://example.com/" + "é" * (length - len("http://example.com/"))
    (tmp_path / "urls.txt").write_text(f"  {line}  \n", encoding="utf-8")
    result = run_cli("run", "urls.txt", cwd=tmp_path)
    (record,) = result.records
    assert record["url"] == line[:8192]
    assert f"{length:,} characters" in record["error"], record["error"]
