"""The benchmark scenarios. Each returns a JSON-able dict: its parameters, notes and runs.

* ``throughput``: many tiny bodies from one host, every client; the per-request overhead of each
  design (CPU, connections, TIME_WAIT) dominates, which is where designs differ most.
* ``large``: 100 KB bodies; the per-request overhead matters less, byte handling more.
* ``workers``: poolfetch and the reference client from 1 to 64 workers: does poolfetch scale
  like the bare design, and where does adding threads stop helping on this machine?
* ``qps``: does ``--qps R`` hold exactly (no startup burst, no window over ``burst + R*T``)?
* ``ratelimited``: a server allowing 50 req/s (burst 10) that answers 429 + ``Retry-After: 1``:
  how close to the ideal time does each client get, how many 429s does it cause, does it finish?
* ``rss``: peak memory against input size; streaming input should keep it flat.
* ``https-hosts``: HTTPS from one host and interleaved over 50: do connections and TLS
  handshakes follow the hosts or the workers? (``https_hosts.py``)
* ``limit-rate``: ``--limit-rate 1M`` over a 10 MiB body, and the CPU per byte of the limiter
  and of ``-C`` (see ``large_bodies.py``).
* ``post``: the same URLs fetched with GET, POSTed with ``--json``, and POSTed as request objects
  (one JSON object per line), alternated: does a body cost CPU per request beyond the GET's?
* ``server-limits`` (or one of its cases by name): connection caps, buckets without burst and
  windows with and without announced quotas, per client address (see ``server_limits.py``).

Clients run alternated (A B C A B C ...) so slow drift of the machine spreads over all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accesslog import rate_profile
from clients import (
    Client,
    all_clients,
    curl_command,
    poolfetch_command,
    reference_command,
    write_urls,
)
from harness import Harness, RunRecord
from https_hosts import https_hosts
from large_bodies import limit_rate
from nginx_server import LIMIT_BURST, LIMIT_RATE
from server_limits import CASE_NAMES, run_cases

Scenario = Callable[[Harness, "Options"], dict[str, Any]]
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
QPS_RATES = (30, 100, 300)
DEFAULT_WORKERS = 20
#: rss: in the ten-million-line input, one line in this many is a URL to fetch.
MIXED_EVERY = 100


@dataclass(frozen=True)
class Options:
    """Run-wide choices from the command line."""

    quick: bool
    repeats: int
    big: bool


def _available(clients: list[Client]) -> tuple[list[Client], list[str]]:
    notes = [f"{c.name}: skipped, {c.note}" for c in clients if not c.available]
    return [c for c in clients if c.available], notes


def _warm_up(h: Harness, clients: list[Client], url: Callable[[int], str]) -> None:
    """One unrecorded short run per client: page cache, .pyc files, server ready."""
    warm = write_urls(h.workdir / "warmup.txt", (url(i) for i in range(200)))
    for client in clients:
        h.measure("warm-up", client.name, client.command(warm, DEFAULT_WORKERS, ()), 200)


def _all_clients(
    h: Harness, opts: Options, name: str, n: int, url: Callable[[int], str]
) -> tuple[list[Client], list[str], list[RunRecord]]:
    clients, notes = _available(all_clients())
    urlfile = write_urls(h.workdir / f"{name}.txt", (url(i) for i in range(n)))
    _warm_up(h, clients, url)
    runs: list[RunRecord] = []
    for repeat in range(opts.repeats):
        for client in clients:
            command = client.command(urlfile, DEFAULT_WORKERS, ())
            runs.append(h.measure(name, client.name, command, n, repeat=repeat)[0])
    return clients, notes, runs


def throughput(h: Harness, opts: Options) -> dict[str, Any]:
    n = 2_000 if opts.quick else 20_000
    clients, notes, runs = _all_clients(h, opts, "throughput", n, h.target.small)
    one = write_urls(h.workdir / "one.txt", [h.target.small(0)])
    startup = [
        h.measure("startup", c.name, c.command(one, DEFAULT_WORKERS, ()), 1)[0] for c in clients
    ]
    return {
        "urls": n,
        "workers": DEFAULT_WORKERS,
        "notes": notes,
        "runs": [asdict(r) for r in runs],
        "startup": [asdict(r) for r in startup],
    }


def large(h: Harness, opts: Options) -> dict[str, Any]:
    n = 500 if opts.quick else 2_000
    _, notes, runs = _all_clients(h, opts, "large", n, h.target.large)
    return {
        "urls": n,
        "workers": DEFAULT_WORKERS,
        "notes": notes,
        "runs": [asdict(r) for r in runs],
    }


def workers(h: Harness, opts: Options) -> dict[str, Any]:
    n = 1_000 if opts.quick else 5_000
    urlfile = write_urls(h.workdir / "workers.txt", (h.target.small(i) for i in range(n)))
    runs: list[RunRecord] = []
    for repeat in range(opts.repeats):
        for count in WORKER_COUNTS:
            for name, command in (
                ("poolfetch", poolfetch_command),
                ("reference", reference_command),
            ):
                record, _ = h.measure(
                    "workers", name, command(urlfile, count, ()), n, label=str(count), repeat=repeat
                )
                runs.append(record)
    return {"urls": n, "worker_counts": list(WORKER_COUNTS), "runs": [asdict(r) for r in runs]}


def qps(h: Harness, opts: Options) -> dict[str, Any]:
    seconds = 3 if opts.quick else 10
    runs: list[RunRecord] = []
    for repeat in range(opts.repeats):
        for rate in QPS_RATES:
            n = rate * seconds
            urlfile = write_urls(
                h.workdir / f"qps{rate}.txt", (h.target.small(i) for i in range(n))
            )
            command = poolfetch_command(urlfile, DEFAULT_WORKERS, ["--qps", str(rate)])
            record, log = h.measure(
                "qps", "poolfetch", command, n, label=str(rate), repeat=repeat, keep_times=True
            )
            record.extra = {
                **rate_profile(log.times),
                "qps": rate,
                "bound_1s": 1 + rate,
                "bound_100ms": 1 + rate * 0.1,
                "ideal_s": (n - 1) / rate,
            }
            runs.append(record)
    return {"seconds": seconds, "burst": 1, "runs": [asdict(r) for r in runs]}


def _ratelimited_clients() -> list[tuple[str, Callable[[Path, Path], list[str]]]]:
    def pf(*extra: str) -> Callable[[Path, Path], list[str]]:
        return lambda urls, summary: poolfetch_command(
            urls, DEFAULT_WORKERS, [*extra, "--summary-json", str(summary)]
        )

    chosen = [
        ("poolfetch (adaptive)", pf()),
        ("poolfetch --qps 50", pf("--qps", str(LIMIT_RATE))),
        ("poolfetch --no-adaptive", pf("--no-adaptive")),
    ]
    if any(c.name == "curl" and c.available for c in all_clients()):

        def curl(urls: Path, _summary: Path) -> list[str]:
            outdir = urls.with_suffix(".bodies")
            outdir.mkdir(exist_ok=True)
            return curl_command(urls, DEFAULT_WORKERS, ["--retry", "5"], outdir)

        chosen.append(("curl --retry 5", curl))
    return chosen


def ratelimited(h: Harness, opts: Options) -> dict[str, Any]:
    n = 200 if opts.quick else 1_000
    urlfile = write_urls(h.workdir / "limited.txt", (h.target.limited(i) for i in range(n)))
    runs: list[RunRecord] = []
    for repeat in range(opts.repeats):
        for name, build in _ratelimited_clients():
            summary = h.workdir / f"summary-{repeat}-{len(runs)}.json"
            record, log = h.measure(
                "ratelimited", name, build(urlfile, summary), n, repeat=repeat, keep_times=True
            )
            record.extra = {**rate_profile(log.times), "status_429": log.by_status.get(429, 0)}
            if summary.exists():
                reported = json.loads(summary.read_text(encoding="utf-8"))
                keys = ("ok", "failed", "status_429", "retries", "elapsed_s")
                record.extra["poolfetch_summary"] = {k: reported.get(k) for k in keys}
            runs.append(record)
    return {
        "urls": n,
        "limit_rate": LIMIT_RATE,
        "limit_burst": LIMIT_BURST,
        "ideal_s": n / LIMIT_RATE,
        "runs": [asdict(r) for r in runs],
    }


def rss(h: Harness, opts: Options) -> dict[str, Any]:
    sizes = [1_000, 10_000] if opts.quick else [10_000, 100_000, 1_000_000]
    if opts.big:
        sizes.append(10_000_000)
    runs: list[RunRecord] = []
    for n in sizes:
        urlfile = write_urls(h.workdir / f"rss{n}.txt", (h.target.small(i) for i in range(n)))
        command = poolfetch_command(urlfile, DEFAULT_WORKERS, ())
        record, _ = h.measure("rss", "poolfetch", command, n, label=str(n), timeout=7200)
        record.extra = {"input_lines": n}
        runs.append(record)
        urlfile.unlink()
    # Ten million lines within a session's time: every line is parsed, admitted, recorded and
    # counted as in any run, but only one in MIXED_EVERY is fetched (the others are bad lines),
    # since 10^7 fetches take hours at this machine's rate.
    lines = 100_000 if opts.quick else 10_000_000
    fetched = lines // MIXED_EVERY
    urlfile = write_urls(
        h.workdir / "mixed.txt",
        (h.target.small(i) if i % MIXED_EVERY == 0 else f"bad-line-{i}" for i in range(lines)),
    )
    command = poolfetch_command(urlfile, DEFAULT_WORKERS, ())
    record, _ = h.measure("rss", "poolfetch", command, fetched, label=f"{lines} mixed")
    record.extra = {"input_lines": lines}
    runs.append(record)
    urlfile.unlink()
    return {"sizes": sizes, "workers": DEFAULT_WORKERS, "runs": [asdict(r) for r in runs]}


#: post: the JSON body every request sends (a typical small API payload, 256 bytes or so).
POST_BODY = {"query": "catalogue refresh", "page": 1, "fields": ["id", "name", "price"],
             "filter": {"updated_after": "2026-11-30T00:00:00Z", "tags": ["a", "b", "c"]},
             "pad": "x" * 100}  # fmt: skip


def post(h: Harness, opts: Options) -> dict[str, Any]:
    n = 2_000 if opts.quick else 10_000
    body = json.dumps(POST_BODY)
    payload = h.workdir / "payload.json"
    payload.write_text(body + "\n", encoding="utf-8")
    urlfile = write_urls(h.workdir / "post.txt", (h.target.small(i) for i in range(n)))
    objects = write_urls(
        h.workdir / "post.jsonl",
        (json.dumps({"url": h.target.small(i), "json": POST_BODY, "id": i}) for i in range(n)),
    )
    variants = [
        ("GET", urlfile, ()),
        ("POST --json", urlfile, ("--json", f"@{payload}")),
        ("POST request objects", objects, ()),
    ]
    for _, source, extra in variants:  # warm-up: page cache, .pyc files
        h.measure("warm-up", "poolfetch", poolfetch_command(source, DEFAULT_WORKERS, extra), n)
    runs: list[RunRecord] = []
    for repeat in range(opts.repeats):
        for name, source, extra in variants:
            command = poolfetch_command(source, DEFAULT_WORKERS, extra)
            runs.append(h.measure("post", name, command, n, repeat=repeat)[0])
    return {
        "urls": n,
        "workers": DEFAULT_WORKERS,
        "body_bytes": len(body.encode()),
        "runs": [asdict(r) for r in runs],
    }


SCENARIOS: dict[str, Scenario] = {
    "throughput": throughput,
    "large": large,
    "workers": workers,
    "qps": qps,
    "ratelimited": ratelimited,
    "rss": rss,
    "https-hosts": https_hosts,
    "limit-rate": limit_rate,
    "post": post,
}


def _server_limits(names: tuple[str, ...]) -> Scenario:
    return lambda h, opts: run_cases(h, list(names), opts.repeats)


SCENARIOS["server-limits"] = _server_limits(CASE_NAMES)
SCENARIOS.update({name: _server_limits((name,)) for name in CASE_NAMES})
