"""parse_rate: plain numbers and curl's N/UNIT forms; clear errors for everything else."""

from __future__ import annotations

import pytest

from poolfetch.core.config import RateLimit
from poolfetch.core.errors import ConfigError
from poolfetch.core.rates import FORMS, Rate, describe_rates, parse_rate


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("30", 30.0),
        ("2.5", 2.5),
        (".5", 0.5),
        ("10/s", 10.0),
        ("60/m", 1.0),
        ("90/min", 1.5),
        ("3600/h", 1.0),
        ("86400/d", 1.0),
        ("5000/h", 5000 / 3600),
        ("100/15s", 100 / 15),
        ("1/2m", 1 / 120),
        ("1/1.5s", 1 / 1.5),
        (" 60 / M ", 1.0),
        ("7/H", 7 / 3600),
    ],
)
def test_forms(text: str, per_second: float) -> None:
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.given == text.strip()


def test_numbers_from_a_config_file() -> None:
    assert parse_rate(30) == Rate(30.0, "30")
    assert parse_rate(2.5) == Rate(2.5, "2.5")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0/s",
        "-1",
        "-5/m",
        "abc",
        "10/",
        "/s",
        "10/x",
        "10/ms",
        "10/0s",
        "1e3",
        "inf",
        "nan",
        "10//s",
        "10/s/s",
        "1,5",
        "10 per second",
        "1" + "0" * 400,
    ],
)
def test_bad_rates_say_what_works(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rate(text)
    assert FORMS in str(caught.value)


@pytest.mark.parametrize("value", [True, 0, -2, 0.0, float("inf"), float("nan")])
def test_bad_numbers(value: float) -> None:
    with pytest.raises(ConfigError):
        parse_rate(value)


def test_summary_shows_rates_as_given_with_the_number() -> None:
    limits = RateLimit(qps=1.0, qps_given="60/m", rate_headers=True)
    assert describe_rates(limits) == {
        "qps": {"given": "60/m", "per_s": 1.0},
        "per_host_qps": None,
        "rate_headers": True,
    }
    bare = RateLimit(per_host_qps=2.5, rate_headers=False)
    assert describe_rates(bare)["per_host_qps"] == {"given": "2.5", "per_s": 2.5}
    assert describe_rates(bare)["rate_headers"] is False
