"""A list spread over many HTTPS hosts: connections follow the hosts, not the workers, and new
connections resume their host's TLS session. Counted at the server (nginx's log: connection
serial, ``$ssl_session_reused``, the address reached)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from nginx import ConnLine, free_port, make_tls, nginx_site, read_conn_log, tls_directives
from support import run_cli, write_urls

HOSTS = [f"127.0.0.{i}" for i in range(1, 21)]
WORKERS = 20


def _run_over_hosts(
    tmp_path: Path,
    urls: int,
    server_extra: str = "",
    *,
    cacert_option: bool = False,
    processes: str = "1",
) -> list[ConnLine]:
    """nginx with TLS on 20 loopback addresses; poolfetch fetches ``urls`` URLs interleaved
    over them with 20 workers, trusting the private CA through ``REQUESTS_CA_BUNDLE`` or
    ``--cacert``; returns what nginx logged."""
    tls = make_tls(tmp_path / "tls", HOSTS)
    port = free_port()
    listens = " ".join(f"listen {host}:{port} ssl;" for host in HOSTS)
    servers = (
        f"server {{ {listens} {tls_directives(tls)} {server_extra} "
        "location / { return 200 'small body'; } }"
    )
    listed = write_urls(
        tmp_path / "urls.txt",
        [f"https://{HOSTS[i % len(HOSTS)]}:{port}/item/{i}" for i in range(urls)],
    )
    with nginx_site(tmp_path / "nginx", servers, (HOSTS[0], port)) as server:
        result = run_cli(
            "run",
            str(listed),
            "--workers",
            str(WORKERS),
            "--results",
            str(tmp_path / "results.jsonl"),
            "-q",
            "--processes",
            processes,
            *(["--cacert", str(tls.ca)] if cacert_option else []),
            env={} if cacert_option else {"REQUESTS_CA_BUNDLE": str(tls.ca)},
        )
        assert result.code == 0, result.stderr
        lines = read_conn_log(server.access_log)
    assert len(lines) == urls and all(line.status == 200 for line in lines)
    return lines


def _connections(lines: list[ConnLine]) -> dict[int, ConnLine]:
    """Each connection's first request (its ``reused`` says how its handshake went)."""
    first: dict[int, ConnLine] = {}
    for line in sorted(lines, key=lambda line: line.msec):
        first.setdefault(line.connection, line)
    return first


@pytest.mark.parametrize("processes", ["1", "2"])
def test_twenty_hosts_twenty_workers_open_few_connections(tmp_path: Path, processes: str) -> None:
    """With ``--processes 2`` too: the main process names the thread of the child that runs
    each job, so a host's jobs stay on the threads connected to it whichever child they are in."""
    connections = _connections(_run_over_hosts(tmp_path, 2_000, processes=processes))
    assert len(connections) <= 2 * (len(HOSTS) + WORKERS), f"{len(connections)} connections"
    per_host = defaultdict(int)
    for line in connections.values():
        per_host[line.server] += 1
    assert len(per_host) == len(HOSTS)


def test_new_connections_to_a_host_resume_its_tls_session(tmp_path: Path) -> None:
    """The server ends every connection after 5 requests, so each host needs many: after the
    first ones (made before any session existed), every one is resumed."""
    connections = _connections(
        _run_over_hosts(tmp_path, 1_000, "keepalive_requests 5;", cacert_option=True)
    )
    assert len(connections) >= 1_000 // 5
    full = [line for line in connections.values() if not line.reused]
    assert len(full) <= len(HOSTS) + WORKERS, f"{len(full)} full handshakes"
    by_host: dict[str, list[ConnLine]] = defaultdict(list)
    for line in sorted(connections.values(), key=lambda line: line.msec):
        by_host[line.server].append(line)
    for host, lines in by_host.items():
        assert all(line.reused for line in lines[3:]), host
