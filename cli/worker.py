"""``poolfetch worker``: one fetching process of a run shared through Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, NoReturn

import click

from poolfetch.cli.affinity import pin_to_one_cpu
from poolfetch.cli.launch import fail_unavailable
from poolfetch.cli.logs import setup_logging
from poolfetch.cli.progress import stderr_is_terminal
from poolfetch.cli.version import __version__
from poolfetch.core.errors import ConfigError, CoordinationError
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.redact import is_credential_header, redact_url
from poolfetch.core.shutdown import CancelToken, ForcedExit, install_signal_handlers

if TYPE_CHECKING:
    from poolfetch.core.redis.worker import WorkerLoop

DEFAULT_CLAIM_IDLE = 60.0


@click.command()
@click.option(
    "--redis",
    "redis_url",
    required=True,
    metavar="URL",
    envvar="POOLFETCH_REDIS",
    help="The Redis of the shared run (redis://HOST:PORT/DB).",
)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(1, 1024),
    envvar="POOLFETCH_WORKERS",
    help="Worker threads in this process. [default: the coordinator's --workers]",
)
@click.option(
    "--claim-idle",
    type=click.FloatRange(min=1),
    default=DEFAULT_CLAIM_IDLE,
    show_default=True,
    envvar="POOLFETCH_CLAIM_IDLE",
    help="Seconds after which a dead worker's unfinished attempts are taken over.",
)
@click.option(
    "--name",
    envvar="POOLFETCH_WORKER_NAME",
    help="This worker's name in the consumer group. [default: HOST-PID]",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A status line on stderr every 2 s. [default: on when stderr is a terminal]",
)
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but fatal errors.")
@click.option(
    "--pin-cpu/--no-pin-cpu",
    default=True,
    show_default=True,
    envvar="POOLFETCH_PIN_CPU",
    help="Run on one CPU (chosen by pid, so workers spread over the cores).",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr (credentials redacted).")
def worker(
    redis_url: str,
    workers: int | None,
    claim_idle: float,
    name: str | None,
    progress: bool | None,
    quiet: bool,
    pin_cpu: bool,
    verbose: int,
) -> NoReturn:
    """Run the attempts of the run a `poolfetch run --redis URL` coordinator publishes.

    The run's options (retries, headers, output folder) come from the coordinator, and its
    scheduler decides when each attempt starts, so every limit (--qps, --per-host-qps,
    --per-host-connections, Retry-After pauses, the learned rate and concurrency, announced
    quotas) holds over all workers together. Waits for a run if none is published yet, and
    exits when the run is over. With -o, every worker must see the
    coordinator's output folder at the same absolute path (one machine, or a shared mount).

    \b
    Example (three terminals):
      poolfetch worker --redis redis://127.0.0.1:6379/0
      poolfetch worker --redis redis://127.0.0.1:6379/0
      poolfetch run --redis redis://127.0.0.1:6379/0 --qps 30 urls.txt > results.jsonl
    """
    # imported here: the redis client costs ~50 ms that other commands should not pay
    from poolfetch.core.attempt_pool import AttemptPool
    from poolfetch.core.redis.keys import connect, run_config, wait_for_run
    from poolfetch.core.redis.presence import WorkerPresence
    from poolfetch.core.redis.worker import WorkerLoop

    if pin_cpu:
        pin_to_one_cpu()
    token = CancelToken()
    restore = install_signal_handlers(token)
    consumer = name or f"{socket.gethostname()}-{os.getpid()}"
    setup_logging(verbose, quiet, ())
    loop: WorkerLoop | None = None
    try:
        client = connect(redis_url)
        if not quiet:
            click.echo(
                f"poolfetch worker {consumer}: waiting for a run on {redact_url(redis_url)}",
                err=True,
            )
        found = wait_for_run(client, token.event)
        if found is None:
            if not quiet:
                click.echo(f"poolfetch worker {consumer}: {_stopped(token)} before a run", err=True)
            _leave(token.exit_code or ExitCode.SIGINT)
        keys, raw = found
        config = run_config(raw, workers)
        secrets = tuple(v for n, v in config.headers if is_credential_header(n))
        setup_logging(verbose, quiet, secrets + config.access.secrets)
        pool = AttemptPool(config, __version__, config.workers)
        loop = WorkerLoop(client, keys, pool, consumer, claim_idle, token.event)
        presence = WorkerPresence(client, keys, consumer, config.workers)
        if not quiet:
            click.echo(
                f"poolfetch worker {consumer}: joined run {keys.run_id}"
                f" with {config.workers} workers",
                err=True,
            )
        show = not quiet and (stderr_is_terminal() if progress is None else progress)
        status = _Status(consumer, loop) if show else None
        try:
            presence.start()  # the coordinator counts our threads from now on
            if status is not None:
                status.start()
            loop.run()
        finally:
            presence.stop()
            if status is not None:
                status.stop()
            pool.close()
    except ForcedExit:  # a second signal: leave now, without finishing what runs
        pass
    except CoordinationError as exc:
        fail_unavailable(exc)
    except ConfigError as exc:  # a malformed --redis URL
        raise click.UsageError(str(exc)) from exc
    finally:
        restore()
    if not quiet:
        if loop is None:  # a second signal while it waited for a run
            click.echo(f"poolfetch worker {consumer}: {_stopped(token)} before a run", err=True)
        elif token.signal is not None:
            click.echo(
                f"poolfetch worker {consumer}: {_stopped(token)} after {loop.answered}"
                " attempts; the run's other workers take over any it had not answered",
                err=True,
            )
        else:
            click.echo(f"poolfetch worker {consumer}: run over, {loop.answered} attempts", err=True)
    _leave(token.exit_code or ExitCode.OK)


def _stopped(token: CancelToken) -> str:
    """``stopped by SIGTERM`` (or SIGINT): why a worker left before its run was over."""
    return f"stopped by {token.signal.name}" if token.signal is not None else "stopped"


def _leave(code: int) -> NoReturn:
    """Exit now: worker threads may be blocked where they cannot be woken (an abandoned
    request), and the interpreter's shutdown would wait for them."""
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


class _Status:
    """``--progress``: the worker's attempts answered and running, a line every few seconds
    (the run's own display is the coordinator's)."""

    def __init__(self, name: str, loop: WorkerLoop) -> None:
        self._name = name
        self._loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolfetch-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(_STATUS_EVERY_S):
            click.echo(
                f"poolfetch worker {self._name}: {self._loop.answered} attempts answered,"
                f" {self._loop.running} running",
                err=True,
            )


_STATUS_EVERY_S = 2.0
