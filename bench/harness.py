"""One measured client run = the child's own usage + what the server logged + sockets left.

``Harness.measure`` is the only place a client runs: it notes the access log offset, the
TIME_WAIT sockets and the server's CPU time before, runs the child (``measure.run_child``), and
takes the same readings after. Runs are sequential: on a two-core machine anything running
beside a benchmark would be measured too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accesslog import LogSummary, log_offset, summarize
from measure import TIME_WAIT_S, process_cpu_s, run_child, system_busy_s, time_wait_sockets
from target import Target

#: Let the server finish writing the last log lines after the client has exited.
_LOG_SETTLE_S = 0.2
_STDERR_TAIL = 600
#: A run starts once the rest of the machine uses less than this many cores...
QUIET_CORES = 0.25
#: ...or after this long (bounded; the run's ``other_cpu_s`` then shows the disturbance), and
#: never more than QUIET_BUDGET_S in all (a machine busy for an hour is not worth waiting for).
QUIET_MAX_WAIT_S = 10.0
QUIET_BUDGET_S = 180.0
_QUIET_SAMPLE_S = 0.5
#: Timer rounding; runs are at least _LOG_SETTLE_S apart, so earlier runs' sockets stay out.
_TIME_WAIT_SLACK_S = 0.1


@dataclass
class RunRecord:
    """Everything measured about one client run (serialised as is into the JSON results)."""

    scenario: str
    client: str
    label: str
    repeat: int
    urls: int
    command: list[str]
    returncode: int
    timed_out: bool
    wall_s: float
    req_per_s: float
    cpu_s: float
    cpu_s_per_1k: float
    maxrss_mb: float
    maxrss_exact: bool
    connections: int
    time_wait: int
    requests: int
    by_status: dict[str, int]
    ok_urls: int
    server_cpu_s: float
    other_cpu_s: float
    quiet_wait_s: float
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Harness:
    """Runs clients against one target, one at a time, in a scratch folder."""

    def __init__(self, target: Target, workdir: Path, verbose: bool = True) -> None:
        self.target = target
        self.workdir = workdir
        self.verbose = verbose
        self._count = 0
        self._quiet_budget = QUIET_BUDGET_S
        time.sleep(_LOG_SETTLE_S)  # keep the server's readiness probe out of the first run

    def measure(
        self,
        scenario: str,
        client: str,
        command: list[str],
        urls: int,
        *,
        label: str = "",
        repeat: int = 0,
        timeout: float = 900.0,
        keep_times: bool = False,
    ) -> tuple[RunRecord, LogSummary]:
        """Run one client to completion and measure it."""
        self._count += 1
        waited = self.wait_for_quiet()
        out = self.workdir / f"run{self._count}.out"
        err = self.workdir / f"run{self._count}.err"
        offset = log_offset(self.target.access_log)
        server_before = process_cpu_s(self.target.server_pids())
        busy_before = system_busy_s()
        usage = run_child(command, timeout=timeout, stdout=out, stderr=err)
        time.sleep(_LOG_SETTLE_S)
        busy = system_busy_s() - busy_before
        server_cpu = process_cpu_s(self.target.server_pids()) - server_before
        age = time.monotonic() - usage.started
        left = time_wait_sockets(self.target.ports, TIME_WAIT_S - age - _TIME_WAIT_SLACK_S)
        log = summarize(self.target.access_log, offset, keep_times=keep_times)
        tail = ""
        if usage.returncode != 0 or usage.timed_out:
            tail = err.read_bytes()[-_STDERR_TAIL:].decode("utf-8", "replace")
        record = RunRecord(
            scenario=scenario,
            client=client,
            label=label,
            repeat=repeat,
            urls=urls,
            command=command,
            returncode=usage.returncode,
            timed_out=usage.timed_out,
            wall_s=usage.wall_s,
            req_per_s=urls / usage.wall_s if usage.wall_s > 0 else 0.0,
            cpu_s=usage.cpu_s,
            cpu_s_per_1k=usage.cpu_s / urls * 1000 if urls else 0.0,
            maxrss_mb=usage.maxrss_kb / 1024,
            maxrss_exact=usage.maxrss_exact,
            connections=log.connections,
            time_wait=left,
            requests=log.requests,
            by_status={str(k): v for k, v in sorted(log.by_status.items())},
            ok_urls=log.ok_urls,
            server_cpu_s=server_cpu,
            other_cpu_s=max(0.0, busy - usage.cpu_s - server_cpu),
            quiet_wait_s=waited,
            stderr_tail=tail,
        )
        out.unlink(missing_ok=True)
        err.unlink(missing_ok=True)
        if self.verbose:
            self.say(
                f"  {scenario:<11} {client:<10} {label:<12} #{repeat} {record.wall_s:7.2f} s "
                f"{record.req_per_s:8.0f} req/s cpu {record.cpu_s_per_1k:5.2f} s/1k "
                f"rss {record.maxrss_mb:6.1f} MB conns {record.connections:5d} "
                f"tw {record.time_wait:5d} ok {record.ok_urls}/{urls} rc {record.returncode} "
                f"other cpu {record.other_cpu_s:.1f} s"
            )
        return record, log

    def wait_for_quiet(self) -> float:
        """Wait (bounded) until the machine is idle apart from the server; returns the wait.

        The machine may be shared (CI, other jobs): a run measured while something else burns
        a core measures that too. Whatever still overlaps is recorded as ``other_cpu_s``.
        """
        started = time.monotonic()
        limit = min(QUIET_MAX_WAIT_S, self._quiet_budget)
        while time.monotonic() - started < limit:
            busy, server = system_busy_s(), process_cpu_s(self.target.server_pids())
            time.sleep(_QUIET_SAMPLE_S)
            other = system_busy_s() - busy - (process_cpu_s(self.target.server_pids()) - server)
            other /= _QUIET_SAMPLE_S
            if other < QUIET_CORES:
                break
            if self.verbose and time.monotonic() - started < 2 * _QUIET_SAMPLE_S:
                self.say(f"  (machine busy: {other:.1f} cores used elsewhere; waiting)")
        waited = max(0.0, time.monotonic() - started - _QUIET_SAMPLE_S)
        self._quiet_budget = max(0.0, self._quiet_budget - waited)
        return round(waited, 1)

    @staticmethod
    def say(text: str) -> None:
        """Progress goes to stderr, so stdout carries only the Markdown tables."""
        import sys

        print(text, file=sys.stderr, flush=True)
