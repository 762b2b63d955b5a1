"""parse_quota: every dialect servers announce quotas in, from real examples, and garbage."""

from __future__ import annotations

import pytest
from requests.structures import CaseInsensitiveDict

from poolfetch.core.ratelimit_headers import (
    DRAFT,
    IETF,
    SHOPIFY,
    X_RATELIMIT,
    Quota,
    parse_quota,
)
from poolfetch.core.sfv import Item, StructuredFieldError, parse_dictionary, parse_list

NOW = 1_764_590_400.0  # 2025-12-01T12:00:00Z, the wall clock of every case below


def quota(**headers: str) -> Quota | None:
    return parse_quota(
        CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()}), NOW
    )


def q(fields: dict[str, str]) -> Quota | None:
    return parse_quota(CaseInsensitiveDict(fields), NOW)


# --- real examples ------------------------------------------------------------------------------

REAL = [
    pytest.param(
        # GitHub REST: reset as a Unix time, plus used/resource that carry nothing more
        {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(NOW) + 3600),
            "x-ratelimit-resource": "core",
        },
        Quota(X_RATELIMIT, 4999, 3600.0, 5000),
        id="github",
    ),
    pytest.param(
        # X (Twitter) API v2: the same fields spelled x-rate-limit-*, reset a Unix time
        {
            "x-rate-limit-limit": "900",
            "x-rate-limit-remaining": "847",
            "x-rate-limit-reset": str(int(NOW) + 712),
        },
        Quota(X_RATELIMIT, 847, 712.0, 900),
        id="x-twitter",
    ),
    pytest.param(
        # Discord: fractional Unix-time reset and a fractional Reset-After, which wins
        {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "1",
            "X-RateLimit-Reset": f"{NOW + 1.25:.3f}",
            "X-RateLimit-Reset-After": "1.234",
            "X-RateLimit-Bucket": "abcd1234",
        },
        Quota(X_RATELIMIT, 1, 1.234, 5, exact=True),
        id="discord",
    ),
    pytest.param(
        # Discord without Reset-After: the Unix time with milliseconds
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{NOW + 2.5:.3f}"},
        Quota(X_RATELIMIT, 0, 2.5, exact=True),
        id="discord-reset-only",
    ),
    pytest.param(
        # Reddit: a decimal remaining, reset in seconds, no limit field
        {"x-ratelimit-used": "4", "x-ratelimit-remaining": "596.0", "x-ratelimit-reset": "412"},
        Quota(X_RATELIMIT, 596, 412.0),
        id="reddit",
    ),
    pytest.param(
        # a framework (express-rate-limit legacy headers): reset as seconds
        {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "87", "X-RateLimit-Reset": "42"},
        Quota(X_RATELIMIT, 87, 42.0, 100),
        id="seconds-reset",
    ),
    pytest.param(
        # a reset given as a Unix time in milliseconds
        {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(int(NOW * 1000) + 4000)},
        Quota(X_RATELIMIT, 3, 4.0),
        id="unix-milliseconds",
    ),
    pytest.param(
        # a Unix-time reset already past (clock skew): the quota resets now
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)},
        Quota(X_RATELIMIT, 0, 0.0),
        id="reset-in-the-past",
    ),
    pytest.param(
        {"X-Shopify-Shop-Api-Call-Limit": "32/40"},
        Quota(SHOPIFY, 8, None, 40),
        id="shopify",
    ),
    pytest.param(
        # IETF draft (-08 on): the policy the RateLimit item names
        {"RateLimit": '"default";r=50;t=30', "RateLimit-Policy": '"default";q=100;w=60'},
        Quota(IETF, 50, 30.0, 100, 60.0, "default"),
        id="ietf",
    ),
    pytest.param(
        # IETF draft: several policies, the named one is used
        {
            "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
            "RateLimit": '"daily";r=999;t=3600',
        },
        Quota(IETF, 999, 3600.0, 1000, 86400.0, "daily"),
        id="ietf-named-policy",
    ),
    pytest.param(
        # the RateLimit item names no policy given: the most restrictive one
        {
            "RateLimit-Policy": '"minute";q=100;w=60, "day";q=1000;w=86400',
            "RateLimit": '"other";r=10;t=5',
        },
        Quota(IETF, 10, 5.0, 1000, 86400.0, "other"),
        id="ietf-unnamed-policy",
    ),
    pytest.param(
        # two RateLimit items: the one that allows the slower pace
        {
            "RateLimit": '"permin";r=20;t=23, "perhr";r=399;t=2402',
            "RateLimit-Policy": '"permin";q=50;w=60, "perhr";q=1000;w=3600',
        },
        Quota(IETF, 399, 2402.0, 1000, 3600.0, "perhr"),
        id="ietf-two-windows",
    ),
    pytest.param(
        # the draft's warning: r/t says 1000/s, the policy 10/s; q/w is kept for pacing
        {
            "RateLimit-Policy": '"somepolicy";q=10000;w=1000',
            "RateLimit": '"somepolicy";r=10000;t=10',
        },
        Quota(IETF, 10000, 10.0, 10000, 1000.0, "somepolicy"),
        id="ietf-overstated",
    ),
    pytest.param(
        # draft-07: token names, the quota spelled l
        {"RateLimit-Policy": "default;l=100;w=10", "RateLimit": "default;r=50;t=5"},
        Quota(IETF, 50, 5.0, 100, 10.0, "default"),
        id="ietf-draft-07",
    ),
    pytest.param(
        # the draft's example of a throttled answer: none left, 5 s to go
        {"RateLimit": '"default";r=0;t=5'},
        Quota(IETF, 0, 5.0, policy="default"),
        id="ietf-spent",
    ),
    pytest.param(
        # draft-03's dictionary form
        {"RateLimit": "limit=100, remaining=50, reset=5"},
        Quota(IETF, 50, 5.0, 100),
        id="ietf-dictionary",
    ),
    pytest.param(
        # earlier drafts: three fields, the limit with its window policy
        {"RateLimit-Limit": "100, 100;w=60", "RateLimit-Remaining": "99", "RateLimit-Reset": "50"},
        Quota(DRAFT, 99, 50.0, 100, 60.0),
        id="draft-fields",
    ),
    pytest.param(
        {
            "RateLimit-Limit": "10, 10;w=1, 50;w=60, 1000;w=3600",
            "RateLimit-Remaining": "9",
            "RateLimit-Reset": "1",
        },
        Quota(DRAFT, 9, 1.0, 10, 1.0),
        id="draft-several-policies",
    ),
    pytest.param(
        # the IETF field wins over the others a server also sends
        {
            "RateLimit": '"default";r=23;t=37',
            "RateLimit-Policy": '"default";q=100;w=60',
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "24",
            "X-RateLimit-Reset": "37",
        },
        Quota(IETF, 23, 37.0, 100, 60.0, "default"),
        id="ietf-before-x",
    ),
    pytest.param(
        # malformed IETF field: the legacy fields beside it still count
        {"RateLimit": '"default";r=abc', "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "9"},
        Quota(X_RATELIMIT, 4, 9.0),
        id="malformed-ietf-falls-back",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), REAL)
def test_real_announcements(headers: dict[str, str], expected: Quota) -> None:
    assert q(headers) == expected


def test_field_names_ignore_case() -> None:
    assert quota(X_RATELIMIT_REMAINING="1", X_RATELIMIT_RESET="2") == Quota(X_RATELIMIT, 1, 2.0)


def test_nothing_announced() -> None:
    assert q({"Content-Type": "text/html", "Retry-After": "5"}) is None
    # a policy alone says how much, not how much is left: nothing to act on
    assert q({"RateLimit-Policy": '"default";q=100;w=60'}) is None
    # a limit and a reset without a remaining count
    assert q({"X-RateLimit-Limit": "100", "X-RateLimit-Reset": "30"}) is None


def test_policy_rate_is_quota_over_window() -> None:
    announced = q({"RateLimit-Policy": '"p";q=10000;w=1000', "RateLimit": '"p";r=10000;t=10'})
    assert announced is not None and announced.policy_rate == 10.0
    assert Quota(X_RATELIMIT, 5, 10.0, 100).policy_rate is None  # no window announced


def test_with_reset_keeps_the_rest() -> None:
    announced = Quota(IETF, 0, 30.0, 100, 60.0, "default")
    assert announced.with_reset(5.0) == Quota(IETF, 0, 5.0, 100, 60.0, "default", exact=True)


# --- garbage ------------------------------------------------------------------------------------

GARBAGE = [
    {"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "10"},
    {"X-RateLimit-Remaining": "ten", "X-RateLimit-Reset": "10"},
    {"X-RateLimit-Remaining": "", "X-RateLimit-Reset": "10"},
    {"X-RateLimit-Remaining": "5, 5", "X-RateLimit-Reset": "10"},  # the field sent twice
    {"X-RateLimit-Remaining": "1e3"},
    {"X-RateLimit-Remaining": "inf"},
    {"X-RateLimit-Remaining": "nan"},
    {"X-RateLimit-Remaining": "0x10"},
    {"X-RateLimit-Remaining": "99999999999999999999"},  # more than any quota
    {"X-RateLimit-Remaining": "+5"},
    {"X-RateLimit-Remaining": "٥"},  # an Arabic-Indic digit is not an ASCII number
    {"RateLimit-Remaining": "-3", "RateLimit-Reset": "1"},
    {"RateLimit": ""},
    {"RateLimit": '"default";r=-1;t=5'},
    {"RateLimit": '"default";r=1.5.5'},
    {"RateLimit": '"default";t=5'},  # no remaining
    {"RateLimit": '"default";r=?1'},  # a boolean is not a count
    {"RateLimit": '"default";r="5"'},  # nor a string
    {"RateLimit": '"default";r=5,'},  # trailing comma
    {"RateLimit": '"unterminated;r=5'},
    {"RateLimit": "(a b);r=5"},  # an inner list
    {"RateLimit": '"default";R=5'},  # keys are lower case
    {"RateLimit": '"default";r=9999999999999999'},  # 16 digits: not an sf-integer
    {"X-Shopify-Shop-Api-Call-Limit": "41/40"},
    {"X-Shopify-Shop-Api-Call-Limit": "32"},
    {"X-Shopify-Shop-Api-Call-Limit": "a/b"},
    {"X-Shopify-Shop-Api-Call-Limit": "0/0"},
]


@pytest.mark.parametrize("headers", GARBAGE, ids=[str(h) for h in GARBAGE])
def test_garbage_is_ignored(headers: dict[str, str]) -> None:
    assert q(headers) is None


def test_garbage_reset_keeps_the_count() -> None:
    """A reset that cannot be read, or lies further than a year away, is no reset."""
    for reset in ("-5", "soon", "1e9x", str(10**11), "", "5, 6"):
        assert q({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": reset}) == Quota(
            X_RATELIMIT, 3
        ), reset
    assert q({"RateLimit": '"d";r=3;t=99999999'}) is None  # 3 years: the item is garbage
    assert q({"RateLimit-Remaining": "3", "RateLimit-Reset": "99999999"}) == Quota(DRAFT, 3)


def test_garbage_policy_is_ignored_not_the_count() -> None:
    assert q({"RateLimit": '"d";r=3;t=4', "RateLimit-Policy": '"d";q=-1;w=60'}) == Quota(
        IETF, 3, 4.0, policy="d"
    )
    assert q({"RateLimit": '"d";r=3;t=4', "RateLimit-Policy": "((("}) == Quota(
        IETF, 3, 4.0, policy="d"
    )


# --- structured fields --------------------------------------------------------------------------


def test_sf_list_items_and_parameters() -> None:
    items = parse_list('"a";r=1;t=2.5, tok;x, :aGk=:;flag=?0, -3;u="s \\"q\\""')
    assert items == [
        Item("a", {"r": 1, "t": 2.5}),
        Item("tok", {"x": True}),
        Item(b"hi", {"flag": False}),
        Item(-3, {"u": 's "q"'}),
    ]
    assert parse_list("") == []
    assert items[2].name is None and items[1].name == "tok"


def test_sf_dictionary() -> None:
    assert parse_dictionary("limit=100, remaining=50;x=1, reset=5, flag") == {
        "limit": 100,
        "remaining": 50,
        "reset": 5,
        "flag": True,
    }


@pytest.mark.parametrize(
    "text", ['"a", ', "a;", "a;=1", '"\\x"', "1.2345", "a b", "é", '"a"\t;r=1', "?2"]
)
def test_sf_errors_fail_the_whole_field(text: str) -> None:
    with pytest.raises(StructuredFieldError):
        parse_list(text)
