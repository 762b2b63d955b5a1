"""How requests reach a host: TLS trust, client certificate, proxy and basic-auth options.

``AccessOptions`` holds ``-k``, ``--cacert``, ``--cert``/``--key``, ``-x`` and ``-u`` as given
on the command line; ``EnvironmentCache`` combines them with the environment per host, the
options winning as they do in curl. The files are checked when the options are built (a file
that cannot be read, or is not a certificate or key, is a usage error before anything is sent)
so that no URL of a run fails one by one for a mistake in an option.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from poolfetch.core.errors import ConfigError

#: Proxy schemes requests speaks without extra packages (SOCKS needs PySocks).
PROXY_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class AccessOptions:
    """TLS, proxy and authentication options of a run (``None``/False: not given).

    File paths are kept as given (the CLI makes them absolute so that shared-run workers in
    other folders find them). ``user`` is a credential: it is left out of ``repr`` and is only
    ever sent to the host of an input URL (see ``Transport``).
    """

    insecure: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    proxy: str | None = None
    user: tuple[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ConfigError("--key needs --cert (the certificate the key belongs to)")
        if self.cacert is not None:
            _check_cacert(self.cacert)
        if self.cert is not None:
            _check_client_cert(self.cert, self.key)
        if self.proxy is not None:
            _check_proxy(self.proxy)
            object.__setattr__(self, "proxy", proxy_url(self.proxy))

    @property
    def client_cert(self) -> str | tuple[str, str] | None:
        """What ``requests`` takes as ``cert``: one PEM file, or certificate and key files."""
        if self.cert is None:
            return None
        return self.cert if self.key is None else (self.cert, self.key)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be shown (the ``-u`` password, a proxy URL's password)."""
        found: list[str] = []
        if self.user is not None and self.user[1]:
            found.append(self.user[1])
            pair = f"{self.user[0]}:{self.user[1]}".encode("latin-1", "replace")
            found.append(base64.b64encode(pair).decode())  # as the Authorization header has it
        if self.proxy is not None:
            password = urlsplit(self.proxy).password
            if password:
                found.append(password)
        return tuple(found)


def parse_user(value: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may contain colons; it may be empty, not missing)."""
    user, colon, password = value.partition(":")
    if not colon or not user:
        raise ConfigError("--user must be USER:PASSWORD (poolfetch never prompts for a password)")
    return user, password


def _readable(option: str, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(f"cannot read {option} {path}: {exc.strerror or exc}") from exc


def _check_cacert(path: str) -> None:
    _readable("--cacert", path)
    if os.path.isdir(path):
        raise ConfigError(f"--cacert {path} is a folder, not a file of CA certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"--cacert {path} holds no usable PEM certificate ({exc})") from exc


def _no_passphrase() -> str:
    """Password callback for ``load_cert_chain``: a worker thread must never prompt."""
    raise ConfigError("is encrypted (poolfetch needs a key without a passphrase)")


def _check_client_cert(cert: str, key: str | None) -> None:
    _readable("--cert", cert)
    if key is not None:
        _readable("--key", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    named = f"--cert {cert}" + (f" with --key {key}" if key is not None else "")
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ConfigError as exc:
        raise ConfigError(f"the key of {named} {exc}") from exc
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{named}: not a PEM certificate and its private key ({exc})"
            if key is not None
            else f"{named}: not a PEM certificate and private key (give the key with --key) ({exc})"
        ) from exc


def _check_proxy(url: str) -> None:
    try:
        parts = urlsplit(proxy_url(url))
        port_ok = parts.port is None or parts.port > 0  # .port raises for one out of range
    except ValueError as exc:
        raise ConfigError(f"--proxy is not a URL: {exc}") from exc
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname or not port_ok:
        raise ConfigError("--proxy must be an http:// or https:// URL such as http://HOST:PORT")


def proxy_url(url: str) -> str:
    """The proxy URL with a scheme (curl takes ``HOST:PORT`` as an HTTP proxy)."""
    return url if "://" in url else f"http://{url}"
