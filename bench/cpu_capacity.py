"""How much CPU-bound work this machine's CPUs do together, against one of them alone.

``--processes N`` can at best do what N CPUs do together. On a virtual machine that is not
always N times one CPU: two virtual CPUs may share a physical core (SMT siblings) or a host's
CPU quota, and then a process runs slower while the other CPU is busy, and its CPU time grows
with it (the guest counts the time it was given, not the work done). This measures it with a
pure-Python loop (the kind of work poolfetch's attempts are): the loop alone on each CPU, then
on every CPU at once, alternated; ``ratio`` is the work of all of them together as a multiple
of one alone.

``python bench/cpu_capacity.py [--rounds N]`` prints it; ``bench/processes.py`` runs it before
and after its runs, so its ratios can be read against this ceiling.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

#: Iterations of the loop: about 2-3 s of one CPU here.
LOOP = 30_000_000
_SPIN = (
    "import os, sys, time\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "start = time.monotonic()\n"
    "total = 0\n"
    "for i in range(int(sys.argv[2])):\n"
    "    total += i * i % 7\n"
    "print(time.monotonic() - start)\n"
)


@dataclass(frozen=True)
class Capacity:
    """Seconds the loop took alone and with every CPU busy (medians), and their ratio."""

    cpus: int
    alone_s: float
    together_s: float

    @property
    def ratio(self) -> float:
        """The work of all the CPUs at once, as a multiple of one CPU alone."""
        return self.cpus * self.alone_s / self.together_s

    def describe(self) -> str:
        return (
            f"{self.cpus} CPUs at once did {self.ratio:.2f}x the work of one alone "
            f"(a pure-Python loop: {self.alone_s:.2f} s alone, {self.together_s:.2f} s with "
            f"every CPU busy, medians)"
        )


def _spin(cpus: list[int], loop: int) -> list[float]:
    """Run the loop once on each of ``cpus`` at the same time; the seconds each took."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _SPIN, str(cpu), str(loop)], stdout=subprocess.PIPE, text=True
        )
        for cpu in cpus
    ]
    return [float(run.communicate()[0]) for run in runs]


def measure(rounds: int = 3, loop: int = LOOP) -> Capacity:
    """Alternate: the loop alone on each CPU, then on all of them at once, ``rounds`` times."""
    cpus = sorted(os.sched_getaffinity(0))
    alone: list[float] = []
    together: list[float] = []
    for _ in range(rounds):
        for cpu in cpus:
            alone += _spin([cpu], loop)
        together.append(max(_spin(cpus, loop)))
    return Capacity(len(cpus), statistics.median(alone), statistics.median(together))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(measure(args.rounds).describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
