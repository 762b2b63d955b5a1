"""What users rely on from the environment still works although the sessions run with
``trust_env=False`` (it is resolved once per host instead): proxy variables, NO_PROXY,
~/.netrc and REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_proxy_from_the_environment_is_used(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "u.txt", ["http://origin.invalid/fixed?via=proxy"])
    result = run_cli("run", str(urls), "--retries", "0", env={"HTTP_PROXY": server.url})
    paths = [entry.path for entry in server.requests()]
    assert paths == ["http://origin.invalid/fixed?via=proxy"]  # absolute form: a proxy request
    assert result.code == 0 and result.records[0]["ok"]  # the "proxy" answered it


def test_no_proxy_bypasses_the_proxy(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/fixed"])
    dead_proxy = f"http://127.0.0.1:{_closed_port()}"
    with_proxy = run_cli("run", str(urls), "--retries", "0", env={"HTTP_PROXY": dead_proxy})
    assert with_proxy.code == 1 and not server.requests()  # the proxy was really tried
    bypass = run_cli(
        "run", str(urls), env={"HTTP_PROXY": dead_proxy, "NO_PROXY": "127.0.0.1,localhost"}
    )
    assert bypass.code == 0, bypass.stdout
    assert len(server.requests()) == 1


def test_netrc_credentials_are_sent(server: PracticeServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    os.chmod(netrc, 0o600)
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/headers"])
    result = run_cli("run", str(urls), env={"HOME": str(home)})
    assert result.code == 0
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert server.requests()[0].headers.get("Authorization") == expected
    assert "s3cret" not in result.stdout + result.stderr


def test_requests_ca_bundle_is_honoured(tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"https://127.0.0.1:{_closed_port()}/"])
    missing = tmp_path / "no-such-bundle.pem"
    result = run_cli(
        "run",
        str(urls),
        "--retries",
        "0",
        env={"REQUESTS_CA_BUNDLE": str(missing), "CURL_CA_BUNDLE": ""},
    )
    assert result.code == 1
    error = result.records[0]["error"]
    assert "CA certificate bundle" in error or str(missing) in error, error
