"""Fixtures: practice servers on loopback, each stopped by the test that started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poolfetch.core.practice import PracticeServer, ServerOptions


@pytest.fixture
def server() -> Iterator[PracticeServer]:
    with PracticeServer(ServerOptions()) as srv:
        yield srv


@pytest.fixture
def second_server() -> Iterator[PracticeServer]:
    """A server on 127.0.0.2: a different host for per-host behaviour."""
    with PracticeServer(ServerOptions(host="127.0.0.2")) as srv:
        yield srv
