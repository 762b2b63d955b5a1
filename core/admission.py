"""Streaming admission: a reader thread turns source lines into jobs, at most N ahead.

The reader parses lines off the main thread (so a slow ``stdin`` never stalls the writing of
results) and hands each item to the main thread's inbox. A semaphore of ``lookahead`` slots
bounds how many items are held anywhere between the source and their record: the main thread
gives a slot back when an item's record is written, so memory stays flat for any input size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from poolfetch.core.errors import PoolfetchError
from poolfetch.core.request import RequestObject, parse_input_line
from poolfetch.core.source import BadLine, read_lines

_SLOT_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class SourceLine:
    """A raw line with what its source knows about it: the source's name and the line's
    1-based number there (``numbered_lines``)."""

    raw: bytes
    source: str | None = None
    number: int = 0


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One non-skipped input line: a URL, a request object or a bad line; ``seq`` is its input
    order, ``source`` and ``number`` where it was read."""

    seq: int
    line: str | RequestObject | BadLine
    source: str | None = None
    number: int = 0


@dataclass(frozen=True, slots=True)
class SourceEnd:
    """The sources are exhausted (``error`` set if reading one failed part-way)."""

    error: str | None = None


def numbered_lines(sources: list[tuple[str, BinaryIO]]) -> Iterator[SourceLine]:
    """The lines of each source in turn (``read_lines``), with the source's name and the
    line's number in it (blank and comment lines counted, as an editor counts them)."""
    for name, handle in sources:
        for number, raw in enumerate(read_lines([(name, handle)]), 1):
            yield SourceLine(raw, source=name, number=number)


class AdmissionReader:
    """Feeds ``put`` with ``SourceItem``s then one ``SourceEnd``, from its own daemon thread."""

    def __init__(
        self,
        lines: Iterator[bytes | SourceLine],
        put: Callable[[SourceItem | SourceEnd], None],
        lookahead: int,
        cancelled: threading.Event,
    ) -> None:
        self._lines = lines
        self._put = put
        self._slots = threading.Semaphore(lookahead)
        self._cancelled = cancelled
        self._thread = threading.Thread(target=self._run, name="poolfetch-admission", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def release_slot(self) -> None:
        """An item's record was written: one more may be read."""
        self._slots.release()

    def _take_slot(self) -> bool:
        while not self._cancelled.is_set():
            if self._slots.acquire(timeout=_SLOT_POLL_S):
                return True
        return False

    def _run(self) -> None:
        seq = 0
        try:
            for entry in self._lines:
                line = entry if isinstance(entry, SourceLine) else SourceLine(entry)
                parsed = parse_input_line(line.raw)
                if parsed is None:
                    continue
                if not self._take_slot():
                    return
                self._put(SourceItem(seq, parsed, line.source, line.number))
                seq += 1
        except PoolfetchError as exc:  # an unreadable file, or a shared queue gone away
            self._put(SourceEnd(str(exc)))
            return
        self._put(SourceEnd())
