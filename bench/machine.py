"""What the numbers were measured on: they mean little without the machine and the versions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from nginx_server import nginx_version

BENCH_DIR = Path(__file__).resolve().parent


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _curl_version() -> str | None:
    if shutil.which("curl") is None:
        return None
    done = subprocess.run(
        ["curl", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.split("\n", 1)[0].split(" (", 1)[0] if done.returncode == 0 else None


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as m:
        return int(m.readline().split()[1]) / 1024 / 1024
    return None


def source_version() -> dict[str, Any]:
    """The poolfetch code measured: git commit, whether core/ or cli/ differ from it, and a
    digest of their files (the code may change between runs; the digest tells runs apart)."""
    root = BENCH_DIR.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("core/*.py"), *root.glob("cli/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    commit = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(root)]
        head = [*git, "rev-parse", "--short", "HEAD"]
        done = subprocess.run(head, capture_output=True, text=True, timeout=10, check=False)
        commit = done.stdout.strip() or None
        status = [*git, "status", "--porcelain", "--", "core", "cli"]
        done = subprocess.run(status, capture_output=True, text=True, timeout=10, check=False)
        dirty = bool(done.stdout.strip())
    return {"commit": commit, "dirty": dirty, "digest": digest.hexdigest()[:12]}


def describe() -> dict[str, Any]:
    """nproc, CPU model, memory, kernel, Python and library versions, servers, date."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "poolfetch": _version("poolfetch"),
        "requests": _version("requests"),
        "urllib3": _version("urllib3"),
        "aiohttp": _version("aiohttp"),
        "nginx": nginx_version(),
        "curl": _curl_version(),
    }


def markdown(info: dict[str, Any]) -> str:
    memory = f"{info['memory_gb']:.0f} GB" if info.get("memory_gb") else "?"
    return "\n".join([
        f"- Date: {info['date']}",
        f"- CPU: {info['nproc']} × {info['cpu']}; memory {memory}; Linux {info['kernel']}",
        f"- Python {info['python']}; poolfetch {info['poolfetch']}; requests {info['requests']}; "
        f"urllib3 {info['urllib3']}; aiohttp {info['aiohttp'] or 'not installed'}",
        f"- Server: {info['nginx'] or 'nginx not installed'}; client {info['curl'] or 'no curl'}",
    ])  # fmt: skip
