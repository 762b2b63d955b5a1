"""BetweenRefusals: the rate a window accepted between two bare refusals, stepped by hand."""

from __future__ import annotations

import pytest

from poolfetch.core.windows import MIN_SPAN_S, PAUSE_SHARE, BetweenRefusals


def test_the_first_refusal_only_sets_the_anchor():
    between = BetweenRefusals()
    for _ in range(50):
        between.success()
    estimate = between.refused(1.0)
    assert estimate.rate is None and not estimate.closed


def test_successes_between_two_refusals_over_the_time_between_them():
    between = BetweenRefusals()
    between.refused(0.0)
    for _ in range(50):
        between.success()
    assert between.refused(2.0).rate == pytest.approx(25.0)


def test_the_last_pause_is_left_out_of_the_span():
    between = BetweenRefusals()
    between.refused(0.0)
    between.paused(0.0, 1.2)  # the window opened somewhere in this pause
    for _ in range(50):
        between.success()
    assert between.refused(2.2).rate == pytest.approx(50 / (2.2 - 1.2 * PAUSE_SHARE))


def test_a_pause_before_the_anchor_is_not_left_out():
    between = BetweenRefusals()
    between.paused(0.0, 0.5)
    between.refused(1.0)
    for _ in range(20):
        between.success()
    assert between.refused(2.0).rate == pytest.approx(20.0)


def test_nothing_accepted_since_the_last_refusal_means_closed_and_keeps_the_anchor():
    between = BetweenRefusals()
    between.refused(0.0)
    assert between.refused(0.6).closed  # resumed before the window opened
    for _ in range(30):
        between.success()
    assert between.refused(1.5).rate == pytest.approx(20.0)  # 30 over 1.5 s from the anchor


def test_a_tiny_span_is_measured_over_the_minimum():
    between = BetweenRefusals()
    between.refused(0.0)
    for _ in range(5):
        between.success()
    assert between.refused(0.01).rate == pytest.approx(5 / MIN_SPAN_S)
