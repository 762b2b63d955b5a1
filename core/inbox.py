"""What reaches the engine's main thread: the items of its inbox, and the inbox itself.

Only the main thread acts on a run's state; everything else hands it values through one queue.
A worker puts its answer (``Done``), the process pool an attempt lost with a dead child
(``Lost``) or workers that cannot go on (``Failed``), the admission reader each parsed line and
the end of the input (``SourceItem``, ``SourceEnd``), a ``-C`` body writer each change to its
partial file (``PartialNotice``), and a cancel a wake-up (``Woken``). The runner's loop takes
them, and after a cancel the grace period (``run_end.py``) takes the answers still coming;
both read these types, so they live apart from either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from poolfetch.core.admission import SourceEnd, SourceItem
from poolfetch.core.executors import Answers
from poolfetch.core.partials import PartialNotice
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.transport import Attempt


@dataclass(frozen=True, slots=True)
class Done:
    """A worker's answer in the inbox."""

    pending: PendingJob
    attempt: Attempt
    worker: int


@dataclass(frozen=True, slots=True)
class Lost:
    """An attempt whose worker process died before answering: it runs again."""

    pending: PendingJob


@dataclass(frozen=True, slots=True)
class Failed:
    """The workers cannot go on (every child process dead, Redis gone): the run stops."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Woken:
    """Put by a cancel (``CancelToken.wake_on_cancel``): it carries nothing, it only ends the
    main thread's wait on the inbox (see ``core/shutdown.py``)."""


InboxItem = Done | Lost | Failed | SourceItem | SourceEnd | PartialNotice | Woken
_Item = TypeVar("_Item")


class Inbox(Protocol[_Item]):
    """The main thread's inbox, as the runner uses it: a ``queue.SimpleQueue`` (a unit test
    passes one whose waits pass on its simulated clock instead of in real time)."""

    def put(self, item: _Item) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> _Item: ...

    def get_nowait(self) -> _Item: ...


def answers_to(inbox: Inbox[InboxItem]) -> Answers:
    """The workers' ways of answering (``executors.Answers``), each putting its item into
    ``inbox``."""
    return Answers(
        deliver=lambda pending, attempt, worker: inbox.put(Done(pending, attempt, worker)),
        lost=lambda pending: inbox.put(Lost(pending)),
        failed=lambda error: inbox.put(Failed(error)),
    )
