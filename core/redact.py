"""What counts as a credential, and how it is hidden from records, logs and summaries.

Records keep a URL as given but for its password (``redact_url``); everything people read
(logs, the display, the summary, error messages) also hides the values of query parameters
named like credentials (``?api_key=…``, ``&X-Amz-Signature=…``: ``redact_text``).
"""

from __future__ import annotations

import re

REDACTED = "***"
#: ``//user:password@`` anywhere in a text: the password is group 2's part.
_USERINFO = re.compile(r"(//[^/@\s:]*:)[^/@\s]*@")
#: The authority of a URL: what follows the first ``//`` up to a ``/``, ``?`` or ``#``.
_AUTHORITY = re.compile(r"//([^/?#]*)")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS = ("token", "key", "secret", "auth")
#: A query parameter whose name holds one of these words is a credential in logs, the live
#: display, the summary and error messages (its value masked); records keep it.
_QUERY_SECRET = re.compile(
    r"([?&;][^=&#;\s]*(?:token|key|secret|auth|password|sig)[^=&#;\s]*=)[^&#;\s\"<>]*",
    re.IGNORECASE,
)


def is_credential_header(name: str) -> bool:
    """True for Authorization, Proxy-Authorization, Cookie and any header naming a token,
    key, secret or auth (``X-Api-Key``, ``X-Auth-Token`` …)."""
    lowered = name.strip().lower()
    return lowered in _CREDENTIAL_HEADERS or any(word in lowered for word in _CREDENTIAL_WORDS)


def redact_url(url: str) -> str:
    """The URL with the password of its user-info replaced by ``***``, and so are those of
    URLs inside it (``?next=http://user:pw@host/``), as ``redact_text`` does in logs.

    Done on the text, the way ``urlsplit`` finds the user-info (the authority after the first
    ``//`` up to ``/``, ``?`` or ``#``; the user-info up to its last ``@``; the password after
    its first ``:``), so that a URL ``urlsplit`` rejects (a bad input line) is masked too, the
    rest of the URL is left as it was, and redacting twice changes nothing.
    """
    if "@" not in url:
        return url
    found = _AUTHORITY.search(url)
    if found is not None:
        userinfo, at, _ = found.group(1).rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if at and colon:
            rest = found.start(1) + len(userinfo)  # the '@' that ends the user-info
            url = f"{url[: found.start(1)]}{user}:{REDACTED}{url[rest:]}"
    return _mask_passwords(url)


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every URL password, every secret query parameter's value and every given
    secret value replaced (for log lines, the display, the summary and error messages that
    quote URLs, such as a redirect's Location)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\g<1>{REDACTED}", text)
    return _mask_passwords(text)


def _mask_passwords(text: str) -> str:
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)
