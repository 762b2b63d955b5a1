"""Scenario ``https-hosts``: one HTTPS host against many, the same URLs count, every client
(poolfetch with one process, ``--processes 2`` and ``--processes auto``).

nginx serves TLS (a private CA made here with ``trustme``) on HOSTS loopback addresses
(127.0.0.1 … 127.0.0.50, one port); the same number of 200-byte URLs is fetched once from
127.0.0.1 alone and once interleaved over all hosts (a link check, a mirror, a catalogue). With
connections that follow workers, the many-host list costs a TLS handshake for most requests;
with connections that follow hosts it costs about what the one-host list does. Clients run
alternated (each client's one-host run, then its many-host run, then the next client).

Measured per run besides what every scenario measures (req/s, CPU, peak RSS, TIME_WAIT): the
connections and **full** TLS handshakes the server saw (nginx's ``$connection`` and
``$ssl_session_reused`` per request; a connection whose first request was not on a resumed
session cost a full handshake). Clients trust the private CA through ``REQUESTS_CA_BUNDLE``
(poolfetch, the reference client), ``SSL_CERT_FILE`` (aiohttp) and ``--cacert`` (curl).
``POOLFETCH_BASELINE=/path/to/poolfetch`` adds that build as one more client (before/after).
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import report
from clients import (
    aiohttp_command,
    curl_command,
    poolfetch_command,
    poolfetch_processes,
    reference_command,
    write_urls,
)
from harness import Harness, RunRecord
from nginx_server import small_body
from nginx_sites import free_port, make_tls, read_conn_log, start_site, tls_directives
from target import Target

HOSTS = 50
WORKERS = 20
BASELINE_ENV = "POOLFETCH_BASELINE"


def _site(tmp: Path, hosts: list[str]) -> tuple[str, Path, int]:
    """The nginx ``server`` block (TLS on every host address), the CA file and the port."""
    tls = make_tls(tmp / "tls", hosts)
    port = free_port()
    listens = " ".join(f"listen {host}:{port} ssl backlog=4096;" for host in hosts)
    body = small_body().decode().rstrip("\n") + "\\n"
    block = (
        f"server {{ {listens} server_name bench; {tls_directives(tls)} "
        f'location /small {{ return 200 "{body}"; }} }}'
    )
    return block, tls.ca, port


def _clients(ca: Path) -> list[tuple[str, list[str], Any]]:
    """(name, prefix that sets the CA, command builder) of every available client."""
    env = ["env", f"REQUESTS_CA_BUNDLE={ca}", f"SSL_CERT_FILE={ca}", "CURL_CA_BUNDLE="]
    chosen: list[tuple[str, list[str], Any]] = [
        ("poolfetch", env, poolfetch_command),
        ("poolfetch-p2", env, poolfetch_processes("2")),
        ("poolfetch-auto", env, poolfetch_processes("auto")),
        ("reference", env, reference_command),
    ]
    baseline = os.environ.get(BASELINE_ENV)
    if baseline:

        def base(urls: Path, workers: int, extra: Any) -> list[str]:
            return [baseline, "run", str(urls), "--workers", str(workers), "-q", "--results",
                    "/dev/null", *extra]  # fmt: skip

        def base_p2(urls: Path, workers: int, extra: Any) -> list[str]:
            return base(urls, workers, ("--processes", "2", *extra))

        chosen.append(("poolfetch (baseline)", env, base))
        chosen.append(("poolfetch-p2 (baseline)", env, base_p2))
    try:
        import aiohttp  # noqa: F401

        chosen.append(("aiohttp", env, aiohttp_command))
    except ImportError:
        pass
    if shutil.which("curl"):
        chosen.append(("curl", env, lambda u, w, e: curl_command(u, w, ["--cacert", str(ca)])))
    return chosen


def _handshakes(log: Path, skip: int) -> tuple[int, int]:
    """(connections, full handshakes) among the log lines after the first ``skip``."""
    first: dict[int, bool] = {}
    for line in read_conn_log(log)[skip:]:
        first.setdefault(line.connection, line.reused)
    return len(first), sum(1 for reused in first.values() if not reused)


def https_hosts(h: Harness, opts: Any) -> dict[str, Any]:
    n = 2_000 if opts.quick else 10_000
    hosts = [f"127.0.0.{i}" for i in range(1, HOSTS + 1)]
    tmp = h.workdir / "https-hosts"
    block, ca, port = _site(tmp, hosts)
    server = start_site(tmp / "nginx", block, (hosts[0], port))
    try:
        target = Target(
            kind="nginx",
            version=h.target.version,
            note="",
            small_base=f"https://{hosts[0]}:{port}/small",
            large_base="",
            limited_base="",
            ports={port},
            access_log=server.access_log,
            server_pids=server.worker_pids,
        )
        harness = Harness(target, tmp, verbose=h.verbose)
        shapes = {
            "1 host": write_urls(
                tmp / "one.txt", (f"https://{hosts[0]}:{port}/small?i={i}" for i in range(n))
            ),
            f"{HOSTS} hosts": write_urls(
                tmp / "many.txt",
                (f"https://{hosts[i % HOSTS]}:{port}/small?i={i}" for i in range(n)),
            ),
        }
        clients = _clients(ca)
        warm = write_urls(
            tmp / "warm.txt", (f"https://{hosts[i % HOSTS]}:{port}/small?w={i}" for i in range(100))
        )
        for name, env, build in clients:  # page cache, .pyc files, server ready
            harness.measure("warm-up", name, [*env, *build(warm, WORKERS, ())], 100)
        runs: list[RunRecord] = []
        for repeat in range(opts.repeats):
            for name, env, build in clients:
                for label, urlfile in shapes.items():
                    before = len(read_conn_log(server.access_log))
                    command = [*env, *build(urlfile, WORKERS, ())]
                    record, _ = harness.measure(
                        "https-hosts", name, command, n, label=label, repeat=repeat
                    )
                    connections, full = _handshakes(server.access_log, before)
                    record.extra = {"connections": connections, "full_handshakes": full}
                    runs.append(record)
    finally:
        server.stop()
    return {
        "urls": n,
        "hosts": HOSTS,
        "workers": WORKERS,
        "notes": [],
        "runs": [asdict(r) for r in runs],
    }


def render_lines(result: dict[str, Any]) -> list[str]:
    """The Markdown of the scenario's block (after the common heading)."""
    runs = result["runs"]
    lines = [
        f"{result['urls']:,} URLs of 200 B over HTTPS (TLS 1.3, private CA), {result['workers']} "
        f"workers/connections; `1 host`: all from 127.0.0.1, `{result['hosts']} hosts`: "
        f"interleaved over 127.0.0.1-{result['hosts']}. Full handshakes: connections whose TLS "
        "session was not resumed (nginx `$ssl_session_reused`).",
        "",
    ]
    rows = []
    by_client = report.groups(runs, lambda r: r["client"])
    for client, group in by_client.items():
        medians: dict[str, float] = {}
        for label, runs_of in report.groups(group, lambda r: r["label"]).items():
            medians[label] = statistics.median(r["req_per_s"] for r in runs_of)
            rows.append([
                client,
                label,
                report.spread((r["req_per_s"] for r in runs_of), 0),
                report.spread((r["cpu_s_per_1k"] for r in runs_of), 2),
                report.spread((r["extra"]["connections"] for r in runs_of), 0),
                report.spread((r["extra"]["full_handshakes"] for r in runs_of), 0),
                report.spread((r["maxrss_mb"] for r in runs_of), 1),
                report.spread((r["time_wait"] for r in runs_of), 0),
                report._ok(runs_of),
            ])  # fmt: skip
        one, many = medians.get("1 host"), medians.get(f"{result['hosts']} hosts")
        if one and many:
            rows[-1][1] += f" ({many / one:.2f}x of 1 host)"
    header = ["client", "URLs from", "req/s", "CPU s / 1k req", "connections",
              "full TLS handshakes", "peak RSS MB", "TIME_WAIT left", "URLs ok"]  # fmt: skip
    lines.append(report.table(header, rows))
    return lines
