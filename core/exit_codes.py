"""Every exit status poolfetch can end with, in one place (README "Exit codes", ``run --help``).

The sysexits-style codes (69, 71, 75) say what a script can do about it (try later, check
Redis, check the machine); a run stopped by a signal ends with 128 + the signal's number, as a
shell reports it. ``tests/unit/test_docs.py`` checks this enum, the README table, the ``run``
epilog and ``cli/main.py``'s docstring against each other.
"""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of a poolfetch command."""

    #: Every URL ok.
    OK = 0
    #: The run finished and at least one URL failed (``serve``: it could not listen).
    URLS_FAILED = 1
    #: A usage error: a bad option, an unreadable source, an unusable state file.
    USAGE = 2
    #: ``--redis``: Redis unreachable or gone mid-run (sysexits EX_UNAVAILABLE).
    UNAVAILABLE = 69
    #: ``--processes``: no worker process could run (sysexits EX_OSERR).
    NO_PROCESSES = 71
    #: The ``--state`` file is held by another run (sysexits EX_TEMPFAIL: try later).
    STATE_LOCKED = 75
    #: Stopped by SIGINT (128 + 2).
    SIGINT = 128 + signal.SIGINT
    #: The reader of the results went away: stopped as SIGPIPE would (128 + 13).
    SIGPIPE = 128 + signal.SIGPIPE
    #: Stopped by SIGTERM (128 + 15).
    SIGTERM = 128 + signal.SIGTERM


#: The exit status of a run stopped by each signal it handles (or, SIGPIPE, acts as if sent).
SIGNAL_EXITS: dict[signal.Signals, ExitCode] = {
    signal.SIGINT: ExitCode.SIGINT,
    signal.SIGTERM: ExitCode.SIGTERM,
    signal.SIGPIPE: ExitCode.SIGPIPE,
}
