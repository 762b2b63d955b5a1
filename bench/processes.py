"""``--processes`` side by side: one process, two, and aiohttp on one nginx, alternated.

``python bench/processes.py [--urls 6000] [--repeats 5] [--base OTHER_POOLFETCH]``

A quick, focused companion of the ``throughput`` scenario for the question of issue 14: what
does a second process buy here, at what CPU per request, and where does the CPU go? Each run
fetches ``--urls`` tiny bodies with 20 workers; the clients run alternated (A B C A B C ...), so
a busy neighbour on a shared machine spreads over all of them, and the table gives the median
of each. Besides wall time and CPU per request (the client and all its children, from
``wait4``), it splits poolfetch's CPU into the **main process** (polled from ``/proc`` every
20 ms until it exits) and its **worker processes** (the rest): the measured per-process
ceilings behind the estimate for larger machines it prints last.

``--base PATH`` adds the same two runs of another poolfetch executable (another worktree's
``.venv/bin/poolfetch``), for a before/after comparison in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clients import aiohttp_command, compile_build, poolfetch_command, write_urls
from cpu_capacity import measure
from measure import process_cpu_s
from nginx_server import start_nginx

_POLL_S = 0.02
#: The ``-v`` line of a ``--processes`` run that says where its attempts ran.
_RAN = re.compile(r"attempts run: (\d+) by the main process, (\d+) by its worker")
WORKERS = 20
ESTIMATE_CORES = (2, 4, 8, 32)


@dataclass
class Runs:
    """The runs of one client."""

    name: str
    command: Callable[[Path], list[str]]
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    main_ms: list[float] = field(default_factory=list)
    #: Share of the attempts the main process ran itself (from its ``-v`` log; multi-process
    #: rows of this build only).
    here: list[float] = field(default_factory=list)
    failures: int = 0

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def _run(
    command: list[str], timeout: float, log: Path | None = None
) -> tuple[int, float, float, float]:
    """Run ``command`` (its own process group, killed at the end; standard error into ``log``);
    return its exit status, wall seconds, CPU seconds with its children (``wait4``) and of its
    main process alone (the last ``/proc`` sample before it exited)."""
    started = time.monotonic()
    with log.open("wb") if log is not None else open(os.devnull, "wb") as errors:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    main_cpu = 0.0
    try:
        while time.monotonic() - started < timeout:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                wall = time.monotonic() - started
                process.returncode = os.waitstatus_to_exitcode(status)
                return process.returncode, wall, usage.ru_utime + usage.ru_stime, main_cpu
            main_cpu = max(main_cpu, process_cpu_s([process.pid]))
            time.sleep(_POLL_S)
        return -1, timeout, 0.0, 0.0
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with contextlib.suppress(ChildProcessError):
                os.wait4(process.pid, 0)


def _one_run(runs: Runs, urls: Path, count: int) -> None:
    log = urls.with_suffix(".log")
    status, wall, cpu, main = _run(runs.command(urls), timeout=600.0, log=log)
    if status != 0:
        runs.failures += 1
        return
    runs.rates.append(count / wall)
    runs.cpu_ms.append(cpu / count * 1000)
    runs.main_ms.append(main / count * 1000)
    found = _RAN.search(log.read_text(errors="replace"))
    if found:
        here, children = int(found[1]), int(found[2])
        runs.here.append(here / max(1, here + children))


def _clients(base: str | None, processes: list[str]) -> list[Runs]:
    def poolfetch(
        extra: tuple[str, ...], executable: str | None = None
    ) -> Callable[[Path], list[str]]:
        def command(urls: Path) -> list[str]:
            argv = poolfetch_command(urls, WORKERS, extra)
            if extra and not executable:  # the main process's share of the attempts, logged
                argv.append("-v")
            return [executable, *argv[argv.index("run") :]] if executable else argv

        return command

    clients = []
    for count in processes:
        extra = () if count == "1" else ("--processes", count)
        name = "poolfetch" if count == "1" else f"poolfetch-p{count}"
        clients.append(Runs(name, poolfetch(extra)))
        if base:
            clients.append(Runs(f"base {name}", poolfetch(extra, base)))
    clients.append(Runs("aiohttp", lambda urls: aiohttp_command(urls, WORKERS, ())))
    return clients


def _workers_ms(runs: Runs) -> float:
    """CPU per request of the worker processes: all of it minus the main process's."""
    return statistics.median(t - m for t, m in zip(runs.cpu_ms, runs.main_ms, strict=True))


def _ceilings(c: Runs) -> list[str]:
    """What the measured costs per attempt say for more cores (an estimate, not a measurement).

    The main process's CPU per attempt holds its decisions (``decide``) and the attempts its own
    worker ran (share ``here``, logged): a worker process's attempt costs ``attempt`` =
    workers / (1 - here), and decide = main - here x attempt. On more cores the main process's
    one worker runs an ever smaller share, so a run reaches about
    min(1000 / decide, 1000 x cores / (decide + attempt)) req/s (the server elsewhere).
    """
    main, workers = c.median(c.main_ms), _workers_ms(c)
    here = c.median(c.here) if c.here else 0.0
    attempt = workers / (1.0 - here)
    decide = max(1e-6, main - here * attempt)
    return [
        f"Costs of {c.name}: the main process {main:.3f} ms CPU per attempt, its own worker "
        f"running {here:.0%} of them; a worker process's attempt {attempt:.3f} ms, so the main "
        f"process's decisions {decide:.3f} ms per attempt (alone they top out at "
        f"{1000 / decide:,.0f} req/s).",
        "Estimate, the server elsewhere: min(1000 / decide, 1000 x cores / (decide + attempt)):",
        ", ".join(
            f"{cores} cores {min(1000 / decide, 1000 * cores / (decide + attempt)):,.0f} req/s"
            for cores in ESTIMATE_CORES
        ),
    ]


def report(clients: list[Runs], count: int, loads: list[float]) -> str:
    """The Markdown table, the ratios and the estimate for more cores."""
    by_name = {c.name: c for c in clients}
    one = by_name["poolfetch"].median(by_name["poolfetch"].rates)
    aio = by_name["aiohttp"].median(by_name["aiohttp"].rates) if "aiohttp" in by_name else 0.0
    lines = [
        f"{count} tiny GETs, {WORKERS} workers, {len(clients[0].rates)} alternated runs each "
        f"(median); load average during the runs {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} CPUs",
        "",
        "| client | req/s | CPU ms/req | main process ms/req | worker processes ms/req "
        "| ÷ one process | ÷ aiohttp |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in clients:
        rate, cpu, main = c.median(c.rates), c.median(c.cpu_ms), c.median(c.main_ms)
        split = c.name.startswith(("poolfetch-p", "base poolfetch-p"))
        children = _workers_ms(c) if split else 0.0
        lines.append(
            f"| {c.name} | {rate:,.0f} | {cpu:.3f} | {main:.3f} | "
            f"{f'{children:.3f}' if split else '-'} | {rate / one:.2f} | "
            f"{rate / aio if aio else float('nan'):.2f} |"
            + (f" ({c.failures} failed)" if c.failures else "")
        )
    multi = [c for c in clients if c.name.startswith("poolfetch-p")]
    if multi:
        lines += ["", *_ceilings(multi[0])]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--base", help="another poolfetch executable to compare with")
    args = parser.parse_args(argv)
    processes = args.processes.split(",")
    if "1" not in processes:
        processes.insert(0, "1")
    clients = _clients(args.base, processes)
    compile_build()
    if args.base:
        compile_build(args.base)
    before = measure()  # the ceiling of any split of CPU-bound work on this machine
    tmp = Path(tempfile.mkdtemp(prefix="poolfetch-processes-"))
    server = start_nginx(tmp)
    loads: list[float] = []
    try:
        small = f"{server.base_url}/small"
        urls = write_urls(tmp / "urls.txt", (f"{small}?i={i}" for i in range(args.urls)))
        warm = write_urls(tmp / "warm.txt", (f"{small}?w={i}" for i in range(200)))
        for c in clients:
            _one_run(Runs(c.name, c.command), warm, 200)
        for repeat in range(args.repeats):
            for c in clients:
                _one_run(c, urls, args.urls)
                loads.append(os.getloadavg()[0])
                last = f"{c.rates[-1]:7.0f} req/s {c.cpu_ms[-1]:.3f} ms" if c.rates else "failed"
                print(f"#{repeat} {c.name:<22} {last} load {loads[-1]:.1f}", file=sys.stderr)
        print(report(clients, args.urls, loads))
    finally:
        server.stop()
    after = measure()
    print(f"\nThis machine, before the runs: {before.describe()}; after: {after.describe()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
