"""Shared helpers for the unit tests: a fake clock that tests step by hand."""

from __future__ import annotations

import pytest


class FakeClock:
    """A callable clock whose time only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        self.now = when


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
