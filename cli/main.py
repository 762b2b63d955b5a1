"""The ``poolfetch`` command group: ``run``, ``demo``, ``serve``.

Thin on purpose: options become a ``FetchConfig`` once and the engine never sees a Click
object. Exit codes (contract and README; ``core.exit_codes.ExitCode``): 0 all ok, 1 some URL
failed, 2 usage error, 69 Redis (``--redis``) unreachable or gone mid-run, 71 no
``--processes`` worker process could run, 75 the ``--state`` file is in use by another run,
130/143 stopped by SIGINT/SIGTERM, 141 the reader of the results went away.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from poolfetch.cli.affinity import pin_to_one_cpu
from poolfetch.cli.launch import Presentation, build_config, execute, exit_with
from poolfetch.cli.logs import setup_logging
from poolfetch.cli.options import run_options
from poolfetch.cli.params import SourcedCommand
from poolfetch.cli.practice_commands import demo, serve
from poolfetch.cli.streams import guard_standard_streams
from poolfetch.cli.version import __version__
from poolfetch.cli.worker import worker
from poolfetch.core.errors import ConfigError
from poolfetch.core.redact import is_credential_header

RUN_EPILOG = """\b
Examples:
  poolfetch run urls.txt --workers 20 --pool-size 20 --qps 30
  cat urls.txt | poolfetch run - | jq -r 'select(.ok | not) | .url'
  poolfetch run urls.txt -o mirror/ --state mirror.db --summary-json summary.json
  poolfetch run big-files.txt -C -o mirror/ --state mirror.db --limit-rate 2M
  POOLFETCH_QPS=5 poolfetch run --per-host-connections 2 api-urls.txt
  poolfetch run calls.jsonl --json @query.json --qps 20   (POST; lines may be JSON objects)
  poolfetch run --redis redis://127.0.0.1:6379/0 --qps 30 urls.txt   (with poolfetch worker)

\b
Exit codes: 0 every URL ok, 1 some URL failed, 2 usage error, 69 Redis unreachable,
71 no worker process (--processes) could run, 75 the --state file is used by another run,
130/143 stopped by SIGINT/SIGTERM, 141 the reader of the results went away (a broken pipe).
Records (JSON Lines) go to stdout or --results; everything human goes to stderr.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="poolfetch")
def cli() -> None:
    """Fetch lists of URLs fast and politely: keep-alive worker sessions, exact rate limits,
    Retry-After obeyed per host, resumable state, JSON Lines results.

    \b
    Start here:
      poolfetch demo                 the main job against a bundled local server
      poolfetch run urls.txt         fetch every URL in urls.txt
      poolfetch run --help           every option, with examples
    """


@cli.command(epilog=RUN_EPILOG, cls=SourcedCommand)
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@run_options
def run(sources: tuple[str, ...], **params: Any) -> NoReturn:
    """Fetch every URL in SOURCE files ('-' or none: standard input), one per line.

    Blank lines and lines starting with '#' are skipped; input is streamed.
    """
    try:
        config = build_config(params, stdin_urls=not sources or "-" in sources)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if params["refresh"] and config.state_path is None and not params["quiet"]:
        click.echo("poolfetch: --refresh has no effect without --state", err=True)
    presentation = Presentation(
        params["progress"], params["quiet"], params["summary_json"], params["verbose"]
    )
    if config.processes > 1 and params["redis_url"] is not None:
        raise click.UsageError(
            "--processes does not apply with --redis: start more 'poolfetch worker' processes"
        )
    if config.processes > config.workers and not params["quiet"]:
        click.echo(
            f"poolfetch: --processes {config.processes} with --workers {config.workers}: "
            f"{config.workers} {'process' if config.workers == 1 else 'processes'}"
            " (each runs at least one worker)",
            err=True,
        )
    # a coordinator fetches nothing; with --processes each worker process pins itself
    if params["pin_cpu"] and params["redis_url"] is None and config.processes == 1:
        pin_to_one_cpu()
    secrets = tuple(value for name, value in config.headers if is_credential_header(name))
    secrets += config.access.secrets
    setup_logging(presentation.verbose, presentation.quiet, secrets)
    outcome = execute(
        config, list(sources), params["results"], presentation, redis_url=params["redis_url"]
    )
    exit_with(outcome)


cli.add_command(demo)
cli.add_command(serve)
cli.add_command(worker)


def main() -> None:
    """Console-script entry point."""
    guard_standard_streams()
    cli(prog_name="poolfetch")
