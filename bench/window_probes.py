"""Probe schedules for a closed bare-429 window, compared on a simulated clock.

``python bench/window_probes.py [--urls N] [--limit L] [--workers W] [--rtt S]`` drives
``core/windows.py`` ``BareWindow`` (the rule itself, no CLI, no sockets) against the practice
server's limiter (``core/practice_limits.py``) on a simulated clock, for windows of L per 2, 5,
10, 12, 30 and 60 s, fixed and moving, with three probe schedules: one probe a second, probes
growing apart (1, 2, 4, 8 … s) and the likely lengths (1, 2, 5, 10, 15, 20, 30, 60 s: the rule's
``CANDIDATES_S``). Each request reaches the server ``rtt / 2`` after it is sent and is answered
``rtt`` after; a refused URL is ready again at once (the real run's backoff only delays the
first probe). Prints the time taken over the ideal (a client that knew the window) and the
requests refused. It isolates what the schedule decides: the opening burst (the requests in
flight when the first refusal comes back) is the same for all three. Runs in seconds.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from dataclasses import dataclass, field

from poolfetch.core import windows
from poolfetch.core.practice_limits import ServerLimiter, ServerLimits

SCHEDULES: dict[str, tuple[tuple[float, ...], float]] = {
    "a probe a second": (tuple(float(s) for s in range(1, 3601)), 1.0),
    "growing apart": ((1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0), 64.0),
    "likely lengths": (windows.CANDIDATES_S, windows.LATE_PROBE_S),
}
LENGTHS_S = (2.0, 5.0, 10.0, 12.0, 30.0, 60.0)
SIMULATED_LIMIT_S = 3600.0


@dataclass(order=True)
class _Event:
    time: float
    order: int
    kind: str = field(compare=False)
    sent: float = field(compare=False)
    refused: bool = field(default=False, compare=False)


def simulate(
    kind: str,
    length: float,
    *,
    limit: int = 100,
    urls: int = 300,
    workers: int = 16,
    rtt: float = 0.004,
) -> tuple[float, int, int]:
    """One run: (seconds until the last answer, requests refused, refused of those sent after
    the first window). Also the unit tests' simulation (``tests/unit/test_windows.py``)."""
    now = 0.0
    limits = ServerLimits(window=kind, window_limit=limit, window_s=length)
    server = ServerLimiter(limits, clock=lambda: now)
    window = windows.BareWindow()
    events: list[_Event] = []
    order = 0
    todo, in_flight, refused, late, wake = urls, 0, 0, 0, 0.0
    while (todo or in_flight) and now < SIMULATED_LIMIT_S:
        while todo and in_flight < workers and now >= wake:
            wait = window.wait(now, in_flight)
            if wait is not None:
                wake = now + wait[0]
                break
            window.started(now)
            todo, in_flight, order = todo - 1, in_flight + 1, order + 1
            heapq.heappush(events, _Event(now + rtt / 2, order, "arrive", now))
        upcoming = events[0].time if events else math.inf
        if todo and in_flight < workers and wake > now:
            upcoming = min(upcoming, wake)
        if upcoming == math.inf:
            break
        now = upcoming
        while events and events[0].time <= now:
            event = heapq.heappop(events)
            if event.kind == "arrive":
                verdict = server.enter("client")
                order += 1
                answer = _Event(now + rtt / 2, order, "answer", event.sent, verdict.refused)
                heapq.heappush(events, answer)
                continue
            in_flight -= 1
            window.answered(event.refused, not event.refused, event.sent, now)
            wake = now
            if event.refused:
                refused += 1
                late += event.sent > length
                todo += 1
    return now, refused, late


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=300, help="URLs per run (default 300)")
    parser.add_argument("--limit", type=int, default=100, help="quota per window (default 100)")
    parser.add_argument("--workers", type=int, default=16, help="requests in flight (16)")
    parser.add_argument("--rtt", type=float, default=0.004, help="round trip, s (0.004)")
    args = parser.parse_args(argv)
    ideal_windows = math.ceil(args.urls / args.limit) - 1
    print("| window | schedule | fixed: ÷ ideal, refused | moving: ÷ ideal, refused |")
    print("|---|---|---|---|")
    saved = windows.CANDIDATES_S, windows.LATE_PROBE_S
    try:
        for length in LENGTHS_S:
            for name, (candidates, late) in SCHEDULES.items():
                windows.CANDIDATES_S, windows.LATE_PROBE_S = candidates, late
                cells = []
                for kind in ("fixed", "moving"):
                    taken, refused, _ = simulate(
                        kind,
                        length,
                        limit=args.limit,
                        urls=args.urls,
                        workers=args.workers,
                        rtt=args.rtt,
                    )
                    ratio = taken / (ideal_windows * length) if ideal_windows else 0.0
                    cells.append(f"{ratio:.2f}×, {refused}")
                print(f"| {length:g} s | {name} | {cells[0]} | {cells[1]} |")
    finally:
        windows.CANDIDATES_S, windows.LATE_PROBE_S = saved
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
