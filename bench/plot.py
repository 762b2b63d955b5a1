"""The workers figure: req/s against the worker count (threads over all processes), one line per
``--processes`` value poolfetch ran with (``poolfetch``: 1, ``poolfetch-p2``: 2,
``poolfetch-auto``), beside the reference client.

matplotlib is optional (the ``bench`` extra); without it the figure is skipped with a note.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any


def workers_figure(result: dict[str, Any], path: Path) -> str | None:
    """Draw the figure to ``path``; returns a note when it could not be drawn."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib not installed: no figure (pip install -e '.[bench]')"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [int(c) for c in result["worker_counts"]]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    present = {r["client"] for r in result["runs"]}
    for client, marker, label in _series(present):
        medians, lows, highs = [], [], []
        for count in counts:
            values = [
                r["req_per_s"]
                for r in result["runs"]
                if r["client"] == client and int(r["label"]) == count
            ]
            median = statistics.median(values)
            medians.append(median)
            lows.append(median - min(values))
            highs.append(max(values) - median)
        ax.errorbar(counts, medians, yerr=[lows, highs], marker=marker, capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("--workers (threads, shared by the processes)")
    ax.set_ylabel("requests / s (median, min–max)")
    ax.set_title(f"{result['urls']:,} × 200-byte GETs from local nginx")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


#: The lines drawn, in order: (client, marker, legend), poolfetch by ``--processes`` value.
SERIES = (
    ("poolfetch", "o", "poolfetch --processes 1"),
    ("poolfetch-p2", "^", "poolfetch --processes 2"),
    ("poolfetch-auto", "v", "poolfetch --processes auto"),
    ("reference", "s", "reference"),
)


def _series(clients: set[str]) -> list[tuple[str, str, str]]:
    return [line for line in SERIES if line[0] in clients]
