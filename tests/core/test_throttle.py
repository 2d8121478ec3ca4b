"""Client-side adaptive throttling: silent while the server accepts, sending about k
times the accepts once it refuses, forgetting refusals older than its window."""

from __future__ import annotations

import pytest

from berth_core.throttle import THROTTLED, AdaptiveThrottle, from_k
from tests.fake_clock import FakeClock


def test_it_never_refuses_while_the_server_accepts():
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(1000.0), rng=lambda: 0.0)  # refuses if p > 0
    for _ in range(1000):
        assert throttle.allow()
        throttle.record(accepted=True)
    assert throttle.rejection_probability() == 0.0


def test_the_probability_follows_requests_and_accepts():
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(1000.0))
    for i in range(100):
        throttle.allow()
        throttle.record(accepted=i < 20)  # the server accepted 20 of 100
    assert throttle.rejection_probability() == pytest.approx((100 - 2 * 20) / 101)
    assert THROTTLED in throttle.refusal() and "accepted 20 of 100" in throttle.refusal()


def test_under_refusals_it_sends_about_k_times_what_is_accepted():
    """The server accepts at most 50 a second whatever it is sent; the client attempts
    500 a second for 20 s: after the first window it sends about 2 x 50, not 500."""
    clock = FakeClock(1000.0)
    throttle = AdaptiveThrottle(k=2, clock=clock)  # the real random numbers
    sent_per_second = []
    for _second in range(20):
        sent = 0
        for _ in range(500):
            clock.now += 1 / 500
            if throttle.allow():
                sent += 1
                throttle.record(accepted=sent <= 50)  # the first 50 of each second
        sent_per_second.append(sent)
    steady = sent_per_second[10:]
    assert 80 <= sum(steady) / len(steady) <= 130


def test_a_client_with_few_calls_is_never_throttled():
    """Below 20 attempts in the window every call goes out, refused or not: one refused
    call's retries reach the server."""
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(1000.0), rng=lambda: 0.0)
    for _ in range(20):
        assert throttle.rejection_probability() == 0.0
        assert throttle.allow()
        throttle.record(accepted=False)
    assert throttle.rejection_probability() == pytest.approx(20 / 21)
    assert not throttle.allow()


def test_refusals_older_than_the_window_are_forgotten():
    clock = FakeClock(1000.0)
    throttle = AdaptiveThrottle(k=2, window_s=10, clock=clock, rng=lambda: 0.0)
    for _ in range(100):
        throttle.allow()
        throttle.record(accepted=False)
    assert throttle.rejection_probability() > 0.9
    clock.now += 9
    assert throttle.rejection_probability() > 0.9  # still inside the window
    clock.now += 1
    assert throttle.rejection_probability() == 0.0
    assert throttle.allow() and (throttle.requests, throttle.accepts) == (1, 0)


def test_bad_settings_and_off():
    assert from_k(0) is None and from_k(None) is None
    assert from_k(2).k == 2
    with pytest.raises(ValueError, match="k must be >= 1"):
        AdaptiveThrottle(k=0.5)
    with pytest.raises(ValueError, match="window must be >= 1 s"):
        AdaptiveThrottle(window_s=0)
