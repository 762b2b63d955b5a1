"""From converted options to a finished run: config, sources, sinks, state, exit code.

Shared by ``run`` and ``demo``. Usage problems (bad values, unreadable sources, an unusable
state file) surface here as Click usage errors (``ExitCode.USAGE``) before any request is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click

from poolfetch.cli.clobber import clobbered
from poolfetch.cli.params import check_json, load_body
from poolfetch.cli.progress import choose_reporter
from poolfetch.cli.streams import hint_if_typing, run_problem
from poolfetch.cli.version import __version__
from poolfetch.core.access import AccessOptions, parse_user
from poolfetch.core.admission import numbered_lines
from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy, Timeouts
from poolfetch.core.errors import (
    ConfigError,
    CoordinationError,
    SourceError,
    StateError,
    StateLockedError,
    WorkerProcessError,
)
from poolfetch.core.exit_codes import SIGNAL_EXITS, ExitCode
from poolfetch.core.rates import Rate, describe_rates
from poolfetch.core.report import Reporter
from poolfetch.core.request import FORM_TYPE, JSON_TYPE, CommandLineRequest
from poolfetch.core.runner import REDIS_UNAVAILABLE, Runner, RunOutcome
from poolfetch.core.shutdown import CancelToken, ForcedExit, install_signal_handlers
from poolfetch.core.sinks import JsonlSink
from poolfetch.core.source import STDIN_NAME, count_jobs, open_sources
from poolfetch.core.state import StateStore
from poolfetch.core.stats import RunStats


@dataclass(frozen=True)
class Presentation:
    """How the run talks to people (stderr); separate from what it does."""

    progress: bool | None
    quiet: bool
    summary_json: Path | None
    verbose: int


def build_config(params: dict[str, Any], stdin_urls: bool = False) -> FetchConfig:
    """Options (already converted by Click) → the engine's frozen ``FetchConfig``
    (``stdin_urls``: the URLs come from standard input, so a body cannot)."""
    timeout = params["timeout"]
    if params.get("redis_url") and (params["resume_partial"] or params["limit_rate"]):
        raise ConfigError("--continue and --limit-rate apply to local runs, not with --redis")
    if params["processes"] > 1 and params["resume_partial"]:
        # a partial file's notice waits for the state, which only the main process writes
        raise ConfigError("--continue needs --processes 1")
    return FetchConfig(
        workers=params["workers"],
        pool_size=params["pool_size"],
        rate=RateLimit(
            qps=_per_second(params["qps"]),
            burst=params["burst"],
            per_host_qps=_per_second(params["per_host_qps"]),
            per_host_connections=params["per_host_connections"],
            adaptive=params["adaptive"],
            rate_headers=params["rate_headers"],
            qps_given=_given(params["qps"]),
            per_host_qps_given=_given(params["per_host_qps"]),
        ),
        retry=RetryPolicy(
            retries=params["retries"],
            retry_on=params["retry_on"],
            backoff=params["backoff"],
            max_backoff=params["max_backoff"],
            max_retry_after=params["max_retry_after"],
            retry_unsafe=params["retry_unsafe"],
        ),
        timeouts=Timeouts(connect=timeout, read=timeout, total=params["max_time"]),
        headers=tuple(params["header"]),
        user_agent=params["user_agent"],
        max_bytes=params["max_bytes"],
        max_redirects=params["max_redirects"],
        output_dir=params["output_dir"],
        state_path=params["state"],
        refresh=params["refresh"],
        resume_partial=params["resume_partial"],
        limit_rate=params["limit_rate"],
        processes=params["processes"],
        pin_processes=params["pin_cpu"],
        request=build_request(params, stdin_urls),
        access=build_access(params),
        max_host_errors=params["max_host_errors"],
    )


def build_request(params: dict[str, Any], stdin_urls: bool = False) -> CommandLineRequest:
    """``-X``, ``-d``/``--json`` (bodies read once, JSON checked) and ``--record-header``."""
    data, json_text = params["data"], params["json_body"]
    if data is not None and json_text is not None:
        raise click.UsageError("give one request body: -d/--data or --json, not both")
    body: bytes | None = None
    body_type: str | None = None
    if data is not None:
        body, body_type = load_body(data, "--data", stdin_urls), FORM_TYPE
    elif json_text is not None:
        body, body_type = load_body(json_text, "--json", stdin_urls), JSON_TYPE
        check_json(body, "--json")
    return CommandLineRequest(
        method=params["method"],
        body=body,
        body_type=body_type,
        record_headers=tuple(params["record_header"]),
    )


def build_access(params: dict[str, Any]) -> AccessOptions:
    """``-k``, ``--cacert``, ``--cert``/``--key``, ``-x``, ``-u`` (files made absolute, so that
    shared-run workers started elsewhere find them)."""

    def absolute(path: Path | None) -> str | None:
        return os.path.abspath(path) if path is not None else None

    user = params["user"]
    return AccessOptions(
        insecure=params["insecure"],
        cacert=absolute(params["cacert"]),
        cert=absolute(params["cert"]),
        key=absolute(params["key"]),
        proxy=params["proxy"] or None,
        user=parse_user(user) if user is not None else None,
    )


def _per_second(rate: Rate | None) -> float | None:
    return rate.per_second if rate is not None else None


def _given(rate: Rate | None) -> str | None:
    return rate.given if rate is not None else None


def execute(
    config: FetchConfig,
    sources: list[str],
    results: str,
    presentation: Presentation,
    redis_url: str | None = None,
) -> RunOutcome:
    """Open everything a run needs (usage errors before any request), run it, report it.

    With ``redis_url`` this process is the coordinator of a shared run (see ``worker``).
    """
    summary_path = str(presentation.summary_json) if presentation.summary_json else None
    problem = run_problem(sources, results, summary_path) or clobbered(
        sources, results, presentation.summary_json, config.state_path
    )
    if problem is not None:
        raise click.UsageError(problem)
    if presentation.summary_json is not None:
        _check_summary_path(presentation.summary_json)
    try:
        opened = open_sources(sources)
    except SourceError as exc:
        raise click.UsageError(str(exc)) from exc
    if not presentation.quiet and any(name == STDIN_NAME for name, _ in opened):
        hint_if_typing("URLs")
    state = None
    try:
        if config.state_path is not None:
            state = StateStore(config.state_path, output_dir=config.output_dir)
        sink = _open_results(results)
        reporter = choose_reporter(presentation.progress, presentation.quiet)
        token = CancelToken()
        workers = None
        if redis_url is not None:
            # imported here: redis costs ~50 ms of start-up that a local run should not pay
            from poolfetch.core.redis.executor import redis_workers
            from poolfetch.core.redis.keys import connect

            def show_workers(count: int) -> None:
                runner.stats.worker_processes = count  # the live display's "worker processes"

            workers = redis_workers(connect(redis_url), config, show_workers)
        runner = Runner(
            config,
            numbered_lines(opened),
            sink,
            version=__version__,
            reporter=reporter,
            state=state,
            cancel=token,
            workers=workers,
        )
    except StateLockedError as exc:
        click.echo(f"poolfetch: {exc}", err=True)
        sys.exit(ExitCode.STATE_LOCKED)
    except CoordinationError as exc:
        if state is not None:
            state.finish(completed=False)
        if presentation.summary_json is not None:  # not last night's file, left as it was
            _write_summary(presentation.summary_json, _unreached_summary(config))
        fail_unavailable(exc)
    except (StateError, ConfigError) as exc:
        raise click.UsageError(str(exc)) from exc
    _count_in_background(sources, runner, reporter)
    restore = install_signal_handlers(token)
    try:
        outcome = runner.run()
        if presentation.summary_json is not None:  # signals ignored (closing) until restored
            _write_summary(presentation.summary_json, outcome.summary)
    except ForcedExit:  # a second signal just as the run ended: its outputs are closed
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        os._exit(token.exit_code or ExitCode.SIGINT)
    except CoordinationError as exc:
        if presentation.summary_json is not None and runner.summary is not None:
            _write_summary(presentation.summary_json, runner.summary)
        fail_unavailable(exc)
    except WorkerProcessError as exc:
        if presentation.summary_json is not None and runner.summary is not None:
            _write_summary(presentation.summary_json, runner.summary)
        click.echo(f"poolfetch: {exc} (state committed)", err=True)
        sys.stdout.flush()
        os._exit(ExitCode.NO_PROCESSES)
    except sqlite3.DatabaseError as exc:  # the file opened, but its pages do not read back
        click.echo(f"poolfetch: --state {config.state_path}: {exc} (unusable state)", err=True)
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        os._exit(ExitCode.USAGE)  # the workers may be running: no interpreter shutdown
    finally:
        restore()
    return outcome


def _unreached_summary(config: FetchConfig) -> dict[str, Any]:
    """The summary of a shared run whose Redis could not be reached: nothing was done."""
    stats = RunStats(workers=config.workers, rates=describe_rates(config.rate), processes=0)
    stats.interrupted = REDIS_UNAVAILABLE
    return stats.summary()


def fail_unavailable(exc: CoordinationError) -> NoReturn:
    """Redis is unreachable or went away: say so and exit ``UNAVAILABLE`` (state committed)."""
    click.echo(f"poolfetch: {exc}", err=True)
    sys.stdout.flush()
    os._exit(ExitCode.UNAVAILABLE)


def _open_results(results: str) -> JsonlSink:
    if results == "-":
        return JsonlSink(sys.stdout, close=False)
    try:
        stream: TextIO = open(results, "w", encoding="utf-8")  # noqa: SIM115 - sink closes it
    except OSError as exc:
        raise click.UsageError(f"cannot write --results {results}: {exc.strerror}") from exc
    return JsonlSink(stream, close=True)


def _count_in_background(sources: list[str], runner: Runner, reporter: Reporter) -> None:
    """Count the URLs of regular files without holding them, for the progress bar's total."""
    files = [s for s in sources if s != "-" and os.path.isfile(s)]
    if not files or len(files) != len(sources):
        return

    def count() -> None:
        total = count_jobs(files)
        if total is not None:
            runner.set_total(total)

    threading.Thread(target=count, name="poolfetch-count", daemon=True).start()


def _is_stream(path: Path) -> bool:
    """A character device or a FIFO (``/dev/stdout``, ``/dev/null``, a named pipe): the
    summary is written into it. Renaming a temporary file over it would replace the device
    with a regular file (as root, ``/dev/null`` for the whole machine)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _summary_temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _check_summary_path(path: Path) -> None:
    """Refuse a --summary-json that could not be written at the end (a usage error now, not a
    missing file a cron job never hears about): the temporary file it is written through
    must be creatable in its folder."""
    if _is_stream(path):
        if not os.access(path, os.W_OK):
            raise click.UsageError(f"cannot write --summary-json {path}: Permission denied")
        return
    tmp = _summary_temp(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise click.UsageError(f"cannot write --summary-json {path}: {exc.strerror}") from exc


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, indent=2) + "\n"
    try:
        if _is_stream(path):  # /dev/stdout, a FIFO: written to, never replaced by a file
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
            return
        tmp = _summary_temp(path)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        click.echo(f"poolfetch: cannot write --summary-json {path}: {exc.strerror}", err=True)


def exit_with(outcome: RunOutcome) -> NoReturn:
    """Exit with the run's code.

    A stopped run (a signal, or the results' reader gone) exits at once, without the
    interpreter's shutdown: threads may still be blocked where they cannot be woken (the
    admission thread in a read of standard input, abandoned workers in a request), and
    finalizing the interpreter under them aborts the process instead of exiting 130/143.
    Everything the run owns (state, temporary files, records) was closed before this.
    """
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    if outcome.abandoned or outcome.exit_code in SIGNAL_EXITS.values():
        os._exit(outcome.exit_code)
    sys.exit(outcome.exit_code)
