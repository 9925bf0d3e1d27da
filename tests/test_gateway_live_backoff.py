"""Full-jitter backoff and Retry-After parsing (mercato.gateway.live.backoff)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from mercato.gateway.live.backoff import Backoff, retry_after_s
from mercato.gateway.live.config import RetryConfig

NOW = 1_800_000_000.0


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s(formatdate(NOW + 7, usegmt=True), now=NOW) == pytest.approx(7.0)
    assert retry_after_s(formatdate(NOW - 30, usegmt=True), now=NOW) == 0.0  # already past
    for unreadable in (None, "", "-1", "1.5", "soon", "Fri, 31 Feb 2026 25:00:00 GMT"):
        assert retry_after_s(unreadable, now=NOW) is None, unreadable


def test_full_jitter_draws_uniformly_below_the_exponential_cap():
    backoff = Backoff(RetryConfig(backoff_base_s=0.1, backoff_max_s=0.3), random.Random(0))
    for attempt, cap in ((1, 0.1), (2, 0.2), (3, 0.3), (6, 0.3)):
        draws = [backoff.delay_s(attempt) for _ in range(2000)]
        assert all(d is not None and 0.0 <= d <= cap for d in draws)
        mean = sum(d for d in draws if d is not None) / len(draws)
        assert mean == pytest.approx(cap / 2, rel=0.1)  # uniform on [0, cap], not cap itself


def test_retry_after_sets_a_floor_and_a_long_one_means_fail_over():
    backoff = Backoff(RetryConfig(backoff_base_s=0.01, backoff_max_s=0.05, retry_after_max_s=2.0),
                      random.Random(1))
    assert backoff.delay_s(1, "1") == 1.0
    assert backoff.delay_s(1, "2") == 2.0
    assert backoff.delay_s(1, "3") is None
    assert backoff.delay_s(1, formatdate(None, usegmt=True)) is not None  # now: no extra wait
    assert 0.0 <= backoff.delay_s(2, "garbage") <= 0.02  # unreadable: the backoff alone
