"""backoff_delay: equal-jitter windows that grow with each try, a Retry-After floor, and a cap over both."""
import random

import pytest

from orchestrator.execution.retry import backoff_delay

SEEDS = range(300)
BASE_SECONDS = 1.0
NO_CAP = 1_000.0

# Hand-written from DESIGN §5 and the docstring: try n waits within [base·2^(n-3), base·2^(n-2)].
WINDOWS_FOR_BASE_ONE = {
    2: (0.5, 1.0),
    3: (1.0, 2.0),
    4: (2.0, 4.0),
    5: (4.0, 8.0),
    6: (8.0, 16.0),
}


class EdgeRandom(random.Random):
    """A Random whose uniform() always answers one end of the range, to pin the window's edges."""

    def __init__(self, edge: str):
        super().__init__(0)
        self.edge = edge

    def uniform(self, a, b):
        return a if self.edge == "low" else b


@pytest.mark.parametrize(("attempt_number", "window"), sorted(WINDOWS_FOR_BASE_ONE.items()))
def test_each_try_waits_within_its_window_for_every_seed(attempt_number, window):
    low, high = window
    delays = [
        backoff_delay(attempt_number, base=BASE_SECONDS, cap=NO_CAP, rng=random.Random(seed)) for seed in SEEDS
    ]

    assert all(low <= delay <= high for delay in delays), (min(delays), max(delays))
    # Jitter: workers retrying together spread over the window instead of waking at one instant.
    assert len(set(delays)) > len(SEEDS) // 2
    assert max(delays) - min(delays) > (high - low) / 2


@pytest.mark.parametrize(("attempt_number", "window"), sorted(WINDOWS_FOR_BASE_ONE.items()))
def test_the_window_edges_are_exact(attempt_number, window):
    low, high = window

    assert backoff_delay(attempt_number, base=BASE_SECONDS, cap=NO_CAP, rng=EdgeRandom("low")) == low
    assert backoff_delay(attempt_number, base=BASE_SECONDS, cap=NO_CAP, rng=EdgeRandom("high")) == high


def test_delays_grow_from_try_to_try_whatever_the_seed():
    for seed in SEEDS:
        rng = random.Random(seed)
        delays = [backoff_delay(number, base=BASE_SECONDS, cap=NO_CAP, rng=rng) for number in range(2, 7)]
        assert delays == sorted(delays), f"seed {seed}: {delays}"
    # Across all seeds, the shortest wait before try n+1 is no shorter than the longest before try n.
    by_try = {
        number: [backoff_delay(number, base=BASE_SECONDS, cap=NO_CAP, rng=random.Random(seed)) for seed in SEEDS]
        for number in range(2, 7)
    }
    for number in range(2, 6):
        assert min(by_try[number + 1]) >= max(by_try[number])
        assert sum(by_try[number + 1]) > 1.9 * sum(by_try[number])  # roughly doubles on average


def test_the_window_scales_with_base():
    for seed in SEEDS:
        delay = backoff_delay(4, base=0.02, cap=NO_CAP, rng=random.Random(seed))
        assert 0.04 <= delay <= 0.08


def test_the_cap_bounds_every_delay():
    cap_seconds = 5.0
    for seed in SEEDS:
        rng = random.Random(seed)
        delays = [backoff_delay(number, base=BASE_SECONDS, cap=cap_seconds, rng=rng) for number in range(2, 20)]
        assert max(delays) == cap_seconds
        assert all(delay <= cap_seconds for delay in delays)
        # Tries whose whole window lies above the cap wait exactly the cap.
        assert delays[-10:] == [cap_seconds] * 10


def test_retry_after_is_a_floor():
    for seed in SEEDS:
        delay = backoff_delay(2, base=0.02, cap=1.0, retry_after=0.3, rng=random.Random(seed))
        assert delay == 0.3


def test_retry_after_below_the_window_changes_nothing():
    for seed in SEEDS:
        without = backoff_delay(5, base=BASE_SECONDS, cap=NO_CAP, rng=random.Random(seed))
        with_short_hint = backoff_delay(5, base=BASE_SECONDS, cap=NO_CAP, retry_after=0.1, rng=random.Random(seed))
        assert with_short_hint == without


def test_retry_after_is_capped():
    delay = backoff_delay(2, base=0.02, cap=1.0, retry_after=3600.0, rng=random.Random(1))
    assert delay == 1.0


def test_zero_retry_after_is_no_floor():
    delay = backoff_delay(3, base=BASE_SECONDS, cap=NO_CAP, retry_after=0.0, rng=EdgeRandom("low"))
    assert delay == 1.0


def test_the_same_seed_gives_the_same_delays():
    def delays_for(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(number, base=BASE_SECONDS, cap=NO_CAP, rng=rng) for number in range(2, 7)]

    assert delays_for(42) == delays_for(42)
    assert delays_for(42) != delays_for(43)
