"""nginx in integration tests: a site built from ``server`` blocks, stopped by the test.

The config builder, TLS files (a private CA made with ``trustme``) and the access-log reader live
in ``bench/nginx_sites.py`` (the benchmarks use the same servers); this wraps them for pytest:
``require_service`` first (skip on a developer's machine without nginx, fail under CI=true), and
the server stopped by its PID when the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nginx_sites import (
    ConnLine,
    NginxServer,
    TlsFiles,
    free_port,
    make_tls,
    read_conn_log,
    start_site,
    tls_directives,
)
from support import require_service

__all__ = [
    "ConnLine",
    "NginxServer",
    "TlsFiles",
    "free_port",
    "make_tls",
    "nginx_site",
    "read_conn_log",
    "tls_directives",
]


@contextmanager
def nginx_site(
    tmp: Path, servers: str, probe: tuple[str, int], http_extra: str = ""
) -> Iterator[NginxServer]:
    """Run nginx with these ``server`` blocks until the block ends (ready once ``probe``
    accepts connections)."""
    require_service("nginx")
    server = start_site(tmp, servers, probe, http_extra)
    try:
        yield server
    finally:
        server.stop()
