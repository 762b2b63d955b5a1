"""The limiter's interface: what the scheduler asks before each start, and what it is answered.

``RequestLimiter`` is the seam between scheduling and limits: the scheduler and the attempt
feedback depend on this module only (the runner too, apart from building its default
``LocalLimiter``). ``LocalLimiter`` (``core/limiter.py``) implements it in the one process
that decides every start (``--processes`` children and Redis workers only execute). The
reasons a start must wait (``GLOBAL``, ``HOST_RATE`` ...) are what the display and the
statistics name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from poolfetch.core.ratelimit_headers import Quota

#: Why an attempt may not start yet; the scheduler stops scanning hosts on ``GLOBAL``.
GLOBAL = "global"
HOST_RATE = "host-rate"
HOST_PAUSED = "paused"
HOST_BUSY = "connections"
HOST_QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class Admission:
    """Answer of ``try_acquire``: ``wait == 0`` means granted (and counted).

    ``reserved``: the start is granted and counted for ``wait`` seconds from now; the caller
    must start it then, not ask again. A shared limiter answers this way so that processes
    polling one bucket get slots in the order they asked (fair, and no slot lost to polling).
    """

    wait: float
    blocked_by: str | None = None
    reserved: bool = False

    @property
    def granted(self) -> bool:
        return self.wait == 0.0


GRANTED = Admission(0.0)


@dataclass(frozen=True, slots=True)
class LimiterSnapshot:
    """What the display shows about waiting: paused hosts, throttled hosts, the global rate."""

    paused: tuple[tuple[str, float], ...]
    throttled: tuple[tuple[str, float], ...]
    global_qps: float | None
    hosts_tracked: int
    #: Hosts with a learned in-flight limit, and that limit.
    concurrency: tuple[tuple[str, int], ...] = ()


class RequestLimiter(Protocol):
    """The limiter interface the scheduler and workers depend on."""

    def try_acquire(self, host: str) -> Admission:
        """Take a start for ``host`` if every limit allows it now, else say how long to wait."""
        ...

    def release(self, host: str) -> None:
        """An attempt to ``host`` granted earlier is over (response, error or abandoned)."""
        ...

    def pause_host(self, host: str, seconds: float) -> None:
        """No new start to ``host`` for ``seconds`` from now (never shortens a longer pause)."""
        ...

    def record_response(
        self,
        host: str,
        throttled: bool,
        *,
        overloaded: bool = False,
        started: float | None = None,
        bare: bool = False,
    ) -> None:
        """Feed the adaptive limits: ``throttled`` for a 429/503 answer (the rate; ``bare``:
        without Retry-After), ``overloaded`` for a "too many at once" answer to a request
        started at ``started`` (the concurrency; see ``concurrency.says_too_many``), else a
        success."""
        ...

    def record_quota(self, host: str, quota: Quota | None, sent: float) -> None:
        """An attempt to ``host`` sent at ``sent`` (the limiter's clock) ended; its answer
        announced ``quota`` (None: nothing, or no answer)."""
        ...

    def snapshot(self) -> LimiterSnapshot:
        """A copy of the waiting state for the display."""
        ...
