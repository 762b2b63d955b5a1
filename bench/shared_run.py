"""A shared run's cost: ``poolfetch run --redis`` + N ``poolfetch worker`` against nginx.

    python bench/shared_run.py [--urls 3000] [--processes 2] [--threads 8] [--repeats 3]
                               [--install LABEL=PYTHON ...]

Each run gets a fresh redis-server and fresh workers (started first and waiting), then the
coordinator is timed from its start to its exit; its CPU and the workers' are summed from
``/proc`` ("of it run": the coordinator's share). ``--install`` compares poolfetch installs
side by side (another checkout's venv python), alternated A B A B so the machine's drift
spreads over all of them; the default is this one. A one-URL run is timed too: the round trips
a shared run adds to a short list.
Compare installs of one kind: an editable (``editable_mode=strict``) install starts each process
about a second later than a plain ``pip install .`` on a loaded machine, which swamps the one-URL
figure.
Everything runs on 127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clients import write_urls
from nginx_server import free_port, start_nginx

_TICKS = os.sysconf("SC_CLK_TCK")
_WAIT_S = 120


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False, timeout=5
        )
        if done.stdout.strip() == b"PONG":
            break
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def one_run(python: str, urls: Path, processes: int, threads: int, tmp: Path) -> dict[str, float]:
    """One shared run: seconds of the coordinator, CPU of everything, requests."""
    redis_proc, url = _start_redis(tmp)
    cli = [python, "-m", "poolfetch.cli"]
    workers = [
        subprocess.Popen(
            [*cli, "worker", "--redis", url, "-q", "-w", str(threads)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        time.sleep(1.0)  # the workers are up and waiting for a run
        started = time.monotonic()
        coordinator = subprocess.Popen(
            [*cli, "run", "--redis", url, str(urls), "-q", "--results", "/dev/null",
             "--workers", str(processes * threads), "--summary-json", str(tmp / "s.json")],
        )  # fmt: skip
        cpu = mine = 0.0
        while coordinator.poll() is None:  # sample the CPU while every process is alive
            mine = _cpu_s(coordinator.pid) or mine
            cpu = mine + sum(_cpu_s(w.pid) for w in workers)
            time.sleep(0.05)
        seconds = time.monotonic() - started
        summary = json.loads((tmp / "s.json").read_text())
        return {
            "seconds": seconds,
            "requests": summary["requests"],
            "cpu_s": cpu,
            "coordinator_cpu_s": mine,
        }
    finally:
        for proc in [*workers, redis_proc]:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(_WAIT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2, help="poolfetch worker processes")
    parser.add_argument("--threads", type=int, default=8, help="--workers of each worker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--install", action="append", default=[], metavar="LABEL=PYTHON",
        help="a poolfetch install to compare (default: this one)",
    )  # fmt: skip
    args = parser.parse_args()
    installs = [tuple(i.split("=", 1)) for i in args.install] or [("this", sys.executable)]
    with tempfile.TemporaryDirectory(prefix="pf-shared-") as folder:
        tmp = Path(folder)
        server = start_nginx(tmp / "nginx")
        try:
            many = write_urls(tmp / "many.txt", (f"{server.base_url}/small?i={i}"
                                                 for i in range(args.urls)))  # fmt: skip
            one = write_urls(tmp / "one.txt", [f"{server.base_url}/small?one"])
            rows: dict[str, dict[str, list[float]]] = {
                label: {"rps": [], "cpu_ms": [], "coord_ms": [], "one_s": []}
                for label, _ in installs
            }
            for _ in range(args.repeats):
                for label, python in installs:
                    run = one_run(python, many, args.processes, args.threads, tmp)
                    rows[label]["rps"].append(run["requests"] / run["seconds"])
                    rows[label]["cpu_ms"].append(1000 * run["cpu_s"] / run["requests"])
                    rows[label]["coord_ms"].append(
                        1000 * run["coordinator_cpu_s"] / run["requests"]
                    )
                    short = one_run(python, one, args.processes, args.threads, tmp)
                    rows[label]["one_s"].append(short["seconds"])
        finally:
            server.stop()
    print(f"{args.urls} URLs, {args.processes} workers x {args.threads} threads, "
          f"{args.repeats} runs each (median); load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'install':<12} {'req/s':>8} {'CPU ms/req':>11} {'of it run':>10} {'1-URL run s':>12}")
    for label, row in rows.items():
        print(f"{label:<12} {statistics.median(row['rps']):>8.0f}"
              f" {statistics.median(row['cpu_ms']):>11.2f}"
              f" {statistics.median(row['coord_ms']):>10.2f}"
              f" {statistics.median(row['one_s']):>12.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
