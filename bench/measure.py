"""Measure one client process: wall time, CPU time and peak RSS of the child, plus sockets.

The child is reaped with ``os.wait4``, whose rusage is that child's own (all its threads and any
children it waited for): user+system CPU seconds. Its ``ru_maxrss`` is not usable as is: Linux
carries the *parent's* peak RSS into a child across fork/vfork + exec, so every client would
report at least the harness's own size. When GNU time (``/usr/bin/time``) is there, the client
is started through it: GNU time is a small process, forks the client and reports the client's
own peak RSS (``%M``); CPU still comes from ``wait4`` (microseconds; GNU time's own share is a
millisecond). Without GNU time the RSS is ``ru_maxrss`` and marked as an upper bound.

Each child runs in its own session (process group); a timer kills the group at the deadline, and
Ctrl-C or any exception kills it too, so no client outlives the harness.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TCP_TIME_WAIT = "06"
TIME_WAIT_S = 60.0  # TCP_TIMEWAIT_LEN, fixed in Linux
_USER_HZ = 100  # /proc/net/tcp timers are in clock_t
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: GNU time forks the client from its own small process and reports the client's peak RSS.
GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class ChildUsage:
    """What one finished child cost; ``started`` is its ``time.monotonic()`` start."""

    returncode: int
    started: float
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    maxrss_exact: bool
    timed_out: bool

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _gnu_time_rss(path: Path) -> int | None:
    """The ``%M`` line GNU time wrote (its last line; a failing child adds one before it)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text(encoding="utf-8").split()[-1])
    return None


def run_child(
    command: list[str],
    *,
    timeout: float,
    stdout: Path,
    stderr: Path,
) -> ChildUsage:
    """Run ``command`` to completion (or kill it at ``timeout``) and return its usage."""
    rss_file = stdout.with_suffix(".rss")
    if GNU_TIME.exists():
        command = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), "--", *command]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        _kill_group(process.pid)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    reaped = False
    try:
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        reaped = True
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        _kill_group(process.pid)  # stray grandchildren, or the child itself on Ctrl-C
        if not reaped:
            with contextlib.suppress(ChildProcessError):
                os.wait4(process.pid, 0)
            process.returncode = -1
    exact_rss = _gnu_time_rss(rss_file) if GNU_TIME.exists() else None
    rss_file.unlink(missing_ok=True)
    return ChildUsage(
        returncode=process.returncode,
        started=started,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_kb=exact_rss if exact_rss is not None else usage.ru_maxrss,
        maxrss_exact=exact_rss is not None,
        timed_out=timed_out.is_set(),
    )


def time_wait_sockets(ports: set[int], min_remaining_s: float) -> int:
    """TIME_WAIT sockets touching ``ports`` with more than ``min_remaining_s`` of their 60 s left.

    A socket that entered TIME_WAIT ``age`` seconds ago has ``60 - age`` left (the timer column
    of /proc/net/tcp, in 1/100 s), so with ``min_remaining_s = 60 - (time since the run
    started)`` this counts exactly the TIME_WAIT sockets the run created, not those earlier runs
    left behind (TIME_WAIT tuples get reused on loopback, so a before/after set difference
    undercounts). Both directions count: whichever side closed first holds the TIME_WAIT.
    """
    hex_ports = {f"{port:04X}" for port in ports}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines, None)
            for line in lines:
                fields = line.split()
                if len(fields) < 6 or fields[3] != TCP_TIME_WAIT:
                    continue
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                if local not in hex_ports and remote not in hex_ports:
                    continue
                remaining = int(fields[5].split(":")[1], 16) / _USER_HZ
                if remaining > min_remaining_s:
                    count += 1
    return count


def process_cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds used so far by running processes (the server's workers)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return total


def system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; /proc/stat without idle, iowait and
    steal).

    Busy time during a run minus the client's and the server's own CPU is what everything else
    used meanwhile (kernel networking included): a check that nothing else disturbed the run on
    a shared machine.
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
        return (user + nice + system + irq + softirq) / _CLK_TCK
    return 0.0
