"""Admission slots: a reader that found the lookahead full waits for a batch of free slots."""

from __future__ import annotations

import threading

from poolfetch.core.admission import _Slots


def test_a_reader_that_found_no_slot_waits_for_a_batch_then_takes_them_one_by_one() -> None:
    slots = _Slots(16)  # a batch of 4 (a quarter of the lookahead)
    assert all(slots.try_take() for _ in range(16))
    assert not slots.try_take()
    for _ in range(3):
        slots.release()
    assert not slots.try_take()  # 3 free: still short of a batch
    slots.release()
    assert [slots.try_take() for _ in range(5)] == [True, True, True, True, False]


def test_a_small_lookahead_never_waits_for_more_slots_than_it_has() -> None:
    slots = _Slots(1)
    assert slots.try_take() and not slots.try_take()
    slots.release()
    assert slots.try_take()


def test_take_gives_up_when_cancelled() -> None:
    slots = _Slots(1)
    cancelled = threading.Event()
    assert slots.take(cancelled)
    cancelled.set()
    assert not slots.take(cancelled)
