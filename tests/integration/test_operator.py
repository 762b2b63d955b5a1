"""What an operator sees: the live display in a real terminal, cron-quiet output, the summary,
configuration precedence and redaction."""

from __future__ import annotations

import collections
import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from support import require_service, run_cli, write_urls

from poolfetch.core.practice import PracticeServer


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


def test_live_display_in_a_terminal_shows_429s_retries_and_rate(tmp_path: Path) -> None:
    require_service("tmux")
    session = f"poolfetch-{uuid.uuid4().hex[:8]}"
    command = (
        f"{shlex.quote(sys.executable)} -m poolfetch.cli demo --dir {shlex.quote(str(tmp_path))}"
        f"; echo EXIT=$?; sleep 60"
    )
    screens: list[str] = []
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "45", command],
        check=True,
        timeout=10,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = _tmux("capture-pane", "-p", "-t", session)
            screens.append(screen)
            if "EXIT=" in screen:
                break
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, timeout=10)
    final = screens[-1]
    assert "EXIT=0" in final, final
    live = [s for s in screens if "throughput" in s and "req/s" in s]
    assert live, "the live display never showed"
    assert any("429s" in s and "retries" in s and "latency p50" in s for s in live)
    counts = [_number_after(s, "429s ") for s in live]
    assert max(counts) > 0, "the demo's rate-limited server answered 429 and the display showed it"
    assert any("ETA" in s for s in live)
    assert "poolfetch summary" in final and "answered 429" in final


def _number_after(screen: str, label: str) -> int:
    _, _, rest = screen.partition(label)
    digits = "".join(ch for ch in rest[:12].split(" ")[0] if ch.isdigit())
    return int(digits) if digits else 0


def test_summary_json_matches_the_records(server: PracticeServer, tmp_path: Path) -> None:
    urls = [f"{server.url}/fixed?i={i}" for i in range(20)]
    urls += [f"{server.url}/status/404?i={i}" for i in range(3)]
    urls += [f"{server.url}/fail/1/x?status=429&retry_after=0", "ftp://bad.example/"]
    summary_path = tmp_path / "summary.json"
    result = run_cli(
        "run",
        str(write_urls(tmp_path / "u.txt", urls)),
        "--summary-json",
        str(summary_path),
        "--backoff",
        "0",
    )
    summary = json.loads(summary_path.read_text())
    records = result.records
    assert summary["total"] == len(records) == 25
    assert summary["ok"] == sum(r["ok"] for r in records) == 21
    assert summary["failed"] == 4
    by_status = collections.Counter(str(r["status"]) for r in records if r["status"] is not None)
    assert summary["by_status"] == dict(by_status)
    assert summary["status_429"] == 1 and summary["retries"] == 1
    assert summary["requests"] == sum(r["attempts"] for r in records) == 25
    assert summary["bytes"] >= sum(r["bytes"] for r in records)
    for key in ("skipped", "unchanged", "elapsed_s", "requests_per_s"):
        assert key in summary
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["top_errors"][0] == {"error": "HTTP 404", "count": 3}


def test_progress_without_a_terminal_prints_plain_status_lines(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/fixed?i={i}" for i in range(40)])
    result = run_cli("run", str(urls), "--progress", "--qps", "6")
    assert result.code == 0
    lines = result.stderr.strip().splitlines()
    assert "\x1b" not in result.stderr
    status = [line for line in lines if " done, " in line and "req/s now" in line]
    assert len(status) >= 1
    assert lines[-1].startswith("poolfetch: 40 URLs: 40 ok")


def test_config_file_environment_and_command_line_precedence(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/headers"])
    config = tmp_path / "poolfetch.toml"
    config.write_text('workers = 3\nper-host-qps = 50\nheader = ["X-From: file"]\n')
    summary = tmp_path / "s.json"

    def workers(*extra: str, env: dict[str, str] | None = None) -> int:
        result = run_cli("run", str(urls), "--summary-json", str(summary), *extra, env=env)
        assert result.code == 0, result.stderr
        return int(json.loads(summary.read_text())["workers"])

    assert workers() == 10  # default
    assert workers("--config", str(config)) == 3  # file
    assert server.requests()[-1].headers["X-From"] == "file"
    assert workers("--config", str(config), env={"POOLFETCH_WORKERS": "5"}) == 5  # env > file
    assert workers("--config", str(config), "-w", "7", env={"POOLFETCH_WORKERS": "5"}) == 7
    assert workers(env={"POOLFETCH_CONFIG": str(config)}) == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("no-such-option = 1\n")
    result = run_cli("run", str(urls), "--config", str(bad))
    assert result.code == 2 and "no-such-option" in result.stderr


def test_config_keys_are_the_option_names_users_see(tmp_path: Path) -> None:
    """`redis = …` names `--redis` (stored as redis_url inside); the flag pairs by their name."""
    urls = write_urls(tmp_path / "u.txt", ["http://127.0.0.1:9/never"])
    config = tmp_path / "poolfetch.toml"
    config.write_text('redis = "redis://127.0.0.1:9/0"\nprogress = false\nno-pin-cpu = true\n')
    result = run_cli("run", str(urls), "--config", str(config))
    assert result.code == 2 and "no-pin-cpu" in result.stderr  # a flag's "no" name is no key
    config.write_text('redis = "redis://127.0.0.1:9/0"\nprogress = false\npin-cpu = false\n')
    result = run_cli("run", str(urls), "--config", str(config))
    assert result.code == 69, result.stderr  # the config's Redis was used (and is unreachable)


def test_credentials_never_appear_in_records_logs_or_summary(
    server: PracticeServer, tmp_path: Path
) -> None:
    secret_url = f"http://alice:hunter2@{server.url.removeprefix('http://')}/status/500"
    urls = write_urls(tmp_path / "u.txt", [secret_url])
    summary = tmp_path / "s.json"
    result = run_cli(
        "run",
        str(urls),
        "-vv",
        "--summary-json",
        str(summary),
        "--retries",
        "1",
        "--backoff",
        "0",
        "-H",
        "Authorization: Bearer sekrit-token",
        "-H",
        "X-Api-Key: k3y-value",
    )
    assert result.code == 1
    everything = result.stdout + result.stderr + summary.read_text()
    for secret in ("hunter2", "sekrit-token", "k3y-value"):
        assert secret not in everything
    assert result.records[0]["url"].startswith("http://alice:***@")
    assert server.requests()[0].headers["X-Api-Key"] == "k3y-value"  # sent, just not shown
    assert "Authorization" in server.requests()[0].headers
    help_text = run_cli("run", "--help", env={"POOLFETCH_HEADER": "Authorization: Bearer zzz"})
    assert "zzz" not in help_text.stdout


def test_serve_on_a_port_in_use_or_a_foreign_address_says_so_in_one_line(
    server: PracticeServer,
) -> None:
    for args in (["--port", str(server.port)], ["--host", "192.0.2.1", "--port", "0"]):
        result = run_cli("serve", *args, timeout=20)
        assert result.code != 0
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot listen on" in lines[0], result.stderr


def test_a_bad_value_from_the_environment_or_config_file_names_where_it_came_from(
    tmp_path: Path,
) -> None:
    result = run_cli("run", "/dev/null", env={"POOLFETCH_QPS": "abc"}, cwd=tmp_path)
    assert result.code == 2 and "POOLFETCH_QPS" in result.stderr, result.stderr
    (tmp_path / "p.toml").write_text('workers = "many"\n')
    result = run_cli("run", "/dev/null", "--config", "p.toml", cwd=tmp_path)
    assert result.code == 2 and "p.toml" in result.stderr, result.stderr


def test_refresh_without_state_says_it_does_nothing(server: PracticeServer) -> None:
    result = run_cli("run", "--refresh", input=f"{server.url}/fixed\n")
    assert result.code == 0
    assert "--refresh has no effect without --state" in result.stderr


def test_an_output_dir_that_cannot_be_created_is_not_blamed_on_symlinks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for where in ("/proc/nope", "file/sub"):
        result = run_cli("run", "-o", where, "/dev/null", cwd=tmp_path)
        assert result.code == 2 and "--output-dir" in result.stderr
        assert "symlink" not in result.stderr, result.stderr
