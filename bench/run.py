"""poolfetch benchmarks, one command: ``python bench/run.py [--quick] [--scenario NAME ...]``.

Starts a private nginx (or, without nginx, poolfetch's practice server, and says so), runs the
scenarios one after the other (see ``scenarios.py``), stops the server, writes the raw results
as JSON to ``--out`` and prints Markdown tables on stdout; ``--markdown FILE`` also rewrites the
generated section of that file (``docs/benchmarks.md``). Progress goes to stderr.

Every request goes to 127.0.0.1; every client and server is a child in its own process group,
killed on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import machine
import mdblocks
from clients import BASELINE_ENV, compile_build
from harness import Harness
from plot import workers_figure
from scenarios import SCENARIOS, Options
from target import open_target

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_SCENARIOS = ("throughput", "workers", "qps", "ratelimited", "rss")
FIGURE = BENCH_DIR.parent / "docs" / "bench-workers.png"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 repeat (~2 min)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help=f"repeatable; default: {' '.join(DEFAULT_SCENARIOS)}",
    )
    parser.add_argument("--repeats", type=int, help="runs per client (default 3, --quick 1)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="JSON folder")
    parser.add_argument("--markdown", type=Path, help="rewrite the tables in this file")
    parser.add_argument("--big", action="store_true", help="rss: add 10^7 lines (long)")
    parser.add_argument(
        "--fallback", action="store_true", help="use the practice server even if nginx exists"
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: children are killed


def run_scenarios(
    args: argparse.Namespace, opts: Options, command: str, results: dict[str, Any]
) -> None:
    """Run the chosen scenarios into ``results`` (filled as they finish, so an interrupted
    run still leaves the finished ones)."""
    names = args.scenario or list(DEFAULT_SCENARIOS)
    workdir = Path(tempfile.mkdtemp(prefix="poolfetch-bench-"))
    try:
        with open_target(workdir, force_fallback=args.fallback) as target:
            if target.note:
                Harness.say(f"NOTE: {target.note}")
            named = target.version.startswith(target.kind)  # "nginx/1.22.1" names itself
            server = target.version if named else f"{target.kind} {target.version}"
            Harness.say(f"server: {server}; scenarios: {' '.join(names)}")
            harness = Harness(target, workdir)
            for name in names:
                started = time.time()
                meta = {
                    "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                    "server": server,
                    "server_note": target.note,
                    "repeats": 1 if name == "rss" else opts.repeats,  # rss: one run per size
                    "command": command,
                    "source": machine.source_version(),
                }
                Harness.say(f"== {name}")
                try:
                    result = SCENARIOS[name](harness, opts)
                except Exception as exc:  # report it, go on with the other scenarios
                    traceback.print_exc()
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                meta["duration_s"] = round(time.time() - started, 1)
                results[name] = {"meta": meta, **result}
                Harness.say(f"   {name} took {meta['duration_s']:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop the run even when started from a shell that ignores SIGINT (``cmd &``).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    opts = Options(quick=args.quick, repeats=max(1, repeats), big=args.big)
    command = "python bench/run.py " + shlex.join(argv)
    info = machine.describe()
    compile_build()
    if os.environ.get(BASELINE_ENV):
        compile_build(os.environ[BASELINE_ENV])
    results: dict[str, Any] = {}
    try:
        run_scenarios(args, opts, command.strip(), results)
    finally:  # also on Ctrl-C / SIGTERM: keep what was measured
        if "workers" in results and results["workers"].get("runs"):
            note = workers_figure(results["workers"], FIGURE)
            results["workers"].setdefault("notes", []).extend([note] if note else [])
        if results:
            args.out.mkdir(parents=True, exist_ok=True)
            out = args.out / time.strftime("bench-%Y%m%d-%H%M%S.json")
            out.write_text(json.dumps({"machine": info, "scenarios": results}, indent=1) + "\n")
            Harness.say(f"raw results: {out}")
    any_meta = next(iter(results.values()), {}).get("meta", {})
    blocks = {
        "machine": mdblocks.render_machine(
            info, any_meta.get("server", "?"), any_meta.get("server_note", "")
        )
    }
    blocks.update({name: mdblocks.render(name, result) for name, result in results.items()})
    print("\n".join(blocks.values()))
    if args.markdown:
        mdblocks.update_file(args.markdown, blocks)
        Harness.say(f"updated {args.markdown}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        Harness.say("interrupted: servers and clients stopped")
        sys.exit(130)
