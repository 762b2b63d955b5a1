"""What the display and the plain summary say about the limits the adaptive rules learned."""

from __future__ import annotations

from poolfetch.cli.progress import learned_text, summary_text, waiting_text
from poolfetch.core.stats import RunStats


def test_the_live_view_names_hosts_held_at_a_learned_in_flight_limit():
    snapshot = RunStats(workers=16).snapshot(
        {"concurrency": (("a.example:443", 4),), "throttled": (("b.example:443", 9.5),)}
    )
    text = waiting_text(snapshot)
    assert "in-flight limit: a.example:443 4 at once" in text
    assert "throttled: b.example:443 9.5/s" in text


def test_the_summary_lists_what_was_learned_for_the_busiest_hosts():
    stats = RunStats(workers=16)
    for host, n in (("a.example:443", 30), ("b.example:443", 20), ("c.example:443", 10)):
        for _ in range(n):
            stats.host_attempt(host)
    hosts = stats.busiest_hosts({"b.example:443": 9.5}, {"a.example:443": 4})
    assert hosts == [
        {"host": "a.example:443", "requests": 30, "rate": None, "concurrency": 4},
        {"host": "b.example:443", "requests": 20, "rate": 9.5, "concurrency": None},
        {"host": "c.example:443", "requests": 10, "rate": None, "concurrency": None},
    ]
    assert learned_text(hosts) == "a.example:443 (4 at once), b.example:443 (9.5/s)"
    summary = stats.summary(hosts)
    assert summary["hosts"] == hosts
    assert "limits learned: a.example:443 (4 at once)" in summary_text(summary)


def test_nothing_learned_adds_no_line():
    stats = RunStats(workers=4)
    stats.host_attempt("a.example:443")
    summary = stats.summary()
    assert summary["hosts"] == [
        {"host": "a.example:443", "requests": 1, "rate": None, "concurrency": None}
    ]
    assert "limits learned" not in summary_text(summary)
