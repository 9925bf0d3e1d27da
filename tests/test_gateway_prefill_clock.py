"""Each backend's prefill clock: FIFO prefill time that drains with time and resyncs on errors."""

from __future__ import annotations

import pytest

from mercato.gateway.core.load import BackendLoad


def test_requests_queue_one_prefill_after_another_and_the_wait_drains():
    load = BackendLoad([8, 8])
    ends = [load.dispatched(0, 0.0, 0.1) for _ in range(3)]
    assert ends == pytest.approx([0.1, 0.2, 0.3])
    assert load.prefill_wait(0.0) == pytest.approx([0.3, 0.0])
    assert load.prefill_wait(0.25) == pytest.approx([0.05, 0.0])
    assert load.prefill_wait(0.5) == pytest.approx([0.0, 0.0])
    # a request sent to a drained queue starts at once
    assert load.dispatched(0, 1.0, 0.1) == pytest.approx(1.1)


def test_a_late_first_token_delays_everything_queued_behind_it():
    load = BackendLoad([8])
    for _ in range(3):
        load.dispatched(0, 0.0, 0.1)
    load.resync(0, 0.1, 0.05)  # the first prefill took 50 ms longer than the clock thought
    assert load.prefill_wait(0.1) == pytest.approx([0.25])
    load.resync(0, 0.1, -1.0)  # an early one cannot make the queue end in the past
    assert load.prefill_wait(0.1) == pytest.approx([0.0])
    assert load.shift[0] == pytest.approx(-0.95)


def test_a_drained_queue_stays_drained_after_a_resync():
    load = BackendLoad([8])
    load.dispatched(0, 0.0, 0.1)
    load.resync(0, 5.0, 0.3)
    assert load.prefill_wait(5.0) == pytest.approx([0.0])


def test_in_flight_counts_follow_dispatch_and_release():
    load = BackendLoad([8, 8])
    load.dispatched(1, 0.0, 0.0)
    load.dispatched(1, 0.0, 0.0)
    load.released(1)
    assert list(load.inflight) == [0.0, 1.0]
