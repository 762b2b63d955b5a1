"""Environment-derived request settings, resolved once per host instead of once per request.

``requests`` with ``trust_env=True`` reads the proxy variables, evaluates ``NO_PROXY``, stats
``~/.netrc`` and reads ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` on *every* request (about a
sixth of its CPU per request, measured). The sessions here run with ``trust_env=False`` and get
the same answers from this cache: same functions, same precedence, asked once per
scheme + host + port. The environment does not change during a run, so nothing is lost.

The run's ``AccessOptions`` win over the environment, as curl's options do: ``-x`` replaces the
proxy variables (``NO_PROXY`` still decides which hosts bypass it), ``-k`` and ``--cacert``
replace the CA bundle variables.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from requests.utils import get_environ_proxies, get_netrc_auth, should_bypass_proxies

from poolfetch.core.access import AccessOptions

MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """What ``requests`` would have taken from the environment (and the options) for one host."""

    proxies: dict[str, str]
    verify: bool | str
    auth: tuple[str, str] | None
    cert: str | tuple[str, str] | None = None


class EnvironmentCache:
    """Per-origin ``EnvSettings``; thread-safe, bounded (cleared when full).

    Keyed by the URL's text up to its path (no parsing on the hot path); a query or fragment
    right after the host only makes an extra key.
    """

    def __init__(self, access: AccessOptions | None = None) -> None:
        self._access = access or AccessOptions()
        self._lock = threading.Lock()
        self._entries: dict[str, EnvSettings] = {}
        self._verify: bool | str
        if self._access.insecure:
            self._verify = False
        elif self._access.cacert is not None:
            self._verify = self._access.cacert
        else:
            self._verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )

    def settings_for(self, url: str) -> EnvSettings:
        end = url.find("/", url.find("//") + 2)
        key = url if end < 0 else url[:end]  # scheme://[userinfo@]host[:port]
        settings = self._entries.get(key)
        if settings is None:
            settings = EnvSettings(
                proxies=self._proxies(url),
                verify=self._verify,
                auth=get_netrc_auth(url),
                cert=self._access.client_cert,
            )
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = settings
        return settings

    def _proxies(self, url: str) -> dict[str, str]:
        proxy = self._access.proxy
        if proxy is None:
            return get_environ_proxies(url)
        if should_bypass_proxies(url, no_proxy=None):
            return {}
        return {"http": proxy, "https": proxy}
