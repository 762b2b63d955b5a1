"""BandwidthLimiter (--limit-rate): a byte bucket shared by workers (and processes), on a fake
clock."""

from __future__ import annotations

import os
import threading

import pytest

from poolfetch.core.bandwidth import BURST_S, MIN_READ, BandwidthLimiter, SharedLine

MIB = 1024 * 1024


def _reader(limiter: BandwidthLimiter, clock, total: int, piece: int) -> float:
    """Read ``total`` bytes in ``piece``-sized reads, sleeping as told; return the time taken."""
    started = clock.now
    left = total
    while left > 0:
        size = min(piece, left)
        clock.advance(limiter.reserve(size))  # the reader sleeps exactly as long as told
        left -= size
    return clock.now - started


def test_ten_mebibytes_at_one_mebibyte_a_second_take_ten_seconds(clock) -> None:
    limiter = BandwidthLimiter(MIB, clock)
    took = _reader(limiter, clock, 10 * MIB, 64 * 1024)
    assert 10.0 - BURST_S - 1e-9 <= took <= 10.0
    assert abs(took - 10.0) / 10.0 < 0.05


def test_the_first_burst_is_free_and_no_more(clock) -> None:
    limiter = BandwidthLimiter(1000, clock)
    assert limiter.reserve(int(1000 * BURST_S)) == pytest.approx(0.0, abs=1e-9)
    assert limiter.reserve(100) == pytest.approx(0.1)


def test_an_idle_line_does_not_bank_more_than_one_burst(clock) -> None:
    limiter = BandwidthLimiter(1000, clock)
    clock.advance(3600)  # an hour without a byte
    assert limiter.reserve(int(1000 * BURST_S)) == pytest.approx(0.0, abs=1e-9)
    assert limiter.reserve(1000) == pytest.approx(1.0)


def test_workers_share_one_rate(clock) -> None:
    """Four readers interleaving their pieces get the rate together, not each."""
    limiter = BandwidthLimiter(MIB, clock)
    piece = 64 * 1024
    waits = []
    for _ in range(4 * 16):  # 4 readers x 1 MiB, in turns
        waits.append(limiter.reserve(piece))
    # the last reservation ends 4 s (minus the burst) after the start
    assert max(waits) == pytest.approx(4.0 - BURST_S)


def test_reservations_are_thread_safe() -> None:
    """Concurrent reservations account for every byte exactly once."""
    now = [0.0]
    limiter = BandwidthLimiter(1000, clock=lambda: now[0])

    def take() -> None:
        for _ in range(1000):
            limiter.reserve(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 8000 bytes at 1000 B/s, nothing elapsed: the next byte waits 8 s minus the burst
    assert limiter.reserve(0) == pytest.approx(8.0 - BURST_S)


def test_consume_waits_through_the_injected_wait(clock) -> None:
    waited: list[float] = []
    limiter = BandwidthLimiter(1000, clock, wait=waited.append)
    limiter.consume(50)
    limiter.consume(500)
    assert waited == [pytest.approx(0.5)]


def test_read_size_follows_the_rate() -> None:
    assert BandwidthLimiter(MIB).read_size(64 * 1024) == 64 * 1024
    assert BandwidthLimiter(100 * 1024).read_size(64 * 1024) == 10 * 1024
    assert BandwidthLimiter(10).read_size(64 * 1024) == MIN_READ


def test_a_rate_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        BandwidthLimiter(0)


def test_a_shared_line_is_one_bucket_for_every_process_that_opens_it(clock) -> None:
    """Two limiters on one ``SharedLine`` file (as two worker processes have): the second
    one's bytes queue behind the first one's; closing with ``remove`` deletes the file."""
    made = SharedLine.create(clock.now)
    opened = SharedLine(made.path)  # what a child does with the path it was given
    first = BandwidthLimiter(1000, clock, line=made)
    second = BandwidthLimiter(1000, clock, line=opened)
    assert first.reserve(int(1000 * BURST_S)) == pytest.approx(0.0, abs=1e-9)  # the burst
    assert second.reserve(100) == pytest.approx(0.1)  # behind the other's bytes
    assert first.reserve(100) == pytest.approx(0.2)
    opened.close()
    made.close(remove=True)
    assert not os.path.exists(made.path)
