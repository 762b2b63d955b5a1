"""nginx for any shape of server a test or benchmark needs: TLS, several hosts, limits.

``nginx_server.py`` runs the one fixed benchmark config; this module builds a config from
``server { … }`` blocks the caller writes (limits, TLS, ``proxy_pass`` to a slow upstream …)
around a common preamble: temp paths and logs in one folder, and an access log in the ``conn``
format, which records per request the connection serial number, whether its TLS session was
resumed, and which address it reached, so a caller can count connections, full handshakes and
requests per host from the server's side (``read_conn_log``).

``make_tls`` makes a private CA with ``trustme`` and a server certificate for the given names and
addresses (and a client certificate for ``ssl_verify_client`` locations).

Under root, nginx runs its workers as root too (``user root``), so it can read a pytest
``tmp_path`` (mode 0700) and write its temp files there: these servers only ever listen on
loopback addresses of this machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nginx_server import HTTP_COMMON, NginxServer, free_port, launch

#: ``$ssl_session_reused`` is ``r`` for a resumed TLS session and ``.`` otherwise (and for plain
#: HTTP); the URI is last because it is the only field that could hold a space-free oddity.
CONN_LOG_FORMAT = (
    "log_format conn '$connection $msec $status $request_time $ssl_session_reused "
    "$remote_addr $server_addr:$server_port $request_method $request_uri';"
)

_PREAMBLE = """\
{user}worker_processes 1;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type text/plain;
    {log_format}
    access_log {tmp}/access.log conn;
{common}
    tcp_nodelay on;
{http_extra}
{servers}
}}
"""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a private CA, a server certificate for some names, and a client cert."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class ConnLine:
    """One request in the ``conn`` access log."""

    connection: int
    msec: float
    status: int
    request_time: float
    reused: bool
    remote_addr: str
    server: str
    method: str
    uri: str


def make_tls(folder: Path, names: list[str]) -> TlsFiles:
    """A private CA in ``folder`` and a server certificate for ``names`` (host names or IP
    addresses, the first is the subject), plus a client certificate signed by the same CA."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*names)
    client = ca.issue_cert("poolfetch-test-client@example.org")
    files = TlsFiles(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    client.private_key_pem.write_to_path(str(files.client_key))
    with files.client_cert.open("wb") as out:
        for blob in client.cert_chain_pems:
            out.write(blob.bytes())
    return files


def tls_directives(tls: TlsFiles) -> str:
    """The ``ssl_*`` lines of a TLS ``server`` block (session cache on, as real sites have)."""
    return (
        f"ssl_certificate {tls.cert}; ssl_certificate_key {tls.key}; "
        "ssl_session_cache shared:poolfetch:1m; ssl_session_timeout 5m;"
    )


def write_config(tmp: Path, servers: str, http_extra: str = "") -> Path:
    """An nginx config in ``tmp`` with the given ``server`` blocks (and other ``http`` lines)."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        _PREAMBLE.format(
            user=user,
            tmp=tmp,
            common=HTTP_COMMON.format(tmp=tmp),
            log_format=CONN_LOG_FORMAT,
            http_extra=http_extra,
            servers=servers,
        ),
        encoding="utf-8",
    )
    return conf


def start_site(
    tmp: Path, servers: str, probe: tuple[str, int], http_extra: str = ""
) -> NginxServer:
    """Start nginx with these ``server`` blocks; ready once ``probe`` (host, port) accepts."""
    return launch(tmp, write_config(tmp, servers, http_extra), probe)


def read_conn_log(path: Path) -> list[ConnLine]:
    """Every request nginx has logged so far in the ``conn`` format."""
    lines: list[ConnLine] = []
    if not path.exists():
        return lines
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = raw.split(" ", 8)
        if len(parts) != 9:
            continue
        lines.append(
            ConnLine(
                connection=int(parts[0]),
                msec=float(parts[1]),
                status=int(parts[2]),
                request_time=float(parts[3]),
                reused=parts[4] == "r",
                remote_addr=parts[5],
                server=parts[6],
                method=parts[7],
                uri=parts[8],
            )
        )
    return lines


__all__ = [
    "ConnLine",
    "NginxServer",
    "TlsFiles",
    "free_port",
    "make_tls",
    "read_conn_log",
    "start_site",
    "tls_directives",
    "write_config",
]
