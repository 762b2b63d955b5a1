"""Helpers for the integration tests: run the real CLI, count requests in time windows.

Every server is started and stopped by the fixture that owns it; every CLI run has a timeout.
Tests that need an external service (nginx, redis) use ``require_service``: they skip on a
developer's machine without it, and fail under ``CI=true`` (CI installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "poolfetch.cli"]


@dataclass
class CliResult:
    """A finished CLI run: exit code, parsed records, raw streams."""

    code: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_cli(
    *args: str,
    input: str | bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> CliResult:
    """Run ``poolfetch ARGS`` as a real process and wait for it (bounded by ``timeout``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    full_env.update(env or {})
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [*CLI, *args],
        input=data if data is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def run_cli_measured(*args: str, cwd: Path, timeout: float = 60) -> tuple[CliResult, int, float]:
    """Run the CLI and return its result, its own peak RSS (KiB) and the wall time.

    The peak is the process's ``VmHWM``, sampled while it runs: ``ru_maxrss`` from ``wait4``
    would start from the RSS of this (pytest) process at the fork, which grows over a session.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    out, err = cwd / "measured.stdout", cwd / "measured.stderr"
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*CLI, *args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd, env=env
        )
    deadline = started + timeout
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _high_water_kib(proc.pid))
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, status, _ = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            pytest.fail(f"CLI still running after {timeout} s")
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
    elapsed = time.monotonic() - started
    result = CliResult(proc.returncode, out.read_text(), err.read_text())
    return result, peak_kib, elapsed


def _high_water_kib(pid: int) -> int:
    """``VmHWM`` of a running process in KiB (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def require_service(binary: str) -> str:
    """Path of an external service binary; skip without it, but fail under CI=true."""
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
    )
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is required under CI=true (.ci/run installs it)")
        pytest.skip(f"{binary} not installed")
    return path


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any window of ``window`` seconds (sliding, exact)."""
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def write_urls(path: Path, urls: list[str]) -> Path:
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return path
