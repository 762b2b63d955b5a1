"""What a response announces about the client's quota, in every dialect servers speak.

Pure: no I/O, no clock of its own (``now`` is the wall-clock time, for resets given as a Unix
time). ``parse_quota`` reads one response's header fields into one ``Quota``, or None when they
announce nothing usable. Malformed fields are ignored, never fatal (the IETF draft: "Malformed
RateLimit header fields MUST be ignored"), and so is a field sent twice (requests joins the
copies with a comma, and two remaining counts are no count).

Dialects, most specific first (the first that yields a remaining count wins; servers that send
two usually send one fact twice):

* ``RateLimit`` / ``RateLimit-Policy``, the httpapi draft's structured fields (RFC 8941):
  ``RateLimit: "default";r=50;t=30`` (remaining, seconds to reset) and
  ``RateLimit-Policy: "default";q=100;w=60`` (quota per window). Several policies: the one the
  ``RateLimit`` item names, else the most restrictive. Several ``RateLimit`` items: the one
  that allows the slowest pace. The draft-03 dictionary ``limit=100, remaining=50, reset=5``
  is read too.
* ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (earlier drafts; reset in seconds), the
  limit possibly with policies: ``RateLimit-Limit: 100, 100;w=60``.
* ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (GitHub, Discord, Reddit, most
  frameworks; X/Twitter spells them ``X-Rate-Limit-*``), the reset as seconds from now or as a
  Unix time, told apart by size; ``X-RateLimit-Reset-After`` (Discord: seconds, fractional)
  is preferred over it. Reddit's remaining is a decimal (``599.0``).
* Shopify's ``X-Shopify-Shop-Api-Call-Limit: 32/40`` (used/size of a leaky bucket: no reset).

The draft warns that ``r/t`` can overstate the rate a server sustains (10,000 left with 10 s
to go, under a policy of 10,000 per 1,000 s): ``Quota`` keeps the policy's ``q``/``w`` so the
pacing rule (``core/quota.py``) can hold to the policy's rate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from poolfetch.core.sfv import Item, StructuredFieldError, parse_dictionary, parse_list

#: Dialect names (``Quota.dialect``).
IETF = "RateLimit"
DRAFT = "RateLimit-*"
X_RATELIMIT = "X-RateLimit-*"
SHOPIFY = "Shopify"

#: A reset given as a number at least this large is a Unix time, not seconds from now
#: (1e9 s is 31 years; as a time it is September 2001).
UNIX_TIME_FROM = 1e9
#: Resets further away than this, and counts larger than ``MAX_COUNT``, are garbage.
MAX_RESET_S = 366 * 86400.0
MAX_COUNT = 1e12

_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Quota:
    """One response's announcement about one quota policy.

    ``remaining``: quota units left (always given: without it nothing is announced).
    ``reset_after``: seconds from the response until the quota resets, or None.
    ``limit``: the quota of a window, ``window``: its length in seconds (a policy's ``q`` and
    ``w``, or the limit fields), each None when not announced. ``exact``: the reset was given
    with sub-second precision (integer seconds may be rounded either way by up to one).
    """

    dialect: str
    remaining: float
    reset_after: float | None = None
    limit: float | None = None
    window: float | None = None
    policy: str | None = None
    exact: bool = False

    @property
    def policy_rate(self) -> float | None:
        """The policy's sustained rate (``limit / window``) in units a second, if announced."""
        if self.limit is None or not self.window:
            return None
        return self.limit / self.window

    def with_reset(self, seconds: float) -> Quota:
        """The same announcement with another reset (a ``Retry-After`` that takes precedence)."""
        return Quota(
            self.dialect,
            self.remaining,
            seconds,
            self.limit,
            self.window,
            self.policy,
            exact=True,
        )


def parse_quota(headers: Mapping[str, str], now: float) -> Quota | None:
    """The quota ``headers`` announce, or None. ``headers.get`` must ignore case (as
    ``requests``' ``CaseInsensitiveDict`` does); ``now`` is the wall-clock Unix time."""
    return _ietf(headers) or _draft(headers) or _x_ratelimit(headers, now) or _shopify(headers)


# -- dialects ------------------------------------------------------------------------------------


def _ietf(headers: Mapping[str, str]) -> Quota | None:
    field = headers.get("RateLimit")
    if field is None:
        return None
    policies = _policies(headers.get("RateLimit-Policy"))
    try:
        items = parse_list(field)
    except StructuredFieldError:
        return _ietf_dictionary(field)
    candidates: list[Quota] = []
    for item in items:
        remaining = _param_count(item, "r")
        if remaining is None:
            continue
        reset = _param_count(item, "t")
        if reset is not None and reset > MAX_RESET_S:
            continue
        name = item.name
        policy = policies.get(name) if name is not None else None
        if policy is None:
            policy = _most_restrictive(policies)
        limit, window = policy if policy is not None else (None, None)
        candidates.append(Quota(IETF, remaining, reset, limit, window, name, _exact(reset)))
    if not candidates:
        return None
    return min(candidates, key=_pace)


def _ietf_dictionary(field: str) -> Quota | None:
    """The draft-03 form ``RateLimit: limit=100, remaining=50, reset=5``."""
    try:
        members = parse_dictionary(field)
    except StructuredFieldError:
        return None
    remaining = _count(members.get("remaining"))
    if remaining is None:
        return None
    reset = _count(members.get("reset"))
    if reset is not None and reset > MAX_RESET_S:
        reset = None
    return Quota(IETF, remaining, reset, _count(members.get("limit")), exact=_exact(reset))


def _policies(field: str | None) -> dict[str | None, tuple[float, float | None]]:
    """``RateLimit-Policy`` items by name: (quota, window or None); malformed ones skipped."""
    if field is None:
        return {}
    try:
        items = parse_list(field)
    except StructuredFieldError:
        return {}
    policies: dict[str | None, tuple[float, float | None]] = {}
    for item in items:
        quota = _param_count(item, "q")
        if quota is None:
            quota = _param_count(item, "l")  # draft-07 spelled the quota ``l``
        if quota is None:
            continue
        window = _param_count(item, "w")
        policies[item.name] = (quota, window or None)
    return policies


def _most_restrictive(
    policies: dict[str | None, tuple[float, float | None]],
) -> tuple[float, float | None] | None:
    """The policy with the lowest sustained rate (those without a window cannot be compared)."""
    windowed = [(q, w) for q, w in policies.values() if w]
    if not windowed:
        return None
    return min(windowed, key=lambda p: p[0] / (p[1] or 1.0))


def _draft(headers: Mapping[str, str]) -> Quota | None:
    remaining = _number(headers.get("RateLimit-Remaining"))
    if remaining is None:
        return None
    reset = _number(headers.get("RateLimit-Reset"))
    if reset is not None and reset > MAX_RESET_S:
        reset = None
    limit, window = _draft_limit(headers.get("RateLimit-Limit"))
    return Quota(DRAFT, remaining, reset, limit, window, exact=_exact(reset))


def _draft_limit(field: str | None) -> tuple[float | None, float | None]:
    """``RateLimit-Limit: 100`` or ``100, 100;w=60`` (the expiring limit, then policies)."""
    if field is None:
        return None, None
    first, _, policies = field.partition(",")
    limit = _number(first)
    if limit is None:
        return None, None
    window: float | None = None
    for policy in policies.split(","):
        quota, *params = (part.strip() for part in policy.split(";"))
        if _number(quota) != limit:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "w":
                window = _number(value) or None
    return limit, window


def _x_ratelimit(headers: Mapping[str, str], now: float) -> Quota | None:
    prefix = "X-RateLimit-"
    raw = headers.get(prefix + "Remaining")
    if raw is None:
        prefix = "X-Rate-Limit-"  # X (Twitter)
        raw = headers.get(prefix + "Remaining")
    remaining = _number(raw)
    if remaining is None:
        return None
    reset = _number(headers.get("X-RateLimit-Reset-After"))
    exact = _exact(reset)
    if reset is None:
        reset, exact = _reset(headers.get(prefix + "Reset"), now)
    if reset is not None and reset > MAX_RESET_S:
        reset = None
    limit = _number(headers.get(prefix + "Limit"))
    return Quota(X_RATELIMIT, remaining, reset, limit, exact=exact)


def _reset(field: str | None, now: float) -> tuple[float | None, bool]:
    """A reset as seconds from now: given as such, or as a Unix time (seconds; milliseconds
    when it is that large), told apart by size. A time already past resets now."""
    value = _number(field, largest=UNIX_TIME_FROM * 1e4)
    if value is None:
        return None, False
    if value < UNIX_TIME_FROM:
        return value, _exact(value)
    if value >= UNIX_TIME_FROM * 1000:
        value /= 1000.0
    return max(0.0, value - now), _exact(value)


def _shopify(headers: Mapping[str, str]) -> Quota | None:
    used, slash, size = (headers.get("X-Shopify-Shop-Api-Call-Limit") or "").partition("/")
    used_n, size_n = _number(used), _number(size)
    if not slash or used_n is None or not size_n or used_n > size_n:
        return None
    return Quota(SHOPIFY, size_n - used_n, None, size_n)


# -- values --------------------------------------------------------------------------------------


def _number(text: str | None, largest: float = MAX_COUNT) -> float | None:
    """A non-negative decimal of a header field, or None for anything else (signs, exponents,
    several comma-separated values, ``inf``, more than ``largest``)."""
    if text is None:
        return None
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if value <= largest else None


def _count(value: object) -> float | None:
    """A structured-field Integer or Decimal that is not negative (booleans are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0 <= number <= MAX_COUNT else None


def _param_count(item: Item, key: str) -> float | None:
    return _count(item.params.get(key))


def _exact(value: float | None) -> bool:
    return value is not None and value != math.floor(value)


def _pace(quota: Quota) -> float:
    """Units a second this announcement allows until its reset (0 when none remain)."""
    if quota.remaining <= 0:
        return 0.0
    pace = quota.remaining / quota.reset_after if quota.reset_after else math.inf
    policy = quota.policy_rate
    return min(pace, policy) if policy is not None else pace
