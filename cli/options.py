"""The options of ``poolfetch run`` (names fixed by the contract), declared once.

Each option also reads ``POOLFETCH_<NAME>`` (dashes as underscores) and the ``--config`` TOML
file; Click resolves command line > environment > file > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poolfetch.cli.params import (
    HeaderType,
    ProcessesType,
    RateType,
    SizeType,
    StatusListType,
    load_config_file,
)
from poolfetch.cli.version import __version__
from poolfetch.core import config as defaults


def _env(name: str) -> str:
    return "POOLFETCH_" + name.upper()


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.meta["poolfetch.config_file"] = value
        ctx.default_map = {
            **(ctx.default_map or {}),
            **load_config_file(value, _config_keys(ctx.command)),
        }
    return value


def _config_keys(command: click.Command) -> dict[str, str]:
    """Config-file key (an option's long name, underscores for dashes) -> parameter name.

    Keys are the names users see (``redis``, ``per_host_qps``), whatever the parameter is
    called inside (``--redis`` is stored as ``redis_url``); a flag pair is named by its first
    long name (``progress`` for ``--progress/--no-progress``).
    """
    keys: dict[str, str] = {}
    for param in command.params:
        if param.name is None:
            continue
        keys[param.name] = param.name
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:].replace("-", "_")] = param.name
    return keys


def run_options(func: Any) -> Any:
    """Every option of ``run`` (contract names), each also read from ``POOLFETCH_<NAME>``."""
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            envvar=_env("config"),
            is_eager=True,
            expose_value=False,
            callback=_load_config,
            help="Options from a TOML file (command line > environment > file).",
        ),
        click.option(
            "-w",
            "--workers",
            type=click.IntRange(1, defaults.MAX_WORKERS),
            default=defaults.DEFAULT_WORKERS,
            envvar=_env("workers"),
            show_default=True,
            help="Worker threads, each with its own pre-warmed keep-alive Session.",
        ),
        click.option(
            "--processes",
            type=ProcessesType(),
            default="1",
            envvar=_env("processes"),
            show_default=True,
            help="Spread the workers over N processes (auto: one per CPU), each a thread pool "
            "of Sessions on a CPU of its own; limits hold across them. Worth it when one "
            "process is CPU-bound (many fast responses).",
        ),
        click.option(
            "--pool-size",
            type=click.IntRange(min=1),
            envvar=_env("pool_size"),
            help="Hosts whose keep-alive connection each worker keeps open at once "
            "(urllib3 pool_connections); jobs go to a free worker already connected to "
            "their host. [default: workers]",
        ),
        click.option(
            "--qps",
            type=RateType(),
            envvar=_env("qps"),
            help="Global limit on request starts, retries included: per second (30, 2.5) "
            "or N/UNIT as curl's --rate, UNIT s, m, h or d (60/m, 5000/h, 100/15s). "
            "[default: unlimited]",
        ),
        click.option(
            "--burst",
            type=click.IntRange(min=1),
            default=defaults.DEFAULT_BURST,
            envvar=_env("burst"),
            show_default=True,
            help="Token-bucket burst for --qps and --per-host-qps: how many requests may "
            "start at once (the bucket starts full; 1: no startup burst).",
        ),
        click.option(
            "--per-host-qps",
            type=RateType(),
            envvar=_env("per_host_qps"),
            help="Request starts to each host, in the forms of --qps (5, 300/m). "
            "[default: unlimited]",
        ),
        click.option(
            "--per-host-connections",
            type=click.IntRange(min=1),
            envvar=_env("per_host_connections"),
            help="Requests in flight to one host at once. [default: unlimited]",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            default=defaults.DEFAULT_RETRIES,
            envvar=_env("retries"),
            show_default=True,
            help="Retries after the first attempt (errors, timeouts, --retry-on).",
        ),
        click.option(
            "--retry-on",
            type=StatusListType(),
            envvar=_env("retry_on"),
            default="429,500,502,503,504",
            show_default=True,
            help="Statuses worth a retry, comma-separated.",
        ),
        click.option(
            "--backoff",
            type=click.FloatRange(min=0),
            default=defaults.DEFAULT_BACKOFF,
            envvar=_env("backoff"),
            show_default=True,
            help="Base of the exponential backoff in seconds (with jitter).",
        ),
        click.option(
            "--max-backoff",
            type=click.FloatRange(min=0),
            default=defaults.DEFAULT_MAX_BACKOFF,
            envvar=_env("max_backoff"),
            show_default=True,
            help="Longest single backoff wait, seconds.",
        ),
        click.option(
            "--max-retry-after",
            type=click.FloatRange(min=0),
            default=defaults.DEFAULT_MAX_RETRY_AFTER,
            envvar=_env("max_retry_after"),
            show_default=True,
            help="Longest Retry-After honoured; a longer one fails the URL.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=defaults.DEFAULT_TIMEOUT,
            envvar=_env("timeout"),
            show_default=True,
            help="Connect and read timeout of one attempt, seconds.",
        ),
        click.option(
            "--max-time",
            type=click.FloatRange(min=0, min_open=True),
            envvar=_env("max_time"),
            help="Longest one attempt's transfer may take, body included, seconds "
            "(a server trickling bytes within --timeout). [default: unlimited]",
        ),
        click.option(
            "-o",
            "--output-dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar=_env("output_dir"),
            help="Save each 2xx body under DIR (atomic writes, never outside DIR). "
            "[default: bodies discarded]",
        ),
        click.option(
            "--results",
            type=click.Path(dir_okay=False, allow_dash=True),
            default="-",
            envvar=_env("results"),
            show_default=True,
            help="Where result records (JSON Lines) go.",
        ),
        click.option(
            "--state",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=_env("state"),
            help="SQLite state: resume after a kill, conditional re-fetch.",
        ),
        click.option(
            "-H",
            "--header",
            "header",
            type=HeaderType(),
            multiple=True,
            envvar=_env("header"),
            help="Extra request header 'Name: value' (repeatable).",
        ),
        click.option(
            "-X",
            "--method",
            metavar="METHOD",
            envvar=_env("method"),
            help="HTTP method of every request (request objects may name their own). "
            "[default: GET; POST with -d/--json]",
        ),
        click.option(
            "-d",
            "--data",
            metavar="TEXT|@FILE",
            envvar=_env("data"),
            help="Request body, sent as given (@FILE: read once, as it is; @-: standard "
            "input, when the URLs come from files), with Content-Type "
            "application/x-www-form-urlencoded unless -H sets one.",
        ),
        click.option(
            "--json",
            "json_body",
            metavar="TEXT|@FILE",
            envvar=_env("json"),
            help="JSON request body (TEXT, @FILE or @- as for -d; checked before the run), "
            "with Content-Type and Accept application/json unless -H sets them.",
        ),
        click.option(
            "--retry-unsafe",
            is_flag=True,
            envvar=_env("retry_unsafe"),
            help="Retry POST/PATCH after any retryable failure; without it they are retried "
            "only when the server cannot have acted (not connected, 429, 503).",
        ),
        click.option(
            "--record-header",
            "record_header",
            metavar="NAME",
            multiple=True,
            envvar=_env("record_header"),
            help="Add this header of the final response to each record's 'headers' (repeatable).",
        ),
        click.option(
            "--user-agent",
            envvar=_env("user_agent"),
            help=f"User-Agent header. [default: poolfetch/{__version__}]",
        ),
        click.option(
            "--max-bytes",
            type=SizeType(),
            envvar=_env("max_bytes"),
            help="Largest body accepted, decoded (10M = 10 MiB). [default: unlimited]",
        ),
        click.option(
            "-C",
            "--continue",
            "resume_partial",
            is_flag=True,
            envvar=_env("continue"),
            help="Keep a body cut off (kill, reset, timeout) as a hidden partial file in DIR "
            "and resume it next time with Range/If-Range (needs -o and --state).",
        ),
        click.option(
            "--limit-rate",
            type=SizeType(),
            envvar=_env("limit_rate"),
            help="Body bytes per second over all workers (and --processes) together "
            "(500k, 1M, 2G; powers of 1024). [default: unlimited]",
        ),
        click.option(
            "-k",
            "--insecure",
            is_flag=True,
            envvar=_env("insecure"),
            help="Do not verify TLS certificates (a man in the middle goes unnoticed).",
        ),
        click.option(
            "--cacert",
            metavar="FILE",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=_env("cacert"),
            help="Trust the CA certificates in this PEM file instead of the system's "
            "(over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE).",
        ),
        click.option(
            "--cert",
            metavar="FILE",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=_env("cert"),
            help="Client certificate (PEM; may hold the key too) for servers that ask for one.",
        ),
        click.option(
            "--key",
            metavar="FILE",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=_env("key"),
            help="Private key (PEM, unencrypted) of --cert.",
        ),
        click.option(
            "-x",
            "--proxy",
            metavar="URL",
            envvar=_env("proxy"),
            help="HTTP proxy for every request (http://[USER:PASSWORD@]HOST:PORT; HTTPS through "
            "CONNECT), over HTTP(S)_PROXY; NO_PROXY still names hosts that bypass it.",
        ),
        click.option(
            "-u",
            "--user",
            metavar="USER:PASSWORD",
            envvar=_env("user"),
            help="Basic auth for the hosts of the input URLs (never sent to a redirect's other "
            "host; never shown).",
        ),
        click.option(
            "--max-host-errors",
            type=click.IntRange(min=0),
            default=defaults.DEFAULT_MAX_HOST_ERRORS,
            metavar="N",
            envvar=_env("max_host_errors"),
            show_default=True,
            help="Give up a host after this many connection failures in a row (refused, DNS, "
            "TLS, timeout) with no answer between: its remaining URLs fail at once. 0: never.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            envvar=_env("progress"),
            help="Live display on stderr. [default: on when stderr is a terminal]",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            envvar=_env("quiet"),
            help="No progress and no summary on stderr.",
        ),
        click.option(
            "--summary-json",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=_env("summary_json"),
            help="Write the end-of-run summary as JSON.",
        ),
        click.option(
            "--adaptive/--no-adaptive",
            default=True,
            envvar=_env("adaptive"),
            show_default=True,
            help="Cut a host's rate on 429/503, raise it again slowly.",
        ),
        click.option(
            "--rate-headers/--no-rate-headers",
            default=True,
            envvar=_env("rate_headers"),
            show_default=True,
            help="Obey the quota servers announce (RateLimit, RateLimit-*, X-RateLimit-*): "
            "pace each host so it lasts until the reset, pause at zero.",
        ),
        click.option(
            "--max-redirects",
            type=click.IntRange(min=0),
            default=defaults.DEFAULT_MAX_REDIRECTS,
            envvar=_env("max_redirects"),
            show_default=True,
            help="Redirects followed per request.",
        ),
        click.option(
            "--refresh",
            is_flag=True,
            envvar=_env("refresh"),
            help="With --state: start a new run even if the last was interrupted.",
        ),
        click.option(
            "--pin-cpu/--no-pin-cpu",
            default=True,
            envvar=_env("pin_cpu"),
            show_default=True,
            help="Run on one CPU (with --processes: each worker process on one of its own): "
            "the workers share the GIL, and handing it between cores cost about 40 % of the "
            "throughput here (see docs/benchmarks.md).",
        ),
        click.option(
            "--redis",
            "redis_url",
            metavar="URL",
            envvar=_env("redis"),
            help="Share the work queue and the limits through Redis (redis://HOST:PORT/DB); "
            "this process coordinates, `poolfetch worker` processes fetch. [default: local]",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            envvar=_env("verbose"),
            help="Log to stderr (-vv: connection details); credentials redacted.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
