"""``poolfetch serve`` (the practice server) and ``poolfetch demo`` (the main job against it).

The demo is fully offline: it starts the practice server on a free port of 127.0.0.1 with a
server-wide rate limit, writes a URL list that mixes small and large bodies, slow responses,
transient 503s and redirects, and runs the real pipeline over it with the live display.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from poolfetch.cli.launch import Presentation, execute, exit_with
from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.practice_limits import DIALECTS, MAX_DELAY_MS, WINDOW_KINDS, ServerLimits

DEMO_URLS = 600
DEMO_RATE_LIMIT = 150.0


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback only is recommended).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port (0: any free port).",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    help="Server-wide requests/s; beyond it answer 429 with Retry-After.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Burst allowed by --rate-limit.",
)
@click.option(
    "--retry-after",
    default="1",
    show_default=True,
    help="Retry-After sent with 429: seconds, or 'date' for an HTTP-date.",
)
@click.option(
    "--conn-limit",
    type=click.IntRange(min=1),
    help="Per client address: requests being served at once; beyond, 503 (nginx limit_conn).",
)
@click.option(
    "--conn-limit-status",
    type=click.Choice(["503", "429"]),
    default="503",
    show_default=True,
    help="Answer beyond --conn-limit: 503 without Retry-After, or 429 with Retry-After: 1.",
)
@click.option(
    "--backend-delay",
    type=click.IntRange(0, MAX_DELAY_MS),
    default=0,
    show_default=True,
    metavar="MS",
    help="Delay every request by MS milliseconds (a slow backend: requests overlap).",
)
@click.option(
    "--window",
    type=click.Choice(WINDOW_KINDS),
    help="Per client address: a fixed or moving window of --window-limit requests; beyond, 429.",
)
@click.option(
    "--window-limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Requests accepted per window (required with --window).",
)
@click.option(
    "--window-seconds",
    type=click.FloatRange(min=0, max=86_400, min_open=True),
    default=1.0,
    show_default=True,
    help="Length of the --window.",
)
@click.option(
    "--rate-headers",
    type=click.Choice(DIALECTS),
    default="none",
    show_default=True,
    help="How the --window announces its quota: none (a bare 429), X-RateLimit-* (reset in "
    "seconds or as a Unix time), RateLimit-* (earlier IETF drafts), ietf (RateLimit and "
    "RateLimit-Policy fields), reset-after (X-RateLimit-Reset-After).",
)
@click.option(
    "--window-retry-after/--no-window-retry-after",
    default=False,
    show_default=True,
    help="Send Retry-After (seconds to the window's reset) with the --window's 429.",
)
@click.option(
    "--bucket-rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Per client address: requests/s without burst (nginx limit_req without burst): a "
    "request sooner than 1/R after the last accepted one gets 429 + Retry-After: 1.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every request to stderr.")
def serve(
    host: str,
    port: int,
    rate_limit: float | None,
    burst: int,
    retry_after: str,
    conn_limit: int | None,
    conn_limit_status: str,
    backend_delay: int,
    window: str | None,
    window_limit: int | None,
    window_seconds: float,
    rate_headers: str,
    window_retry_after: bool,
    bucket_rate: float | None,
    verbose: bool,
) -> None:
    """Run the practice server that tests, benchmarks and the demo use.

    \b
    Paths: /fixed (200 bytes), /bytes/N, /delay/MS, /status/CODE, /fail/K/ID?status=503,
    /redirect/N, /headers, /etag/ID, /gzip/N, /reset, /stall-headers, /short/N, /_stats,
    /large/ID/N?rate=BYTES_PER_S&cut=K (ETag, Range, If-Range, 416; a trickle to resume).
    The limits (--rate-limit, --conn-limit, --window, --bucket-rate) apply to every path
    but /_stats, which also counts what they accepted and refused.
    """
    if window is not None and window_limit is None:
        raise click.BadParameter("--window needs --window-limit N", param_hint="--window")
    if window is None and (window_limit is not None or rate_headers != "none"):
        raise click.UsageError("--window-limit and --rate-headers need --window fixed|moving")
    from poolfetch.core.practice import PracticeServer, ServerOptions  # only when serving

    limits = ServerLimits(
        conn_limit=conn_limit,
        conn_status=int(conn_limit_status),
        delay_ms=backend_delay,
        window=window,
        window_limit=window_limit or 0,
        window_s=window_seconds,
        headers=rate_headers,
        retry_after=window_retry_after,
        bucket_rate=bucket_rate,
    )
    options = ServerOptions(
        host=host,
        port=port,
        rate_limit=rate_limit,
        rate_burst=burst,
        retry_after=retry_after,
        quiet=not verbose,
        limits=limits,
    )
    server = PracticeServer(options)
    try:
        server.start()
    except OSError as exc:  # the port in use, an address not on this machine, a bad name
        reason = exc.strerror or str(exc)
        click.echo(f"poolfetch serve: cannot listen on {host}:{port}: {reason}", err=True)
        sys.exit(ExitCode.URLS_FAILED)
    click.echo(f"poolfetch practice server on {server.url} (Ctrl-C stops it)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def demo_urls(base: str, count: int = DEMO_URLS) -> list[str]:
    """A realistic mix: mostly small API-like bodies, some large files, slow answers,
    transient 503s that succeed on retry, redirects and a comment line."""
    urls = ["# poolfetch demo list (generated)"]
    for i in range(count):
        kind = i % 20
        if kind == 0:
            urls.append(f"{base}/bytes/{100_000 + i}")
        elif kind == 1:
            urls.append(f"{base}/delay/{50 + i % 150}")
        elif kind == 2:
            urls.append(f"{base}/fail/1/demo-{i}?status=503")
        elif kind == 3:
            urls.append(f"{base}/redirect/2?n={i}")
        else:
            urls.append(f"{base}/bytes/{200 + i}")
    return urls


@click.command()
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 256),
    default=20,
    show_default=True,
    help="Worker threads for the demo run.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the list, records and bodies. [default: a new temp folder]",
)
def demo(workers: int, directory: Path | None) -> NoReturn:
    """Fetch a generated list from a bundled local server (offline, about 10 s).

    The server limits itself to 150 requests/s and answers 429 with Retry-After beyond
    that; some URLs fail once with 503. Watch poolfetch slow down for the host, retry, and
    finish with every URL ok.
    """
    from poolfetch.core.practice import PracticeServer, ServerOptions  # only for the demo

    base = directory or Path(tempfile.mkdtemp(prefix="poolfetch-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    server = PracticeServer(ServerOptions(rate_limit=DEMO_RATE_LIMIT, rate_burst=20)).start()
    try:
        url_file = base / "urls.txt"
        url_file.write_text("\n".join(demo_urls(server.url)) + "\n", encoding="utf-8")
        results = base / "results.jsonl"
        config = FetchConfig(
            workers=workers,
            rate=RateLimit(rate_headers=True),  # as ``run`` does by default
            output_dir=base / "bodies",
            retry=RetryPolicy(retries=5, backoff=0.2),
        )
        click.echo(f"poolfetch demo: {DEMO_URLS} URLs from {server.url}", err=True)
        outcome = execute(
            config,
            [str(url_file)],
            str(results),
            Presentation(progress=None, quiet=False, summary_json=None, verbose=0),
        )
    finally:
        server.stop()
    click.echo(
        f"poolfetch demo: records in {results}, bodies under {base / 'bodies'}; "
        f"try: jq -c 'select(.attempts > 1)' {results}",
        err=True,
    )
    exit_with(outcome)
