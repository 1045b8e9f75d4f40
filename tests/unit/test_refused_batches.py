"""`RefusedBatches`: which sequence gaps a leader explains by its own recent refusals (issue 12)."""

from __future__ import annotations

import time

from workbench.broker.refused_batches import PER_PRODUCER, RefusedBatches, producer_of
from workbench.protocol.blocking_client import make_batch


def batch(seq: int, pid: int = 7, epoch: int = 0) -> bytes:
    return make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_producer_fields_are_read_from_the_batch_header():
    assert producer_of(batch(5, pid=123, epoch=4)) == (123, 4, 5)
    assert producer_of(make_batch([b"plain"])) is None  # not idempotent
    assert producer_of(b"short") is None
    assert producer_of(None) is None


def test_a_gap_starting_at_a_refused_batch_is_explained_until_that_batch_is_written():
    r = RefusedBatches()
    r.note("t", 0, batch(3), "the ISR is too small")
    # The partition expects 3 next: batch 4 must wait for 3.
    assert "sequence 3" in (r.explains("t", 0, batch(4), lambda pid, epoch: 3) or "")
    # Once 3 is written the partition expects 4: nothing to explain.
    assert r.explains("t", 0, batch(4), lambda pid, epoch: 4) is None
    # A gap elsewhere (expects 1, the refused 3 is not the missing one) is the producer's problem.
    assert r.explains("t", 0, batch(4), lambda pid, epoch: 1) is None
    # An unknown producer takes any sequence, so nothing after a refused batch may go first.
    assert r.explains("t", 0, batch(5), lambda pid, epoch: None) is not None
    # The refused batch itself, another epoch, producer or partition: nothing to explain.
    assert r.explains("t", 0, batch(3), lambda pid, epoch: 3) is None
    assert r.explains("t", 0, batch(4, epoch=1), lambda pid, epoch: 0) is None
    assert r.explains("t", 0, batch(4, pid=8), lambda pid, epoch: 3) is None
    assert r.explains("t", 1, batch(4), lambda pid, epoch: 3) is None
    assert r.explains("t", 0, make_batch([b"plain"]), lambda pid, epoch: 3) is None


def test_refusals_are_forgotten_after_the_window_and_bounded_in_number():
    r = RefusedBatches(window_s=0.05, max_entries=3)
    r.note("t", 0, batch(1), "x")
    time.sleep(0.1)
    assert r.explains("t", 0, batch(2), lambda pid, epoch: 1) is None
    assert len(r) == 0
    for pid in range(10):
        r.note("t", 0, batch(1, pid=pid), "x")
    assert len(r) == 3  # the oldest producers' entries went first
    assert r.explains("t", 0, batch(2, pid=0), lambda pid, epoch: 1) is None
    assert r.explains("t", 0, batch(2, pid=9), lambda pid, epoch: 1) is not None
    for seq in range(100):
        r.note("t", 0, batch(seq, pid=9), "x")
    assert r.explains("t", 0, batch(200, pid=9), lambda pid, epoch: 100 - PER_PRODUCER) is not None
    assert r.explains("t", 0, batch(200, pid=9), lambda pid, epoch: 100 - PER_PRODUCER - 1) is None
