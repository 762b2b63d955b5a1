"""SIGINT/SIGTERM handling: one cancel event for the whole run, a second signal to force.

The first signal sets the run's cancel event (admission stops, limiter and retry waits end,
in-flight work settles within a grace period) and remembers which signal it was, for the exit
status 130/143. A second signal raises ``ForcedExit`` in the main thread so the runner skips the
grace period, still removing temporary files and committing state on its way out. Once the
run closes its outputs (``closing``), or has been forced once, later signals are ignored: they
would only cut that clean-up short. A results reader that goes away (a broken pipe) cancels
the run the same way, as ``SIGPIPE`` (exit 141).

A cancel also wakes whoever registered with ``wake_on_cancel`` (the runner puts an item into
its inbox). The main thread waits on that inbox with ``queue.SimpleQueue.get(timeout=...)``,
and on CPython 3.11 a signal handler that runs inside that wait can leave it waiting past its
timeout, until the next item arrives: with a server stalling every attempt, none ever did, and
the run ignored its SIGTERM. The item the cancel puts ends that wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from poolfetch.core.exit_codes import SIGNAL_EXITS, ExitCode

#: The signals a run handles, and the exit status each leaves (128 + the signal's number).
#: (A results reader that went away stops the run like SIGPIPE would: ``SIGNAL_EXITS``.)
SIGNAL_EXIT_CODES = {sig: SIGNAL_EXITS[sig] for sig in (signal.SIGINT, signal.SIGTERM)}


class ForcedExit(BaseException):
    """Raised by a second signal: stop now (cleanup still runs)."""


class CancelToken:
    """The run's cancel event plus the signal that set it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: signal.Signals | None = None
        #: Set once a signal forced the run, or once it closes its outputs: later signals
        #: change nothing.
        self.deaf = False
        self._wakers: list[Callable[[], None]] = []

    @property
    def exit_code(self) -> ExitCode | None:
        return SIGNAL_EXITS.get(self.signal) if self.signal is not None else None

    def wake_on_cancel(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` at every cancel (from a signal handler too: it must be reentrant, as
        ``queue.SimpleQueue.put`` is)."""
        self._wakers.append(wake)

    def closing(self) -> None:
        """The run is closing its outputs: from now on a signal neither cancels nor forces."""
        self.deaf = True

    def cancel(self, signum: signal.Signals = signal.SIGINT) -> None:
        if self.signal is None:
            self.signal = signum
        self.event.set()
        for wake in self._wakers:
            wake()


def install_signal_handlers(token: CancelToken) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``token``; returns a function that restores the old ones."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if token.deaf:
            return
        if token.event.is_set():
            token.deaf = True  # forced once: the clean-up that follows runs to its end
            raise ForcedExit
        token.cancel(signal.Signals(signum))

    previous = {sig: signal.signal(sig, handle) for sig in SIGNAL_EXIT_CODES}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
