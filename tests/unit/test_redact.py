"""Redaction of URL passwords: parsed URLs, URLs urlsplit rejects, URLs inside URLs, Redis."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolfetch.core.errors import CoordinationError
from poolfetch.core.redact import REDACTED, redact_text, redact_url
from poolfetch.core.redis.keys import connect


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:sekret@h/x", "http://u:***@h/x"),
        ("http://u:se@kret@h/x?q=1", "http://u:***@h/x?q=1"),
        ("http://:sekret@h/", "http://:***@h/"),
        ("http://u@h/", "http://u@h/"),
        ("http://h/a@b:c", "http://h/a@b:c"),
        ("http://h/", "http://h/"),
    ],
)
def test_redact_url_masks_the_password_of_a_parsed_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:sekret@[::1/", "http://u:***@[::1/"),  # Invalid IPv6 URL
        ("http://u:sekret@ex\uff03ample/", "http://u:***@ex\uff03ample/"),  # NFKC check
        ("http://u:sek ret@[::1/p", "http://u:***@[::1/p"),
        ("http://u:se@kret@[::1/x", "http://u:***@[::1/x"),
        ("http://u@[::1/", "http://u@[::1/"),  # no password: nothing to hide
        ("http://[::1/@x", "http://[::1/@x"),  # '@' outside the authority
    ],
)
def test_redact_url_masks_the_password_when_urlsplit_fails(url, shown):
    with pytest.raises(ValueError):  # the case this is about
        urlsplit(url).password  # noqa: B018
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/?next=http://user:pw@other/", "http://h/?next=http://user:***@other/"),
        ("http://a:b@h/?n=https://c:d@o/#f", "http://a:***@h/?n=https://c:***@o/#f"),
        ("http://u:sekret@[::1/?n=http://c:d@o/", "http://u:***@[::1/?n=http://c:***@o/"),
    ],
)
def test_redact_url_masks_passwords_of_urls_inside_it_as_logs_do(url, shown):
    assert redact_url(url) == shown
    assert redact_text(url) == redact_text(shown)


@given(
    st.text(alphabet="abc:@/[]?#% \uff03", max_size=12),
    st.text(alphabet="abc:@/[]?#% \uff03", max_size=12),
)
@settings(max_examples=300, deadline=None)
def test_redact_url_never_shows_a_password(before, after):
    url = f"http://user:Pw9Secret@{before}{after}"
    assert "Pw9Secret" not in redact_url(url)
    assert redact_url(redact_url(url)) == redact_url(url)


def test_redis_connection_error_does_not_show_the_password():
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CoordinationError) as caught:
        connect(f"redis://user:Pw9Secret@127.0.0.1:{port}/0")
    message = str(caught.value)
    assert "Pw9Secret" not in message
    assert f"redis://user:{REDACTED}@127.0.0.1:{port}/0" in message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET /x?api_key=K1&page=2 HTTP/1.1", "GET /x?api_key=***&page=2 HTTP/1.1"),
        ("http://h/?a=1&access_token=T1#f", "http://h/?a=1&access_token=***#f"),
        ("http://h/?X-Amz-Signature=S1&sig=S2", "http://h/?X-Amz-Signature=***&sig=***"),
        ("http://h/?Password=P1;auth=A1", "http://h/?Password=***;auth=***"),
        ("http://h/?client_secret=C1 and more", "http://h/?client_secret=*** and more"),
        ("http://h/?sort=key&token=T1", "http://h/?sort=key&token=***"),  # names only
    ],
)
def test_redact_text_masks_secret_query_parameters(text, shown):
    assert redact_text(text) == shown
    assert redact_text(shown) == shown
