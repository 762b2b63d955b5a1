"""Streaming admission: a reader thread turns source lines into jobs, at most N ahead.

The reader parses lines off the main thread (so a slow ``stdin`` never stalls the writing of
results) and hands each item to the main thread's inbox. A semaphore of ``lookahead`` slots
bounds how many items are held anywhere between the source and their record: the main thread
gives a slot back when an item's record is written, so memory stays flat for any input size.
Once the reader has found no slot free, it waits until a batch of them is (``_Slots``): one
wake-up of the reader thread per batch of records, not per record.
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
#: Slots the reader waits for once it found none free (at most a quarter of the lookahead).
SLOT_BATCH = 32


class _Slots:
    """``total`` admission slots: the main thread gives them back one at a time, the reader takes
    one per item. A reader that found none free takes the next only once ``batch`` are free
    (so a full lookahead costs a thread hand-off per batch); the items already admitted keep the
    workers busy meanwhile, since a batch is at most a quarter of them."""

    def __init__(self, total: int) -> None:
        self._free = total
        self._batch = max(1, min(SLOT_BATCH, total // 4))
        self._hungry = False
        self._changed = threading.Condition(threading.Lock())

    def release(self) -> None:
        with self._changed:
            self._free += 1
            if self._hungry and self._free >= self._batch:
                self._changed.notify()

    def try_take(self) -> bool:
        """Take a slot if one may be taken now."""
        with self._changed:
            return self._take_locked()

    def take(self, cancelled: threading.Event) -> bool:
        """Take a slot, waiting as long as needed; False if ``cancelled`` is set meanwhile."""
        with self._changed:
            while not cancelled.is_set():
                if self._take_locked():
                    return True
                self._changed.wait(_SLOT_POLL_S)
        return False

    def _take_locked(self) -> bool:
        if self._free >= (self._batch if self._hungry else 1):
            self._free -= 1
            self._hungry = False
            return True
        self._hungry = True
        return False


@dataclass(frozen=True, slots=True)
class SourceLine:
    """A raw line with what its source knows about it: the source's name and the line's
    1-based number there (``numbered_lines``), or a Redis entry's tag and validators."""

    raw: bytes
    tag: str | None = None
    validators: tuple[tuple[str, str], ...] = ()
    source: str | None = None
    number: int = 0


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One non-skipped input line: a URL, a request object or a bad line; ``seq`` is its input
    order, ``source`` and ``number`` where it was read."""

    seq: int
    line: str | RequestObject | BadLine
    tag: str | None = None
    validators: tuple[tuple[str, str], ...] = ()
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
        self._slots = _Slots(lookahead)
        self._cancelled = cancelled
        self._thread = threading.Thread(target=self._run, name="poolfetch-admission", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def release_slot(self) -> None:
        """An item's record was written: one more may be read."""
        self._slots.release()

    def _take_slot(self) -> bool:
        return self._slots.take(self._cancelled)

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
                self._put(
                    SourceItem(seq, parsed, line.tag, line.validators, line.source, line.number)
                )
                seq += 1
        except PoolfetchError as exc:  # an unreadable file, or a shared queue gone away
            self._put(SourceEnd(str(exc)))
            return
        self._put(SourceEnd())
