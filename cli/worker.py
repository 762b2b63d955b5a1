"""``poolfetch worker``: one fetching process of a run shared through Redis."""

from __future__ import annotations

import os
import socket
import sys
from typing import NoReturn

import click

from poolfetch.cli.affinity import pin_to_one_cpu
from poolfetch.cli.launch import exit_with, fail_unavailable
from poolfetch.cli.logs import setup_logging
from poolfetch.cli.progress import choose_reporter
from poolfetch.cli.version import __version__
from poolfetch.core.errors import ConfigError, CoordinationError
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.redact import is_credential_header
from poolfetch.core.runner import Runner
from poolfetch.core.shutdown import CancelToken, install_signal_handlers

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
    help="Seconds after which a dead worker's unfinished jobs are taken over.",
)
@click.option(
    "--name",
    envvar="POOLFETCH_WORKER_NAME",
    help="This worker's name in the consumer group. [default: HOST-PID]",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live display on stderr. [default: on when stderr is a terminal]",
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
    """Fetch jobs of the run a `poolfetch run --redis URL` coordinator publishes.

    The run's options (limits, retries, headers, output folder) come from the coordinator;
    the limits (--qps, --per-host-qps, --per-host-connections, Retry-After pauses, the
    adaptive rate) are shared by every worker through Redis. Waits for a run if none is
    published yet, and exits when the run is over. With -o, every worker must see the
    coordinator's output folder at the same absolute path (one machine, or a shared mount).

    \b
    Example (three terminals):
      poolfetch worker --redis redis://127.0.0.1:6379/0
      poolfetch worker --redis redis://127.0.0.1:6379/0
      poolfetch run --redis redis://127.0.0.1:6379/0 --qps 30 urls.txt > results.jsonl
    """
    # imported here: the redis client costs ~50 ms that other commands should not pay
    from poolfetch.core.distributed import (
        PendingJobs,
        RedisJobSource,
        RedisResultSink,
        WorkerPresence,
        config_from_json,
        connect,
        wait_for_run,
    )
    from poolfetch.core.redis_limiter import RedisLimiter

    if pin_cpu:
        pin_to_one_cpu()
    token = CancelToken()
    restore = install_signal_handlers(token)
    consumer = name or f"{socket.gethostname()}-{os.getpid()}"
    try:
        client = connect(redis_url)
        if not quiet:
            click.echo(f"poolfetch worker {consumer}: waiting for a run on {redis_url}", err=True)
        keys = wait_for_run(client, token.event)
        if keys is None:
            sys.exit(token.exit_code or ExitCode.SIGINT)
        config = config_from_json(client.get(keys.config) or b"{}", workers)  # type: ignore[arg-type]
        secrets = tuple(v for n, v in config.headers if is_credential_header(n))
        setup_logging(verbose, quiet, secrets + config.access.secrets)
        WorkerPresence(client, keys, consumer).start()  # a daemon thread, ends with us
        pending = PendingJobs()
        source = RedisJobSource(client, keys, consumer, claim_idle, pending, token.event)
        sink = RedisResultSink(client, keys, consumer, config.output_dir, pending)
        lease = 2 * config.timeouts.read + 5
        runner = Runner(
            config,
            iter(source),
            sink,
            version=__version__,
            reporter=choose_reporter(progress, quiet),
            limiter=RedisLimiter(client, keys.run_id, config.rate, lease_s=lease),
            cancel=token,
            claim_outputs=False,
        )
        outcome = runner.run()
    except CoordinationError as exc:
        fail_unavailable(exc)
    except ConfigError as exc:  # a malformed --redis URL
        raise click.UsageError(str(exc)) from exc
    finally:
        restore()
    if outcome.exit_code == ExitCode.USAGE:  # the job stream failed: Redis went away
        sys.exit(ExitCode.UNAVAILABLE)
    if outcome.exit_code == ExitCode.URLS_FAILED:  # the coordinator reports them; we are fine
        outcome = type(outcome)(ExitCode.OK, outcome.summary, outcome.abandoned)
    exit_with(outcome)
