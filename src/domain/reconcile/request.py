"""What a run is asked to do (the Lambda event, the ops CLI) and the RECONCILE_* options, parsed once
and checked: a bad value is an InvalidRequest that names the setting."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_TIME_BUDGET_SECONDS = 780.0  # of Lambda's 900 s: time left to save the cursor and report
# Stripe allows 100 requests/s in live mode and 25 in a sandbox (test mode), and 25/s per endpoint
# unless documented otherwise: a run calls one endpoint at a time, so 20/s stays under every limit
# and leaves room for the worker's own calls.
DEFAULT_MAX_REQUESTS_PER_SECOND = 20.0
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")


@dataclass(frozen=True, slots=True)
class Everything:
    """Every subscription of every mode with an API key, resumable over several runs."""


@dataclass(frozen=True, slots=True)
class OneCustomer:
    customer_id: str  # cus_…, or a customer_account id


@dataclass(frozen=True, slots=True)
class Backfill:
    """Walk an existing account once (after the first deploy): every object that can grant access,
    created at or after `since` (epoch seconds; None: all of them), resumable from its own cursor."""

    since: int | None = None


Scope = Everything | OneCustomer | Backfill


class InvalidRequest(ValueError):
    """A run request or a setting the reconciler cannot use (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    scope: Scope
    dry_run: bool


def run_request(event: object, *, dry_run_default: bool = False) -> RunRequest:
    """The Lambda event -> what to do: `{"dry_run": true}`, `{"customer": "cus_…"}`,
    `{"backfill": true, "since": "2024-01-31"}` (since optional), with or without dry_run, or any
    other event (the schedule's) for a full run."""
    if event is None:
        return RunRequest(Everything(), dry_run_default)
    if not isinstance(event, Mapping):
        raise InvalidRequest("the event must be a JSON object")
    dry_run = event.get("dry_run", dry_run_default)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run must be true or false")
    backfill = event.get("backfill", False)
    if not isinstance(backfill, bool):
        raise InvalidRequest("backfill must be true or false")
    customer = event.get("customer")
    if backfill:
        if customer is not None:
            raise InvalidRequest("a backfill walks the whole account: it takes no customer")
        since = event.get("since")
        if since is not None and not isinstance(since, str):
            raise InvalidRequest("since must be a date such as 2024-01-31")
        return RunRequest(Backfill(parse_since(since) if since else None), dry_run)
    if "since" in event:
        raise InvalidRequest("since applies to a backfill only")
    if customer is None:
        return RunRequest(Everything(), dry_run)
    if not isinstance(customer, str) or not _CUSTOMER_ID.match(customer):
        raise InvalidRequest("customer must be a Stripe customer id such as cus_…")
    return RunRequest(OneCustomer(customer), dry_run)


def parse_since(text: str) -> int:
    """`--since` / `"since"`: a date (YYYY-MM-DD, midnight UTC) or a date and time in ISO 8601."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"since must be a date such as 2024-01-31, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    requeue_failed_events: bool = True  # on by default: a wrong secret or an outage is repaired
    dry_run: bool = False


def options_from(env: Mapping[str, str]) -> ReconcileOptions:
    """RECONCILE_TIME_BUDGET_SECONDS, RECONCILE_MAX_REQUESTS_PER_SECOND, RECONCILE_REQUEUE_FAILED_EVENTS,
    RECONCILE_DRY_RUN; unset or empty means the default."""
    defaults = ReconcileOptions()
    return ReconcileOptions(
        time_budget_seconds=_positive(env, "RECONCILE_TIME_BUDGET_SECONDS", defaults.time_budget_seconds),
        max_requests_per_second=_positive(
            env, "RECONCILE_MAX_REQUESTS_PER_SECOND", defaults.max_requests_per_second
        ),
        requeue_failed_events=_flag(env, "RECONCILE_REQUEUE_FAILED_EVENTS", defaults.requeue_failed_events),
        dry_run=_flag(env, "RECONCILE_DRY_RUN", defaults.dry_run),
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise InvalidRequest(f"{name} must be a positive number, got {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = (env.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"{name} must be true or false, got {text!r}")
