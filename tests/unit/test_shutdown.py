"""SIGINT/SIGTERM handling: the first signal cancels and wakes, a second forces.

Real signals sent to this process (the handlers must be installed from the main thread, where
pytest runs its tests); every test restores the handlers it installed.
"""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterator

import pytest

from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.shutdown import CancelToken, ForcedExit, install_signal_handlers

WAIT_S = 5.0


@pytest.fixture
def token() -> Iterator[CancelToken]:
    token = CancelToken()
    restore = install_signal_handlers(token)
    try:
        yield token
    finally:
        restore()


def _signal_self(sig: signal.Signals) -> None:
    signal.raise_signal(sig)  # its Python handler has run when this returns


def test_the_first_signal_cancels_and_wakes_and_a_second_forces(token: CancelToken) -> None:
    woken: queue.SimpleQueue[str] = queue.SimpleQueue()
    token.wake_on_cancel(lambda: woken.put("woken"))
    _signal_self(signal.SIGINT)
    assert token.event.is_set() and token.exit_code == ExitCode.SIGINT
    assert woken.get(timeout=WAIT_S) == "woken"
    with pytest.raises(ForcedExit):
        _signal_self(signal.SIGINT)


def test_signals_after_a_forced_one_or_while_closing_are_ignored(token: CancelToken) -> None:
    _signal_self(signal.SIGTERM)
    with pytest.raises(ForcedExit):
        _signal_self(signal.SIGTERM)
    _signal_self(signal.SIGINT)  # a third: the clean-up is not cut short
    assert token.signal == signal.SIGTERM
    closing = CancelToken()
    restore = install_signal_handlers(closing)
    try:
        closing.closing()
        _signal_self(signal.SIGINT)
        assert not closing.event.is_set()  # closing its outputs: nothing left to cancel
    finally:
        restore()


def test_a_signal_after_the_results_reader_went_away_forces(token: CancelToken) -> None:
    token.cancel(signal.SIGPIPE)
    with pytest.raises(ForcedExit):
        _signal_self(signal.SIGTERM)
    assert token.signal == signal.SIGPIPE  # the exit status stays the broken pipe's


def test_restore_puts_back_both_handlers() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    restore = install_signal_handlers(CancelToken())
    assert all(signal.getsignal(sig) is not old for sig, old in before.items())
    restore()
    assert all(signal.getsignal(sig) is old for sig, old in before.items())
