"""The tokenizer's admission bucket: the rate on average, the burst at once, no more."""

from __future__ import annotations

import pytest

from berth_core.admission import REFUSAL, TokenBucket, from_parameters
from tests.fake_clock import FakeClock


def test_a_full_bucket_admits_its_burst_then_the_rate():
    clock = FakeClock(100.0)
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.admit() for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.admit() for _ in range(3)] == [True, True, False]
    clock.now += 60  # a quiet minute refills the burst, not more
    assert sum(bucket.admit() for _ in range(10)) == 3


def test_over_a_second_it_admits_the_rate_whatever_is_offered():
    clock = FakeClock(100.0)
    bucket = TokenBucket(rate=200, burst=20, clock=clock)
    admitted = 0
    for _ in range(1000):  # 1,000 requests in one second: 5 times the rate
        clock.now += 0.001
        admitted += bucket.admit()
    assert admitted == pytest.approx(200 + 20, abs=1)


def test_the_rate_is_shared_by_the_instances_and_off_at_zero():
    assert from_parameters(0, 0, 2) is None
    bucket = from_parameters(400, 0, 2)
    assert (bucket.rate, bucket.burst) == (200, 20)  # per instance; a tenth of a second
    assert from_parameters(5, 0, 1).burst == 1
    assert REFUSAL in bucket.refusal() and "200 requests/s" in bucket.refusal()
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=-1, burst=1)
