"""TLS, proxy and auth options: checked up front, and combined with the environment per host
with the options winning (as curl's do)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from poolfetch.core.access import AccessOptions, parse_user
from poolfetch.core.envcache import EnvironmentCache
from poolfetch.core.errors import ConfigError

ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*ENV_NAMES, "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    leaf = ca.issue_cert("client@example.org")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "cert.pem",
        "key": folder / "key.pem",
        "both": folder / "both.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    return {name: str(path) for name, path in files.items()}


def test_valid_files_are_accepted(pems: dict[str, str]) -> None:
    options = AccessOptions(cacert=pems["ca"], cert=pems["cert"], key=pems["key"])
    assert options.client_cert == (pems["cert"], pems["key"])
    assert AccessOptions(cert=pems["both"]).client_cert == pems["both"]


@pytest.mark.parametrize("option", ["cacert", "cert", "key"])
def test_an_unreadable_file_is_a_config_error_naming_the_option(
    pems: dict[str, str], tmp_path: Path, option: str
) -> None:
    missing = str(tmp_path / "missing.pem")
    given = {"cacert": None, "cert": pems["cert"], "key": pems["key"]}
    given[option] = missing
    if option == "cacert":
        given = {"cacert": missing}
    with pytest.raises(ConfigError, match=f"cannot read --{option} .*missing.pem"):
        AccessOptions(**given)


def test_files_that_are_not_certificates_are_refused(pems: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="--cacert"):
        AccessOptions(cacert=str(junk))
    with pytest.raises(ConfigError, match="--cert"):
        AccessOptions(cert=str(junk))
    with pytest.raises(ConfigError, match="--cert"):
        AccessOptions(cert=pems["cert"])  # a certificate without its key
    with pytest.raises(ConfigError, match="--key needs --cert"):
        AccessOptions(key=pems["key"])


def test_an_encrypted_key_is_refused_instead_of_prompting(
    pems: dict[str, str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(pems["key"]).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    with pytest.raises(ConfigError, match="encrypted"):
        AccessOptions(cert=pems["cert"], key=str(encrypted))


@pytest.mark.parametrize("proxy", ["ftp://proxy:21", "http://", "http://proxy:99999"])
def test_a_proxy_that_is_no_http_url_is_refused(proxy: str) -> None:
    with pytest.raises(ConfigError, match="--proxy"):
        AccessOptions(proxy=proxy)


def test_a_proxy_without_scheme_is_http_as_in_curl() -> None:
    assert AccessOptions(proxy="127.0.0.1:3128").proxy == "http://127.0.0.1:3128"


def test_user_needs_a_colon_and_keeps_colons_in_the_password() -> None:
    assert parse_user("alice:pa:ss") == ("alice", "pa:ss")
    assert parse_user("alice:") == ("alice", "")
    for bad in ("alice", ":pw"):
        with pytest.raises(ConfigError, match="USER:PASSWORD"):
            parse_user(bad)


def test_the_password_is_never_in_repr_and_is_a_secret() -> None:
    options = AccessOptions(user=("alice", "s3cret"), proxy="http://bob:pr0xy@127.0.0.1:3128")
    assert "s3cret" not in repr(options)
    assert "s3cret" in options.secrets and "pr0xy" in options.secrets
    assert "YWxpY2U6czNjcmV0" in options.secrets  # base64 of alice:s3cret, as sent


def test_proxy_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy:1")
    env_only = EnvironmentCache().settings_for("http://origin.test/a")
    assert env_only.proxies["http"] == "http://env-proxy:1"
    cache = EnvironmentCache(AccessOptions(proxy="http://option-proxy:2"))
    settings = cache.settings_for("https://origin.test/a")
    assert settings.proxies == {"http": "http://option-proxy:2", "https": "http://option-proxy:2"}


def test_no_proxy_still_bypasses_the_proxy_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "internal.test,127.0.0.2")
    cache = EnvironmentCache(AccessOptions(proxy="http://option-proxy:2"))
    assert cache.settings_for("http://internal.test/x").proxies == {}
    assert cache.settings_for("http://127.0.0.2:8080/x").proxies == {}
    assert cache.settings_for("http://other.test/x").proxies["http"] == "http://option-proxy:2"


def test_insecure_and_cacert_win_over_the_ca_bundle_variables(
    monkeypatch: pytest.MonkeyPatch, pems: dict[str, str]
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle.pem")
    assert EnvironmentCache().settings_for("https://h.test/").verify == "/env/bundle.pem"
    cacert = EnvironmentCache(AccessOptions(cacert=pems["ca"]))
    assert cacert.settings_for("https://h.test/").verify == pems["ca"]
    insecure = EnvironmentCache(AccessOptions(insecure=True, cacert=pems["ca"]))
    assert insecure.settings_for("https://h.test/").verify is False


def test_the_client_certificate_goes_to_every_host(pems: dict[str, str]) -> None:
    cache = EnvironmentCache(AccessOptions(cert=pems["cert"], key=pems["key"]))
    for url in ("https://a.test/", "https://b.test:8443/x"):
        assert cache.settings_for(url).cert == (pems["cert"], pems["key"])
    assert EnvironmentCache().settings_for("https://a.test/").cert is None
    assert os.path.exists(pems["cert"])
