"""TLS, proxies and authentication through the real CLI against real parts: nginx with a
private CA made by the test (trustme) and a client-certificate location, Debian's tinyproxy as
the forward proxy (its log shows what went through it), the practice server for basic auth."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from nginx import (
    NginxServer,
    TlsFiles,
    free_port,
    make_tls,
    nginx_site,
    read_conn_log,
    tls_directives,
)
from support import CliResult, run_cli, write_urls
from tinyproxy import tinyproxy

from poolfetch.core.practice import PracticeServer

#: The machine's CA bundle variables off, so "default verification" means the system store.
NO_BUNDLE = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


@dataclass(frozen=True)
class TlsSite:
    nginx: NginxServer
    tls: TlsFiles
    port: int
    other_ca: Path  # a CA that did not sign the server's certificate

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def served(self) -> list[str]:
        return [line.uri for line in read_conn_log(self.nginx.access_log)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSite]:
    folder = tmp_path_factory.mktemp("tls-site")
    tls = make_tls(folder / "pki", ["127.0.0.1"])
    other_ca = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    port = free_port()
    servers = f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        {tls_directives(tls)}
        ssl_client_certificate {tls.ca};
        ssl_verify_client optional;
        location = /hello {{ return 200 "hello over TLS\\n"; }}
        location = /client {{
            if ($ssl_client_verify != SUCCESS) {{ return 403 "client certificate required\\n"; }}
            return 200 "hello, certified client\\n";
        }}
    }}
    """
    with nginx_site(folder / "nginx", servers, ("127.0.0.1", port)) as nginx:
        yield TlsSite(nginx, tls, port, other_ca)


def _one(result: CliResult) -> dict[str, object]:
    assert "Traceback" not in result.stderr, result.stderr
    [record] = result.records
    return record


def test_default_verification_fails_at_the_first_attempt_saying_certificate(
    site: TlsSite, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [site.url("/hello")])
    result = run_cli("run", str(urls), "--backoff", "0.1", env=NO_BUNDLE)
    record = _one(result)
    assert result.code == 1
    assert record["ok"] is False and record["attempts"] == 1, record
    error = str(record["error"])
    assert "certificate" in error and f"127.0.0.1:{site.port}" in error, error
    assert "/hello" not in site.served()  # the handshake failed: no request reached nginx


def test_a_host_name_the_certificate_does_not_name_fails_at_once(
    site: TlsSite, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [site.url("/hello", host="localhost")])
    result = run_cli("run", str(urls), "--cacert", str(site.tls.ca), "--backoff", "0.1")
    record = _one(result)
    assert record["attempts"] == 1
    assert "certificate" in str(record["error"]) and "localhost" in str(record["error"])


@pytest.mark.parametrize("trust", ["cacert", "insecure"])
def test_cacert_or_insecure_make_it_pass_over_the_environment(
    site: TlsSite, tmp_path: Path, trust: str
) -> None:
    urls = write_urls(tmp_path / "u.txt", [site.url("/hello")])
    args = ["--cacert", str(site.tls.ca)] if trust == "cacert" else ["-k"]
    # the environment names a CA that did not sign the server's certificate: the option wins
    env = {"REQUESTS_CA_BUNDLE": str(site.other_ca)}
    result = run_cli("run", str(urls), "-o", "out", *args, env=env, cwd=tmp_path)
    record = _one(result)
    assert result.code == 0, record
    assert (tmp_path / str(record["path"])).read_bytes() == b"hello over TLS\n"


def test_a_client_certificate_location_passes_with_cert_and_key_only(
    site: TlsSite, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [site.url("/client")])
    trust = ("--cacert", str(site.tls.ca))
    without = _one(run_cli("run", str(urls), *trust))
    assert without["ok"] is False and without["status"] == 403
    cert = ("--cert", str(site.tls.client_cert), "--key", str(site.tls.client_key))
    result = run_cli("run", str(urls), *trust, *cert)
    record = _one(result)
    assert result.code == 0 and record["status"] == 200, record


def test_unreadable_tls_files_are_a_usage_error_before_any_request(
    site: TlsSite, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [site.url("/hello?never")])
    missing = str(tmp_path / "missing.pem")
    for option, args in (
        ("--cacert", ["--cacert", missing]),
        ("--cert", ["--cert", missing, "--key", str(site.tls.client_key)]),
        ("--key", ["--cert", str(site.tls.client_cert), "--key", missing]),
    ):
        result = run_cli("run", str(urls), *args)
        assert result.code == 2, result.stderr
        assert f"cannot read {option} {missing}" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert "/hello?never" not in site.served()


def test_tls_spoken_to_a_plain_http_port_fails_at_once(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"https://127.0.0.1:{server.port}/fixed"])
    record = _one(run_cli("run", str(urls), "--backoff", "0.1"))
    assert record["attempts"] == 1, record
    assert "WRONG_VERSION_NUMBER" in str(record["error"]) and "plain-HTTP" in str(record["error"])


def test_proxy_option_carries_http_and_https_through_tinyproxy(
    site: TlsSite, second_server: PracticeServer, tmp_path: Path
) -> None:
    plain = f"{second_server.url}/fixed?via=proxy"
    urls = write_urls(tmp_path / "u.txt", [plain, site.url("/hello?via=proxy")])
    dead = f"http://127.0.0.1:{free_port()}"  # the environment's proxy: the option wins
    with tinyproxy(tmp_path / "proxy") as proxy:
        result = run_cli(
            "run", str(urls), "-x", proxy.url, "--cacert", str(site.tls.ca),
            env={"HTTP_PROXY": dead, "HTTPS_PROXY": dead},
        )  # fmt: skip
        seen = proxy.requests()
    assert result.code == 0, result.stdout + result.stderr
    assert f"GET {plain} HTTP/1.1" in seen, seen
    assert f"CONNECT 127.0.0.1:{site.port} HTTP/1.0" in seen, seen  # urllib3 tunnels in 1.0
    assert [e.path for e in second_server.requests()] == ["/fixed?via=proxy"]


def test_no_proxy_still_bypasses_the_proxy_option(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    bypassed = f"{second_server.url}/fixed?direct"
    proxied = f"{server.url}/fixed?proxied"
    urls = write_urls(tmp_path / "u.txt", [bypassed, proxied])
    with tinyproxy(tmp_path / "proxy") as proxy:
        result = run_cli("run", str(urls), "-x", proxy.url, env={"NO_PROXY": "127.0.0.2"})
        seen = proxy.requests()
    assert result.code == 0, result.stdout + result.stderr
    assert seen == [f"GET {proxied} HTTP/1.1"]
    assert [e.path for e in second_server.requests()] == ["/fixed?direct"]


def test_user_goes_to_the_host_and_not_to_a_redirect_target_on_another_host(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    away = f"{server.url}/redirect-to?url={quote(f'{second_server.url}/headers?away')}"
    same = f"{server.url}/redirect-to?url={quote(f'{server.url}/headers?same')}"
    urls = write_urls(tmp_path / "u.txt", [away, same])
    summary = tmp_path / "summary.json"
    home = tmp_path / "home"  # ~/.netrc: -u wins for its host; the other host gets its own entry
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(
        "machine 127.0.0.1 login carol password n1\nmachine 127.0.0.2 login bob password n2\n"
    )
    netrc.chmod(0o600)
    result = run_cli(
        "run", str(urls), "-u", "alice:s3cret:x", "-vv", "--summary-json", str(summary),
        env={"HOME": str(home)},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    sent = "Basic " + base64.b64encode(b"alice:s3cret:x").decode()
    first_hops = [e for e in server.requests() if e.path.startswith("/redirect-to")]
    assert [e.headers.get("Authorization") for e in first_hops] == [sent, sent]
    [landing] = [e for e in server.requests() if e.path == "/headers?same"]
    assert landing.headers.get("Authorization") == sent  # same host: it follows, as in curl
    [elsewhere] = second_server.requests()
    assert elsewhere.headers.get("Authorization") == "Basic " + base64.b64encode(b"bob:n2").decode()
    shown = result.stdout + result.stderr + summary.read_text()
    assert "s3cret" not in shown and sent.split()[1] not in shown
    assert json.loads(summary.read_text())["ok"] == 2
