"""The workers figure: req/s against worker count, poolfetch (one process and two) beside the
reference client.

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
    series = (("poolfetch", "o"), ("poolfetch-p2", "^"), ("reference", "s"))
    for client, marker in [(c, m) for c, m in series if c in present]:
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
        ax.errorbar(counts, medians, yerr=[lows, highs], marker=marker, capsize=3, label=client)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("workers (threads)")
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
