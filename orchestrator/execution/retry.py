"""Backoff for transient connector failures: exponential, with equal jitter, capped."""
import random


def backoff_delay(
    attempt_number: int, *, base: float, cap: float, retry_after: float | None = None, rng: random.Random
) -> float:
    """Seconds to wait before try `attempt_number` (2, 3, …).

    Equal jitter keeps each try's window [base·2^(n-3), base·2^(n-2)] above the one before, so the
    delays grow while two workers retrying together still spread out. A server's Retry-After is a
    floor, and `cap` bounds everything.
    """
    ceiling = base * 2 ** max(0, attempt_number - 2)
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)
