"""The micro-batcher: flush on size or on the first request's wait, bounded queue, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.gateway.core.batching import BatchingRule
from mercato.gateway.live.batcher import MicroBatcher, OverloadedError, QueueFullError


def run(coro):
    return asyncio.run(coro)


class Recorder:
    def __init__(self):
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [x * 10 for x in items]


def test_full_batch_flushes_without_waiting_for_the_timer():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(4, 3600.0))
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(4))), 5.0)
        assert results == [0, 10, 20, 30]
        assert rec.batches == [[0, 1, 2, 3]]

    run(main())


def test_partial_batch_flushes_after_max_wait_from_first_request():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(16, 0.05))
        start = time.monotonic()
        first = batcher.submit(1)
        await asyncio.sleep(0.03)
        second = batcher.submit(2)
        assert await first == 10 and await second == 20
        elapsed = time.monotonic() - start
        # one batch, flushed by the first request's deadline rather than the second one's
        assert rec.batches == [[1, 2]]
        assert elapsed >= 0.05

    run(main())


def test_quiet_queue_flushes_before_the_wait_and_arrivals_keep_it_open():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(16, 1.0, quiet_s=0.05))
        start = time.monotonic()
        first = batcher.submit(1)
        await asyncio.sleep(0.03)  # inside the quiet time: joins the first request's batch
        second = batcher.submit(2)
        assert await first == 10 and await second == 20
        elapsed = time.monotonic() - start
        assert rec.batches == [[1, 2]]
        assert 0.08 <= elapsed < 0.5  # quiet 50 ms after the second request, far before the 1 s wait
        lone = batcher.submit(3)
        await asyncio.sleep(0.2)  # nobody follows: it left after the quiet time
        assert lone.done() and rec.batches[-1] == [3]

    run(main())


def test_quiet_zero_batches_one_loop_turn_and_holds_a_lone_request_no_longer():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(16, 1.0, quiet_s=0.0))
        together = [batcher.submit(i) for i in range(3)]  # queued in one loop turn
        await asyncio.sleep(0)  # the flush runs in the next turn, nothing waits for a timer
        assert all(f.done() for f in together) and rec.batches == [[0, 1, 2]]
        start = time.monotonic()
        assert await batcher.submit(3) == 30
        assert time.monotonic() - start < 0.5 and rec.batches[-1] == [3]  # far inside the 1 s wait

    run(main())


def test_burst_is_cut_into_batches_of_at_most_max_size_in_order():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(16, 3600.0))
        futures = [batcher.submit(i) for i in range(40)]
        # 40 = 16 + 16 + 8: the last 8 wait for their timer, so do not wait an hour for them
        done = await asyncio.wait_for(asyncio.gather(*futures[:32]), 5.0)
        assert done == [10 * i for i in range(32)]
        assert [len(b) for b in rec.batches] == [16, 16]
        assert len(batcher) == 8
        batcher.close()
        with pytest.raises(RuntimeError):
            await futures[-1]

    run(main())


def test_full_queue_is_refused_at_once_with_a_retry_hint():
    async def main():
        batcher = MicroBatcher(Recorder(), BatchingRule(16, 3600.0), queue_limit=2)
        batcher.submit(1)
        batcher.submit(2)
        with pytest.raises(QueueFullError) as info:
            batcher.submit(3)
        assert info.value.retry_after_s >= 1
        batcher.close()

    run(main())


def test_flush_error_reaches_every_waiter_and_the_batcher_keeps_working():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("router exploded")
        return items

    async def main():
        batcher = MicroBatcher(flaky, BatchingRule(2, 0.01))
        bad = [batcher.submit(1), batcher.submit(2)]
        for fut in bad:
            with pytest.raises(ValueError, match="exploded"):
                await fut
        assert await batcher.submit(3) == 3

    run(main())


def test_cancelled_request_is_not_allocated():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(16, 0.02))
        gone = batcher.submit(1)
        kept = batcher.submit(2)
        gone.cancel()
        assert await kept == 20
        assert rec.batches == [[2]]

    run(main())


def test_wrong_number_of_results_is_an_error_not_a_hang():
    async def main():
        batcher = MicroBatcher(lambda items: items[:-1], BatchingRule(2, 0.01))
        with pytest.raises(RuntimeError, match="results"):
            await asyncio.wait_for(batcher.submit(1), 5.0)

    run(main())


@given(st.lists(st.integers(0, 30), min_size=1, max_size=6), st.integers(1, 8))
def test_every_item_gets_its_own_result_in_batches_no_larger_than_max(groups, max_size):
    """Arrivals in groups separated by pauses: each item is answered once, with its own result."""

    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(max_size, 0.001), queue_limit=10_000)
        futures, items = [], []
        for g, size in enumerate(groups):
            for k in range(size):
                item = g * 100 + k
                items.append(item)
                futures.append(batcher.submit(item))
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*futures), 10.0)
        assert results == [10 * x for x in items]
        assert all(1 <= len(b) <= max_size for b in rec.batches)
        assert [x for b in rec.batches for x in b] == items

    run(main())


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), BatchingRule(max_batch=0))
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), BatchingRule(max_wait_s=float("nan")))


def test_a_full_fleet_holds_requests_in_order_and_lets_them_on_as_room_opens():
    async def main():
        fleet = {"slots": 2, "busy": 0}

        def route(items: list[int]) -> list[int]:  # every routed request occupies a slot
            fleet["busy"] += len(items)
            return rec(items)

        def finish(count: int) -> None:
            fleet["busy"] -= count
            batcher.wake()

        rec = Recorder()
        batcher = MicroBatcher(route, BatchingRule(8, 0.001),
                               room=lambda: fleet["slots"] - fleet["busy"], max_hold_s=30.0)
        futures = [batcher.submit(i) for i in range(5)]
        await asyncio.sleep(0.05)
        assert rec.batches == [[0, 1]] and len(batcher) == 3  # the fleet took two; three wait
        finish(1)
        await asyncio.sleep(0.05)
        assert rec.batches == [[0, 1], [2]]  # the oldest goes first: nobody is overtaken
        fleet["slots"] = 8
        batcher.wake()
        assert await asyncio.wait_for(asyncio.gather(*futures), 5.0) == [0, 10, 20, 30, 40]
        assert rec.batches[-1] == [3, 4]

    run(main())


def test_a_request_held_past_its_bound_is_refused_with_a_retry_hint():
    async def main():
        rec = Recorder()
        batcher = MicroBatcher(rec, BatchingRule(8, 0.001), room=lambda: 0, max_hold_s=0.2)
        start = time.monotonic()
        futures = [batcher.submit(i) for i in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5.0)
        waited = time.monotonic() - start
        assert all(isinstance(r, OverloadedError) and r.retry_after_s >= 1 for r in results)
        assert 0.2 <= waited < 1.5  # bounded: refused when the hold runs out, not later
        assert rec.batches == [] and len(batcher) == 0

    run(main())


def test_a_hold_must_be_positive():
    with pytest.raises(ValueError, match="max_hold_s"):
        MicroBatcher(Recorder(), max_hold_s=0.0)
