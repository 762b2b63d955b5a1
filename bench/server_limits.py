"""The ``server-limits`` scenarios: the kinds of limit real servers put on one client address.

Against nginx itself: ``limit_conn 4`` per client address in front of a 100 ms backend (nginx
``proxy_pass`` to the practice server's ``/delay/100``; ``limit_conn`` counts requests being
served), answering its default ``503`` without ``Retry-After``, or ``429`` + ``Retry-After: 1``;
and ``limit_req`` **without** ``burst`` (429 + ``Retry-After: 1``); the two ``429`` cases also
with three times the URLs (``-long``, about 30 s ideal), where what learning a limit costs once
(slow start, the one pause the server demands to show it has a limit) is amortized as in a real
job: on a 10 s run that alone is over a tenth of the ideal. Against the practice server's
per-client windows (``core/practice_limits.py``, in ``limits_host.py``): a fixed window announcing
``X-RateLimit-*`` (reset in seconds, or as a Unix time), a moving window announcing
``X-RateLimit-*`` (reset as a Unix time), a fixed window answering a bare ``429``, and a fixed
window announcing the IETF draft's ``RateLimit`` / ``RateLimit-Policy`` fields. No
``Retry-After`` from the windows: the headers (or nothing) are all a client has.

Each case runs poolfetch with its defaults (``--workers 16``, no ``--qps``) and ``curl --parallel
--retry 5``, and for the nginx cases curl told the limit (``--parallel-max 4``; ``--rate 19/s``,
5 % under the bucket's rate for the send jitter of a loaded machine): the floor any client has
on this machine and backend (the long cases leave the uninformed curl out: it loses URLs there
as in the short ones, and the run stays short). ``POOLFETCH_BASELINE=/path/to/bin/poolfetch``
adds that build, for before/after in one run. Each prints the ideal time (what a client that
knew the limit would take), the time taken as a ratio of it, the share of requests the server
refused (429 and 503, from its log), and the URLs that got a 2xx. Every run starts with a fresh
quota (the windows are reset between runs).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import report
from clients import (
    BASELINE_ENV,
    baseline_command,
    curl_command,
    curl_config,
    poolfetch_command,
    write_urls,
)
from harness import Harness, RunRecord
from nginx_server import NGINX, NginxServer, free_port, small_body, stop_group
from nginx_sites import start_site
from target import Target

BENCH_DIR = Path(__file__).resolve().parent
WORKERS = 16
CONN_LIMIT = 4
BACKEND_MS = 100
NOBURST_RATE = 20
WINDOW_LIMIT = 100
#: The long nginx cases have this many times the URLs of the short ones.
LONG = 3
WINDOW_S = 10
CURL_RETRIES = 5
RUN_TIMEOUT_S = 180.0
_HOST_START_S = 15.0
REFUSED = (429, 503)


@dataclass(frozen=True)
class Case:
    """One server limit: where its URLs point and how long a perfect client would take."""

    name: str
    server: str  # "nginx" or "practice"
    label: str
    urls: int
    ideal_s: float
    #: curl options of a client told the limit (a reference row: the floor any client has on
    #: this machine and backend), none where curl has no such option.
    informed: tuple[str, ...] = ()
    #: Also run curl as a user would (left out of the long cases: it loses URLs either way).
    uninformed: bool = True


def _window_ideal(urls: int) -> float:
    """The last window a perfect client needs starts (ceil(urls / limit) - 1) windows in."""
    return (math.ceil(urls / WINDOW_LIMIT) - 1) * WINDOW_S


CASES = (
    Case(
        "limit-conn",
        "nginx",
        f"nginx `limit_conn {CONN_LIMIT}` per address, default 503 (no Retry-After), "
        f"{BACKEND_MS} ms backend",
        400,
        math.ceil(400 / CONN_LIMIT) * BACKEND_MS / 1000,
        ("--parallel", "--parallel-max", str(CONN_LIMIT)),
    ),
    Case(
        "limit-conn-429",
        "nginx",
        f"nginx `limit_conn {CONN_LIMIT}`, 429 + Retry-After: 1, {BACKEND_MS} ms backend",
        400,
        math.ceil(400 / CONN_LIMIT) * BACKEND_MS / 1000,
        ("--parallel", "--parallel-max", str(CONN_LIMIT)),
    ),
    Case(
        "limit-req-noburst",
        "nginx",
        f"nginx `limit_req rate={NOBURST_RATE}r/s` without burst, 429 + Retry-After: 1",
        200,
        (200 - 1) / NOBURST_RATE,
        ("--rate", f"{NOBURST_RATE - 1}/s"),  # 5 % under: the send jitter of a loaded machine
    ),
    # the same two at three times the URLs (~30 s ideal): the one-time costs of learning a
    # limit (slow start, the one pause the server demands) amortized as in a real job
    Case(
        "limit-conn-429-long",
        "nginx",
        f"nginx `limit_conn {CONN_LIMIT}`, 429 + Retry-After: 1, {BACKEND_MS} ms backend, "
        f"{LONG} × the URLs",
        LONG * 400,
        math.ceil(LONG * 400 / CONN_LIMIT) * BACKEND_MS / 1000,
        ("--parallel", "--parallel-max", str(CONN_LIMIT)),
        uninformed=False,
    ),
    Case(
        "limit-req-noburst-long",
        "nginx",
        f"nginx `limit_req rate={NOBURST_RATE}r/s` without burst, 429 + Retry-After: 1, "
        f"{LONG} × the URLs",
        LONG * 200,
        (LONG * 200 - 1) / NOBURST_RATE,
        ("--rate", f"{NOBURST_RATE - 1}/s"),
        uninformed=False,
    ),
    Case(
        "window-fixed-headers",
        "practice",
        f"fixed window {WINDOW_LIMIT}/{WINDOW_S} s, X-RateLimit-* (reset in seconds)",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
    ),
    Case(
        "window-fixed-headers-unix",
        "practice",
        f"fixed window {WINDOW_LIMIT}/{WINDOW_S} s, X-RateLimit-* (reset as Unix time)",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
        uninformed=False,
    ),
    Case(
        "window-moving-headers",
        "practice",
        f"moving window {WINDOW_LIMIT}/{WINDOW_S} s, X-RateLimit-* (reset as Unix time)",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
    ),
    # the moving window with headers at nine windows: pacing from a full quota (the contract)
    # costs it one window against a client that sends each window's quota at once, a third
    # of a three-window job and an eighth of this one
    Case(
        "window-moving-headers-long",
        "practice",
        f"moving window {WINDOW_LIMIT}/{WINDOW_S} s, X-RateLimit-* (reset as Unix time), "
        f"{LONG} × the URLs",
        LONG * 3 * WINDOW_LIMIT,
        _window_ideal(LONG * 3 * WINDOW_LIMIT),
        uninformed=False,
    ),
    Case(
        "window-fixed-bare",
        "practice",
        f"fixed window {WINDOW_LIMIT}/{WINDOW_S} s, bare 429 (no headers, no Retry-After)",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
    ),
    Case(
        "window-moving-bare",
        "practice",
        f"moving window {WINDOW_LIMIT}/{WINDOW_S} s, bare 429 (no headers, no Retry-After)",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
    ),
    # the two bare windows at three times the URLs (nine windows): the opening burst, the
    # requests already in flight when the first refusal says there is a window, amortized
    *(
        Case(
            f"window-{kind}-bare-long",
            "practice",
            f"{kind} window {WINDOW_LIMIT}/{WINDOW_S} s, bare 429, {LONG} × the URLs",
            LONG * 3 * WINDOW_LIMIT,
            _window_ideal(LONG * 3 * WINDOW_LIMIT),
            uninformed=False,
        )
        for kind in ("fixed", "moving")
    ),
    Case(
        "window-ietf",
        "practice",
        f"fixed window {WINDOW_LIMIT}/{WINDOW_S} s, IETF `RateLimit` + `RateLimit-Policy`",
        3 * WINDOW_LIMIT,
        _window_ideal(3 * WINDOW_LIMIT),
    ),
)
CASE_NAMES = tuple(case.name for case in CASES)

#: ``ServerLimits`` fields of the practice-server cases (see ``limits_host.py``).
PRACTICE_LIMITS: dict[str, dict[str, Any]] = {
    "window-fixed-headers": {"headers": "x-ratelimit"},
    "window-fixed-headers-unix": {"headers": "x-ratelimit-unix"},
    "window-moving-headers": {"window": "moving", "headers": "x-ratelimit-unix"},
    "window-moving-headers-long": {"window": "moving", "headers": "x-ratelimit-unix"},
    "window-fixed-bare": {"headers": "none"},
    "window-moving-bare": {"window": "moving", "headers": "none"},
    "window-fixed-bare-long": {"headers": "none"},
    "window-moving-bare-long": {"window": "moving", "headers": "none"},
    "window-ietf": {"headers": "ietf"},
}


def _practice_spec() -> dict[str, dict[str, Any]]:
    base = {"window": "fixed", "window_limit": WINDOW_LIMIT, "window_s": float(WINDOW_S)}
    return {name: {**base, **fields} for name, fields in PRACTICE_LIMITS.items()}


def nginx_servers(upstream: int, port: int, tmp: Path) -> tuple[str, str]:
    """``http`` lines and the ``server`` block of the nginx cases (one port, one location each;
    ``bench`` log format, the one the harness reads)."""
    http_extra = f"""\
    log_format bench '$connection $msec $status $request_time $request_uri';
    limit_conn_zone $binary_remote_addr zone=perip:1m;
    limit_req_zone $binary_remote_addr zone=noburst:1m rate={NOBURST_RATE}r/s;
    upstream slow {{ server 127.0.0.1:{upstream}; keepalive 32; }}"""
    backend = (
        f"rewrite ^ /delay/{BACKEND_MS} break; proxy_pass http://slow; "
        'proxy_http_version 1.1; proxy_set_header Connection "";'
    )
    servers = f"""\
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {tmp}/bench.log bench;
        root {tmp}/www;
        limit_conn_log_level info;
        limit_req_log_level info;
        location /limit-conn/ {{ limit_conn perip {CONN_LIMIT}; {backend} }}
        location ~ ^/limit-conn-429(-long)?/ {{
            limit_conn perip {CONN_LIMIT};
            limit_conn_status 429;
            error_page 429 = @retry1;
            {backend}
        }}
        location ~ ^/limit-req-noburst(-long)?/ {{
            limit_req zone=noburst;
            limit_req_status 429;
            error_page 429 = @retry1;
            try_files /small.txt =404;
        }}
        location @retry1 {{ add_header Retry-After 1 always; return 429 "slow down"; }}
    }}"""
    return http_extra, servers


@contextlib.contextmanager
def _limits_host(logdir: Path) -> Iterator[tuple[dict[str, int], subprocess.Popen[str]]]:
    """Start ``limits_host.py`` in its own process group; yields its ports and the process."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "limits_host.py"), str(logdir),
         json.dumps(_practice_spec())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdin is not None
        ready, _, _ = select.select([process.stdout], [], [], _HOST_START_S)
        if not ready:
            raise RuntimeError("limits_host.py did not start")
        ports = {k: int(v) for k, v in json.loads(process.stdout.readline() or "{}").items()}
        if "upstream" not in ports:
            raise RuntimeError("limits_host.py did not report its ports")
        yield ports, process
    finally:
        stop_group(process, signal.SIGTERM)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _start_nginx(tmp: Path, upstream: int) -> NginxServer:
    tmp.mkdir(parents=True, exist_ok=True)
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    (www / "small.txt").write_bytes(small_body())
    for path in (tmp, www, www / "small.txt"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    http_extra, servers = nginx_servers(upstream, port, tmp)
    return start_site(tmp, servers, ("127.0.0.1", port), http_extra)


def _target(kind: str, log: Path, port: int, pids: Callable[[], list[int]]) -> Target:
    base = f"http://127.0.0.1:{port}"
    return Target(kind, "", "", base, base, base, {port}, log, pids)


def _clients(case: Case) -> list[tuple[str, Any]]:
    """poolfetch with its defaults (and the ``POOLFETCH_BASELINE`` build, for before/after in
    one run), curl as a user would run it, and curl told the limit (``Case.informed``)."""

    def poolfetch(urls: Path, summary: Path) -> list[str]:
        return poolfetch_command(urls, WORKERS, ["--summary-json", str(summary)])

    def curl(urls: Path, _summary: Path) -> list[str]:
        outdir = urls.with_suffix(".bodies")
        outdir.mkdir(exist_ok=True)
        return curl_command(urls, WORKERS, ["--retry", str(CURL_RETRIES)], outdir)

    def informed(urls: Path, _summary: Path) -> list[str]:
        # it retries too (a rare refusal of the client's own jitter); with --retry curl needs
        # a file to truncate per URL, not /dev/null (see ``curl_config``)
        outdir = urls.with_suffix(".bodies")
        outdir.mkdir(exist_ok=True)
        retry = ["--retry", str(CURL_RETRIES)]
        return ["curl", "-s", *case.informed, *retry, "--config", str(curl_config(urls, outdir))]

    chosen: list[tuple[str, Any]] = [("poolfetch", poolfetch)]
    baseline = os.environ.get(BASELINE_ENV)
    if baseline:
        run_baseline = baseline_command(baseline)

        def before(urls: Path, summary: Path) -> list[str]:
            return run_baseline(urls, WORKERS, ["--summary-json", str(summary)])

        chosen.append(("poolfetch (baseline)", before))
    if shutil.which("curl") is not None:
        if case.uninformed:
            chosen.append((f"curl --retry {CURL_RETRIES}", curl))
        if case.informed:
            told = f"curl {' '.join(case.informed)} --retry {CURL_RETRIES} (told the limit)"
            chosen.append((told, informed))
    return chosen


def _measure_case(h: Harness, case: Case, repeats: int, reset: Any, base: str) -> list[RunRecord]:
    # nginx routes the cases by location; each practice server limits every path
    path = f"/{case.name}/" if case.server == "nginx" else "/fixed?i="
    urlfile = write_urls(
        h.workdir / f"{case.name}.txt", (f"{base}{path}{i}" for i in range(case.urls))
    )
    runs: list[RunRecord] = []
    for repeat in range(repeats):
        for client, build in _clients(case):
            reset(case)
            summary = h.workdir / f"summary-{case.name}-{repeat}-{len(runs)}.json"
            command = build(urlfile, summary)
            record, log = h.measure(
                case.name, client, command, case.urls, repeat=repeat, timeout=RUN_TIMEOUT_S
            )
            refused = sum(log.by_status.get(code, 0) for code in REFUSED)
            record.extra = {
                "ideal_s": case.ideal_s,
                "ratio": record.wall_s / case.ideal_s,
                "refused": refused,
                "refused_share": refused / log.requests if log.requests else 0.0,
            }
            if summary.exists():
                told = json.loads(summary.read_text(encoding="utf-8"))
                keys = ("ok", "failed", "retries", "elapsed_s", "hosts")
                record.extra["poolfetch_summary"] = {k: told.get(k) for k in keys}
            runs.append(record)
    return runs


def run_cases(h: Harness, names: list[str], repeats: int) -> dict[str, Any]:
    """Run the named cases (all of ``CASES`` in that order) and return the scenario's result."""
    cases = [case for case in CASES if case.name in names]
    notes: list[str] = []
    runs: list[RunRecord] = []
    workdir = h.workdir / "server-limits"
    workdir.mkdir(exist_ok=True)
    with _limits_host(workdir) as (ports, host), contextlib.ExitStack() as stack:

        def reset(case: Case) -> None:
            if case.server == "practice":
                assert host.stdin is not None and host.stdout is not None
                host.stdin.write(f"reset {case.name}\n")
                host.stdin.flush()
                if host.stdout.readline().strip() != "ok":
                    raise RuntimeError(f"limits_host.py did not reset {case.name}")

        nginx: NginxServer | None = None
        if any(c.server == "nginx" for c in cases):
            if NGINX.exists():
                nginx = _start_nginx(workdir / "nginx", ports["upstream"])
                stack.callback(nginx.stop)
            else:
                notes.append(f"nginx cases skipped: nginx not found at {NGINX}")
        for case in cases:
            if case.server == "nginx":
                if nginx is None:
                    continue
                log, port, pids = nginx.tmp / "bench.log", nginx.port, nginx.worker_pids
            else:
                log, port = workdir / f"{case.name}.log", ports[case.name]
                pids = lambda: [host.pid]  # noqa: E731
            target = _target(case.server, log, port, pids)
            base = f"http://127.0.0.1:{port}"
            harness = Harness(target, workdir, verbose=h.verbose)
            runs += _measure_case(harness, case, repeats, reset, base)
    return {
        "cases": [asdict(c) for c in cases],
        "workers": WORKERS,
        "notes": notes,
        "runs": [asdict(r) for r in runs],
    }


def table(result: dict[str, Any]) -> str:
    """One row per case and client: ideal, time as a ratio of it, refused share, URLs ok."""
    labels = {c["name"]: c for c in result.get("cases", [])}
    rows = []
    for (name, client), group in _by_case(result.get("runs", [])):
        case = labels[name]
        refused = sum(r["extra"]["refused"] for r in group)
        sent = sum(r["requests"] for r in group)
        rows.append([
            case["label"] if client == "poolfetch" else "",
            f"{case['ideal_s']:.1f}",
            client,
            report.spread((r["wall_s"] for r in group), 1),
            _ratio(group),
            f"{refused // len(group):,} of {sent // len(group):,} "
            f"({100 * refused / sent if sent else 0:.0f} %)",
            report._ok(group),
        ])  # fmt: skip
    header = ["server limit", "ideal s", "client", "wall s", "÷ ideal",
              "requests refused (share)", "URLs ok"]  # fmt: skip
    return report.table(header, rows)


def _ratio(group: list[dict[str, Any]]) -> str:
    """The median time ÷ ideal; a run that lost URLs finished early, so it has none."""
    if any(r["ok_urls"] < r["urls"] for r in group):
        return "– (URLs lost)"
    return f"{statistics.median(r['extra']['ratio'] for r in group):.2f}×"


def _by_case(runs: list[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["scenario"], run["client"]), []).append(run)
    return list(grouped.items())
