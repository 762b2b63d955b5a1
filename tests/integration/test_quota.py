"""Announced quotas and rate forms through the real CLI, judged at the practice server.

Each server announces its quota in one header dialect family and refuses (429) whatever goes
beyond it; poolfetch, with its defaults, must get every URL without one refusal, never put more
in a window than the quota says, and still finish near the ideal time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support import max_in_window, run_cli, write_urls

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits

QUOTA = 4  # per window: fewer than the workers, so a burst would be refused
WINDOW_S = 1.0
URLS = 12  # three windows
WORKERS = "8"


def _serve(window: str, dialect: str) -> PracticeServer:
    limits = ServerLimits(
        window=window, window_limit=QUOTA, window_s=WINDOW_S, headers=dialect, retry_after=True
    )
    return PracticeServer(ServerOptions(limits=limits))


def _fixed_windows(accepted: list[float]) -> list[int]:
    """Requests in each of the server's fixed windows (each begins with the first request
    after the previous one ended)."""
    counts: list[int] = []
    start = -1e18
    for t in sorted(accepted):
        if t >= start + WINDOW_S:
            start = t
            counts.append(0)
        counts[-1] += 1
    return counts


def _fetch(server: PracticeServer, tmp_path: Path, *extra: str) -> tuple[dict, list, float]:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(URLS)])
    summary = tmp_path / "summary.json"
    started = time.monotonic()
    result = run_cli("run", str(urls), "-w", WORKERS, "--summary-json", str(summary), *extra)
    elapsed = time.monotonic() - started
    assert result.code in (0, 1), result.stderr
    return json.loads(summary.read_text()), result.records, elapsed


@pytest.mark.parametrize(
    "dialect", ["ietf", "ratelimit", "x-ratelimit", "x-ratelimit-unix", "reset-after"]
)
def test_a_fixed_window_quota_is_never_exceeded(dialect: str, tmp_path: Path) -> None:
    with _serve("fixed", dialect) as server:
        summary, records, elapsed = _fetch(server, tmp_path)
        stats = server.stats()
        accepted = [d.time for d in server.limits.decisions() if d.accepted]
    assert all(r["ok"] and r["attempts"] == 1 for r in records), records
    assert len(records) == URLS
    assert summary["status_429"] == 0 and stats["limit_refused"] == 0
    assert len(accepted) == URLS
    assert max(_fixed_windows(accepted)) <= QUOTA
    # three windows, each waited for (how close to the ideal is bench/quota.py's to say)
    assert elapsed >= (URLS / QUOTA - 1) * WINDOW_S


def _window_spans(accepted: list[float]) -> list[float]:
    """Seconds from the first to the last accepted request of each of the server's windows."""
    spans: list[list[float]] = []
    for t in sorted(accepted):
        if not spans or t >= spans[-1][0] + WINDOW_S:
            spans.append([t])
        spans[-1].append(t)
    return [window[-1] - window[0] for window in spans]


def test_the_last_window_is_sent_at_once_the_others_spread(tmp_path: Path) -> None:
    """Spreading a window that does not cover the work costs nothing (the next one opens at
    the reset anyway); spreading the one that does would only end the run later."""
    with _serve("fixed", "x-ratelimit") as server:
        summary, records, _ = _fetch(server, tmp_path)
        accepted = [d.time for d in server.limits.decisions() if d.accepted]
    assert all(r["ok"] for r in records) and summary["status_429"] == 0
    spans = _window_spans(accepted)
    assert len(spans) == URLS // QUOTA, spans
    assert min(spans[:-1]) >= 0.5 * WINDOW_S, spans  # paced until the reset
    assert spans[-1] <= 0.3 * WINDOW_S, spans  # the probe, then the rest at once


@pytest.mark.parametrize("dialect", ["x-ratelimit", "x-ratelimit-unix"])
def test_a_moving_window_quota_is_never_exceeded(dialect: str, tmp_path: Path) -> None:
    # with whole-second resets its units are timed by poolfetch's own starts (core/quota.py)
    with _serve("moving", dialect) as server:
        summary, records, _ = _fetch(server, tmp_path)
        stats = server.stats()
        accepted = [d.time for d in server.limits.decisions() if d.accepted]
    assert all(r["ok"] for r in records) and len(records) == URLS
    assert summary["status_429"] == 0 and stats["limit_refused"] == 0
    assert max_in_window(accepted, WINDOW_S) <= QUOTA


def test_without_rate_headers_the_burst_is_refused(tmp_path: Path) -> None:
    """The same server, the quota ignored: what the tests above avoid."""
    with _serve("fixed", "x-ratelimit") as server:
        summary, records, _ = _fetch(server, tmp_path, "--no-rate-headers")
    assert summary["status_429"] > 0
    assert summary["rates"]["rate_headers"] is False
    assert all(r["ok"] for r in records)  # Retry-After still brings every URL home


def test_rates_per_minute_hold_and_show_as_given(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(6)])
    summary = tmp_path / "summary.json"
    result = run_cli("run", str(urls), "-w", "4", "--qps", "300/m", "--summary-json", str(summary))
    assert result.code == 0, result.stderr
    times = sorted(e.time for e in server.requests())
    assert len(times) == 6
    assert max_in_window(times, 1.0) <= 5 + 1  # 5 a second, the bucket's one in hand
    assert times[-1] - times[0] >= 0.9  # six starts at 5/s take a second
    rates = json.loads(summary.read_text())["rates"]
    assert rates["qps"] == {"given": "300/m", "per_s": 5.0}
    assert rates["per_host_qps"] is None


def test_rates_from_the_environment_and_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "poolfetch.toml"
    config.write_text('per-host-qps = "100/15s"\n', encoding="utf-8")
    summary = tmp_path / "summary.json"
    result = run_cli(
        "run",
        "--config",
        str(config),
        "--summary-json",
        str(summary),
        input="",
        env={"POOLFETCH_QPS": "5000/h"},
    )
    assert result.code == 0, result.stderr
    rates = json.loads(summary.read_text())["rates"]
    assert rates["qps"]["given"] == "5000/h"
    assert rates["per_host_qps"] == {"given": "100/15s", "per_s": pytest.approx(100 / 15)}


@pytest.mark.parametrize(
    ("args", "env", "option"),
    [
        (["--qps", "10/fortnight"], {}, "--qps"),
        (["--per-host-qps", "0/s"], {}, "--per-host-qps"),
        ([], {"POOLFETCH_QPS": "fast"}, "--qps"),
    ],
)
def test_bad_rates_name_the_option_and_the_forms(args: list, env: dict, option: str) -> None:
    result = run_cli("run", *args, input="http://127.0.0.1:9/\n", env=env)
    assert result.code == 2
    assert option in result.stderr and "60/m" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_rate_in_a_config_file_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "poolfetch.toml"
    config.write_text("qps = -3\n", encoding="utf-8")
    result = run_cli("run", "--config", str(config), input="http://127.0.0.1:9/\n")
    assert result.code == 2
    assert "--qps" in result.stderr and "5000/h" in result.stderr
