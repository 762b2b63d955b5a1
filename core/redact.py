"""What counts as a credential, and how it is hidden from records, logs and summaries."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REDACTED = "***"
#: ``//user:password@`` anywhere in a text: the password is group 2's part.
_USERINFO = re.compile(r"(//[^/@\s:]*:)[^/@\s]*@")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS = ("token", "key", "secret", "auth")


def is_credential_header(name: str) -> bool:
    """True for Authorization, Proxy-Authorization, Cookie and any header naming a token,
    key, secret or auth (``X-Api-Key``, ``X-Auth-Token`` …)."""
    lowered = name.strip().lower()
    return lowered in _CREDENTIAL_HEADERS or any(word in lowered for word in _CREDENTIAL_WORDS)


def redact_url(url: str) -> str:
    """The URL with the password of its user-info replaced by ``***``."""
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:{REDACTED}@{hostport}").geturl()


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every URL password and every given secret value replaced (for log lines
    and error messages that quote URLs, such as a redirect's Location)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)
