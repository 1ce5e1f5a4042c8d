"""How a run spends its time: a deadline, requests spaced under Stripe's rate limits, and 429s waited
out with exponential backoff and jitter."""

from __future__ import annotations

from collections.abc import Callable

from domain.reconcile.ports import RateLimited

# 429s: waits whose ceiling doubles from 1 s to 32 s (half of it jitter); after 8 waits (~2 min) the
# page counts as failing for now (domain.reconcile.skips).
RATE_LIMIT_FIRST_WAIT_SECONDS = 1.0
RATE_LIMIT_LONGEST_WAIT_SECONDS = 32.0
RATE_LIMIT_MAX_RETRIES = 8


def backoff_seconds(retry: int, jitter: float) -> float:
    """Wait before retry number `retry` (1, 2, …) after a 429: doubling from the first wait up to the
    longest, half of it fixed and half random (`jitter` in [0, 1)) so that runs do not retry in step."""
    if retry < 1 or not 0.0 <= jitter < 1.0:
        raise ValueError("retry counts from 1 and jitter lies in [0, 1)")
    ceiling = min(RATE_LIMIT_LONGEST_WAIT_SECONDS, RATE_LIMIT_FIRST_WAIT_SECONDS * 2.0 ** (retry - 1))
    return ceiling / 2 + ceiling / 2 * jitter


# A Lambda context's remaining time keeps this much back (at most a tenth) for the last save and report.
CONTEXT_RESERVE_SECONDS = 60.0


class TimeBudgetSpent(Exception):
    """The run's time is up before the page could finish; it is redone by the next run."""


class RateLimitPersisted(Exception):
    """Stripe kept answering 429 through every backoff."""


def time_budget(configured_seconds: float, remaining_millis: int | None) -> float:
    """The run's budget: the configured one, and never past the Lambda's remaining time less a reserve."""
    if remaining_millis is None:
        return configured_seconds
    remaining = remaining_millis / 1000
    return max(0.0, min(configured_seconds, remaining - min(CONTEXT_RESERVE_SECONDS, remaining / 10)))


class Deadline:
    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._clock = clock
        self._ends_at = clock() + seconds

    def allows(self, seconds: float) -> bool:
        """Whether something taking `seconds` would end before the deadline (a zero budget allows nothing)."""
        return self._clock() + seconds < self._ends_at


class StripePacer:
    """Every Stripe request of a run goes through here: at most `per_second`, and 429s (RateLimited)
    waited out with exponential backoff and jitter (the SDK retries connection errors, 409s and 5xx
    itself)."""

    def __init__(
        self,
        per_second: float,
        deadline: Deadline,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
    ) -> None:
        self._interval = 1.0 / per_second
        self._deadline = deadline
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._next_at = 0.0
        self.requests = 0
        self.rate_limited = 0

    def call[T](self, request: Callable[[], T]) -> T:
        retry = 0
        while True:
            self._wait_turn()
            self.requests += 1
            try:
                return request()
            except RateLimited:
                self.rate_limited += 1
                retry += 1
                if retry > RATE_LIMIT_MAX_RETRIES:
                    raise RateLimitPersisted(f"Stripe answered 429 {retry} times in a row") from None
                self.wait(backoff_seconds(retry, self._jitter()))

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, or raise TimeBudgetSpent when the wait would outlast the run."""
        if not self._deadline.allows(seconds):
            raise TimeBudgetSpent from None
        self._sleep(seconds)

    def jitter(self) -> float:
        return self._jitter()

    def _wait_turn(self) -> None:
        now = self._clock()
        if now < self._next_at:
            self._sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval
