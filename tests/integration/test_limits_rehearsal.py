"""poolfetch with its defaults against each per-client limit of the practice server (issue 12).

Every test runs the real CLI (``--workers 16``, no ``--qps``, no hints) against one limiter mode
and asserts what a user needs: every URL ok, few requests refused (from the server's own counts),
and a run time near the ideal, the ideal being what a client that knew the limit would take.
The bounds are loose on purpose (a loaded machine, a short run); ``bench/run.py --scenario
server-limits`` holds the figures.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import Decision, ServerLimits

WORKERS = "16"
#: Process start-up and teardown of one CLI run, on top of the ideal.
STARTUP_S = 1.5


@dataclass
class Rehearsal:
    """One run against one limit: the records, what the server counted, the wall time."""

    ok: int
    urls: int
    accepted: int
    refused: int
    elapsed: float
    summary: dict[str, object]
    decisions: list[Decision]

    @property
    def refused_share(self) -> float:
        total = self.accepted + self.refused
        return self.refused / total if total else 0.0


def _rehearse(tmp_path: Path, limits: ServerLimits, urls: int) -> Rehearsal:
    with PracticeServer(ServerOptions(limits=limits)) as server:
        listing = write_urls(
            tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(urls)]
        )
        summary = tmp_path / "summary.json"
        started = time.monotonic()
        result = run_cli(
            "run", str(listing), "--workers", WORKERS, "--summary-json", str(summary), timeout=90
        )
        elapsed = time.monotonic() - started
        stats = server.stats()
        decisions = server.limits.decisions()
    assert "Traceback" not in result.stderr
    return Rehearsal(
        ok=sum(1 for r in result.records if r["ok"]),
        urls=urls,
        accepted=stats["limit_accepted"],
        refused=stats["limit_refused"],
        elapsed=elapsed,
        summary=json.loads(summary.read_text()) if summary.exists() else {},
        decisions=decisions,
    )


#: With announced quotas read, the first request to a host goes alone, and this test passes or
#: fails by a few hundred milliseconds on a loaded machine until the adaptive concurrency lands.
_ENGINE_CONCURRENCY_TIMING = pytest.mark.xfail(
    strict=False, reason="issue 12, engine side: adaptive concurrency per host (i12-conc)"
)


# --- connection caps (like nginx limit_conn 4 before a 100 ms backend) ----------------------

CONN_URLS = 80
CONN_IDEAL_S = math.ceil(CONN_URLS / 4) * 0.1


def test_a_connection_cap_answering_503_loses_no_url_and_is_learned(tmp_path: Path) -> None:
    run = _rehearse(tmp_path, ServerLimits(conn_limit=4, delay_ms=100), CONN_URLS)
    assert run.ok == CONN_URLS
    assert run.refused_share <= 0.15, run
    assert run.elapsed <= 2 * CONN_IDEAL_S + STARTUP_S, run


def test_a_connection_cap_answering_429_is_learned_as_concurrency(tmp_path: Path) -> None:
    limits = ServerLimits(conn_limit=4, conn_status=429, delay_ms=100)
    run = _rehearse(tmp_path, limits, CONN_URLS)
    assert run.ok == CONN_URLS
    assert run.refused_share <= 0.15, run
    assert run.elapsed <= 2 * CONN_IDEAL_S + STARTUP_S, run


# --- a token bucket without burst (like nginx limit_req without burst) ----------------------

BUCKET_RATE = 20
BUCKET_URLS = 60
BUCKET_IDEAL_S = (BUCKET_URLS - 1) / BUCKET_RATE
#: A client that does not know the rate pays two Retry-After pauses (1 s each): one to learn
#: there is a limit (the second of two requests at once is refused), one to find its rate
#: (a pace just above it is refused).
BUCKET_PAUSES_S = 2 * 1.0


def test_a_bucket_without_burst_settles_just_under_its_rate(tmp_path: Path) -> None:
    run = _rehearse(tmp_path, ServerLimits(bucket_rate=BUCKET_RATE), BUCKET_URLS)
    assert run.ok == BUCKET_URLS
    assert run.refused_share <= 0.15, run
    assert run.elapsed <= 1.5 * BUCKET_IDEAL_S + BUCKET_PAUSES_S + STARTUP_S, run
    # held between the spacing it took and the one it refused, not at the one it took (the
    # ramp's last step gave up to a third of the rate away for the rest of the run)
    hosts = run.summary["hosts"]
    assert isinstance(hosts, list), run
    assert 0.85 * BUCKET_RATE <= hosts[0]["rate"] < BUCKET_RATE, run


# --- windows announcing their quota -----------------------------------------------------------

WINDOW_LIMIT = 20  # more than the workers: the first answers tell the whole story
WINDOW_S = 2.0
WINDOW_URLS = 3 * WINDOW_LIMIT
WINDOW_IDEAL_S = 2 * WINDOW_S
#: Resets announced in whole seconds are rounded up: up to a second lost per window.
ROUNDING_S = 2 * 1.0
#: A client that paces what remains until the reset (the contract) spreads the last window too.
PACED_S = WINDOW_URLS / WINDOW_LIMIT * WINDOW_S


@pytest.mark.parametrize(
    ("window", "dialect"),
    [
        ("fixed", "x-ratelimit"),
        ("fixed", "x-ratelimit-unix"),
        ("fixed", "ratelimit"),
        ("fixed", "ietf"),
        ("fixed", "reset-after"),
        ("moving", "x-ratelimit"),
    ],
)
def test_an_announced_quota_is_kept_without_a_429(
    tmp_path: Path, window: str, dialect: str
) -> None:
    limits = ServerLimits(
        window=window, window_limit=WINDOW_LIMIT, window_s=WINDOW_S, headers=dialect
    )
    run = _rehearse(tmp_path, limits, WINDOW_URLS)
    assert run.ok == WINDOW_URLS
    assert run.refused <= 1, run
    assert run.elapsed <= PACED_S + 1.5 * ROUNDING_S + STARTUP_S + 1.0, run


@pytest.mark.parametrize("window", ["fixed", "moving"])
def test_a_window_answering_a_bare_429_loses_no_url(tmp_path: Path, window: str) -> None:
    limits = ServerLimits(window=window, window_limit=WINDOW_LIMIT, window_s=WINDOW_S)
    run = _rehearse(tmp_path, limits, WINDOW_URLS)
    assert run.ok == WINDOW_URLS
    assert run.elapsed <= 3 * WINDOW_IDEAL_S + STARTUP_S, run


def test_a_fixed_window_answering_a_bare_429_is_learned_after_its_first_refusals(
    tmp_path: Path,
) -> None:
    # five one-second windows of 20: once a whole window has passed since the first refusal,
    # a client holding just under the rate it saw accepted is hardly ever refused again. (A
    # moving window is not asserted here: poolfetch before issue 12 sometimes met this bound on
    # one by chance, and a strict xfail must fail reliably.)
    run = _rehearse(tmp_path, ServerLimits(window="fixed", window_limit=20, window_s=1.0), 100)
    assert run.ok == 100
    first = next(d.time for d in run.decisions if not d.accepted)
    later = [d for d in run.decisions if not d.accepted and d.time > first + 1.0]
    assert len(later) <= 8, (len(later), run.refused, run.elapsed)


def test_a_bare_window_is_learned_as_a_count_and_sent_at_each_opening(tmp_path: Path) -> None:
    """The first window's successes are its quota; once a probe finds the next opening, each
    window gets its quota at once (held to a rate, it would be spread over the window) and
    the predicted openings are not refused."""
    limits = ServerLimits(window="fixed", window_limit=WINDOW_LIMIT, window_s=WINDOW_S)
    run = _rehearse(tmp_path, limits, WINDOW_URLS)
    assert run.ok == WINDOW_URLS
    windows: list[list[float]] = []
    for decision in run.decisions:
        if decision.accepted:
            if not windows or decision.time >= windows[-1][0] + WINDOW_S:
                windows.append([])
            windows[-1].append(decision.time)
    assert [len(w) for w in windows] == [WINDOW_LIMIT] * 3, run
    assert windows[2][-1] - windows[2][0] <= 0.3 * WINDOW_S, run
    later = [d for d in run.decisions if not d.accepted and d.time > windows[1][0]]
    assert len(later) <= 1, (later, run.refused, run.elapsed)


def test_a_closed_bare_window_is_probed_at_the_likely_window_lengths(tmp_path: Path) -> None:
    """A window of 5 s is probed 1 and 2 s after its first answer (both refused) and opens to
    the probe at 5 s: two refused probes, where a probe a second was four."""
    limits = ServerLimits(window="fixed", window_limit=WINDOW_LIMIT, window_s=5.0)
    run = _rehearse(tmp_path, limits, 2 * WINDOW_LIMIT)
    assert run.ok == 2 * WINDOW_LIMIT
    refusals = [d.time for d in run.decisions if not d.accepted]
    probes = [t for t in refusals if t > refusals[0] + 0.5]  # past the burst in flight
    assert len(probes) <= 2, (refusals, run.elapsed)
    assert run.elapsed <= 5.0 + STARTUP_S + 1.0, run
