"""Command lines of the clients under comparison, and the URL files they read.

* ``poolfetch``: the CLI as users run it (``poolfetch run FILE --workers N -q --results
  /dev/null``, defaults otherwise: records are still built and written, to /dev/null).
* ``poolfetch-p2`` / ``poolfetch-auto``: the same with ``--processes 2`` / ``auto``.
* ``reference``: the bare textbook design (thread pool + thread-local Session), the floor of
  what requests + urllib3 + threads cost; poolfetch adds scheduling, limits, retries, records.
* ``naive``: ``requests.get`` per URL, a new connection each time.
* ``curl``: ``curl --parallel``, a C client, for scale.
* ``aiohttp``: an asyncio client, when the optional ``bench`` extra is installed.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

Command = Callable[[Path, int, Sequence[str]], list[str]]
#: ``POOLFETCH_BASELINE=/path/to/bin/poolfetch`` adds that build as a client (before/after).
BASELINE_ENV = "POOLFETCH_BASELINE"


def compile_build(script: str | None = None) -> None:
    """Compile the bytecode of the poolfetch that ``script`` (a ``poolfetch`` launcher; this
    interpreter's by default) runs, as pip does when it installs a package. An editable
    install under ``PYTHONDONTWRITEBYTECODE`` (set in this project's sandboxes) compiles every
    module at every launch instead: 0.2-0.3 s of start-up that an installed poolfetch never
    pays, and a tenth of a 10 s case's ideal."""
    python = [sys.executable]
    if script is not None:
        try:
            first = Path(script).read_bytes().split(b"\n", 1)[0]
        except OSError as exc:
            print(f"bench: cannot read {script}: {exc.strerror}", file=sys.stderr)
            return
        if first.startswith(b"#!"):
            python = shlex.split(first[2:].decode())
    if not python or Path(python[0]).name in ("sh", "bash"):  # pip's launcher for long paths
        print(f"bench: not compiling {script}: its launcher is not Python's", file=sys.stderr)
        return
    code = "import compileall, poolfetch\nfor d in poolfetch.__path__: compileall.compile_dir(d)"
    try:
        subprocess.run([*python, "-c", code], check=False, stdout=subprocess.DEVNULL)
    except OSError as exc:
        print(f"bench: cannot compile {script}: {exc.strerror}", file=sys.stderr)


def write_urls(path: Path, urls: Iterable[str]) -> Path:
    """One URL a line, written in blocks (the big inputs never sit in memory)."""
    with path.open("w", encoding="utf-8") as out:
        block: list[str] = []
        for url in urls:
            block.append(url)
            if len(block) >= 10_000:
                out.write("\n".join(block) + "\n")
                block.clear()
        if block:
            out.write("\n".join(block) + "\n")
    return path


def poolfetch_command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
    script = Path(sys.executable).with_name("poolfetch")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "poolfetch.cli"]
    return [*base, "run", str(urlfile), "--workers", str(workers), "-q", "--results", "/dev/null",
            *extra]  # fmt: skip


def poolfetch_processes(processes: str) -> Command:
    """``poolfetch_command`` with ``--processes PROCESSES``."""

    def command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
        return poolfetch_command(urlfile, workers, ("--processes", processes, *extra))

    return command


def reference_command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
    script = str(BENCH_DIR / "reference_client.py")
    return [sys.executable, script, str(urlfile), "--workers", str(workers), *extra]


def naive_command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
    script = str(BENCH_DIR / "naive_client.py")
    return [sys.executable, script, str(urlfile), "--workers", str(workers), *extra]


def aiohttp_command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
    script = str(BENCH_DIR / "aiohttp_client.py")
    return [sys.executable, script, str(urlfile), "--connections", str(workers), *extra]


def curl_config(urlfile: Path, outdir: Path | None = None) -> Path:
    """A curl config with one ``url``/``output`` pair per URL (curl pairs each output with one
    URL, so a single ``-o /dev/null`` would cover only the first). Outputs go to /dev/null, or to
    one file per URL in ``outdir``: with ``--retry`` curl truncates the output before a retry and
    fails with "(23) Failed to truncate file" when that output is /dev/null."""
    config = urlfile.with_suffix(".files.curlrc" if outdir else ".curlrc")
    stale = not config.exists() or config.stat().st_mtime_ns < urlfile.stat().st_mtime_ns
    if stale:
        with urlfile.open(encoding="utf-8") as urls, config.open("w", encoding="utf-8") as out:
            for number, line in enumerate(urls):
                if line.strip():
                    target = outdir / str(number) if outdir else "/dev/null"
                    out.write(f'url = "{line.strip()}"\noutput = "{target}"\n')
    return config


def curl_command(
    urlfile: Path, workers: int, extra: Sequence[str] = (), outdir: Path | None = None
) -> list[str]:
    config = curl_config(urlfile, outdir)
    return ["curl", "--parallel", "--parallel-max", str(workers), "-s", *extra,
            "--config", str(config)]  # fmt: skip


@dataclass(frozen=True)
class Client:
    """A client in the comparison; ``note`` says why it is missing when it is."""

    name: str
    command: Command
    available: bool = True
    note: str = ""


def baseline_command(script: str) -> Command:
    """``poolfetch_command`` run by another build's ``poolfetch`` script (before/after)."""

    def command(urlfile: Path, workers: int, extra: Sequence[str] = ()) -> list[str]:
        return [script, "run", str(urlfile), "--workers", str(workers), "-q", "--results",
                "/dev/null", *extra]  # fmt: skip

    return command


def all_clients() -> list[Client]:
    """Every client, with availability checked (curl on PATH, aiohttp importable); with
    ``POOLFETCH_BASELINE=/path/to/bin/poolfetch``, that build too, after poolfetch."""
    has_curl = shutil.which("curl") is not None
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    baseline = os.environ.get(BASELINE_ENV)
    before = [Client("poolfetch (baseline)", baseline_command(baseline))] if baseline else []
    return [
        Client("poolfetch", poolfetch_command),
        *before,
        Client("poolfetch-p2", poolfetch_processes("2")),
        Client("poolfetch-auto", poolfetch_processes("auto")),
        Client("reference", reference_command),
        Client("naive", naive_command),
        Client("curl", curl_command, has_curl, "" if has_curl else "curl not installed"),
        Client(
            "aiohttp",
            aiohttp_command,
            has_aiohttp,
            "" if has_aiohttp else "aiohttp not importable (pip install -e '.[bench]')",
        ),
    ]
