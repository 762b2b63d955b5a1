"""Refuse a file the run would write that is also a file it reads or keeps.

``--results`` is opened for writing (truncated) before the first line of input is read, and
``--summary-json`` replaces its file at the end: either one naming a SOURCE destroys the URL
list, and naming the ``--state`` file destroys the state (SQLite then reports a malformed
database mid-run). ``wget -O`` and ``curl -o`` would overwrite silently; a job that loses its
input for a typo is worse than a usage error, so these are refused before anything is sent.

Two names are the same file when they resolve to one path, or, both existing, ``samefile``
says so (a hard link). Only regular files and names not yet created are compared: devices such
as ``/dev/null`` or ``/dev/stdout`` may be given for several outputs at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def _comparable(path: str) -> bool:
    """A regular file, or a name that does not exist yet (it will be a regular file)."""
    try:
        return os.path.isfile(path) or not os.path.exists(path)
    except OSError:
        return False


def same_file(first: str, second: str) -> bool:
    """Whether two names are, or will be, one regular file."""
    if not (_comparable(first) and _comparable(second)):
        return False
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet (and their paths differ)
        return False


def clobbered(
    sources: Iterable[str],
    results: str,
    summary_json: Path | None,
    state: Path | None,
) -> str | None:
    """The usage error for an output that is an input, the state or the other output, or
    None. ``results`` ``-`` is standard output; a source ``-`` is standard input."""
    outputs: list[tuple[str, str]] = []
    if results != "-":
        outputs.append(("--results", results))
    if summary_json is not None:
        outputs.append(("--summary-json", str(summary_json)))
    kept: list[tuple[str, str]] = [(f"source {s}", s) for s in sources if s != "-"]
    if state is not None:
        kept.append(("the --state file", str(state)))
    for index, (option, path) in enumerate(outputs):
        later = [(f"the {name} file", other) for name, other in outputs[index + 1 :]]
        for what, other in [*kept, *later]:
            if same_file(path, other):
                return f"{option} {path} is also {what}: writing it would destroy it"
    return None
