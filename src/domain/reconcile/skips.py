"""Phases that cannot block each other: why a phase (or the objects of one kind) is skipped for this
pass, and what a person needs to know about it.

A Stripe failure that asking again cannot fix (a permission the key lacks, a parameter the API
rejects, a connected account that deauthorized the platform) skips the phase at once; a transient one
(connection errors, 5xx, 429s that outlast the pacer) is retried with backoff inside the run first.
Either way the pass goes on with its next phase, and the next pass tries the skipped one again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from domain.reconcile.ports import RateLimited, Refused, StripeFailure, StripeUnavailable

# Retries of a page whose Stripe request failed transiently (on top of the SDK's own), with the
# pacer's backoff (1 s, 2 s, 4 s ceilings): a short outage is waited out, a long one skips the phase.
TRANSIENT_RETRIES = 3
_PERMISSION = re.compile(r"\b(rak_[a-z0-9_]+)\b")


class SkipReason(StrEnum):
    PERMISSION = "permission"  # the key lacks a permission (a restricted key), or was rejected
    INVALID_REQUEST = "invalid_request"  # the API rejects the request (e.g. a parameter a mock lacks)
    ACCOUNT_DEAUTHORIZED = "account_deauthorized"  # the connected account refused the platform
    UNAVAILABLE = "unavailable"  # Stripe kept failing through every retry
    NO_KEY = "no_key"  # the mode's API key was removed while the pass was under way


@dataclass(frozen=True, slots=True)
class SkippedPhase:
    """A phase left for the next pass, with why: `detail` names what the key lacks when Stripe says."""

    phase: str
    mode: str | None
    account: str | None
    reason: SkipReason
    detail: str

    def message(self) -> str:
        where = f"{self.mode} mode" + (f", account {self.account}" if self.account else "")
        return f"phase {self.phase} skipped ({where}): {self.reason}: {self.detail}"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "phase": self.phase,
            "mode": self.mode,
            "account": self.account,
            "reason": str(self.reason),
            "detail": self.detail,
        }


def skip_reason(failure: StripeFailure | Exception, account: str | None) -> SkipReason:
    """Why a Stripe failure skips a phase read as `account` (None: the platform)."""
    if isinstance(failure, StripeUnavailable | RateLimited) or not isinstance(failure, StripeFailure):
        return SkipReason.UNAVAILABLE
    if account is not None and _account_refused(failure):
        return SkipReason.ACCOUNT_DEAUTHORIZED
    if failure.http_status in (401, 403):
        return SkipReason.PERMISSION
    return SkipReason.INVALID_REQUEST


def is_transient(failure: Exception) -> bool:
    return not isinstance(failure, Refused)


def missing_permission(failure: StripeFailure) -> str | None:
    """The permission a restricted key lacks, as Stripe names it (`rak_event_read`) in the error's code
    or message; None when it names none."""
    if failure.code and failure.code.startswith("rak_"):
        return failure.code
    found = _PERMISSION.search(failure.message)
    return found.group(1) if found else None


def skip_detail(failure: StripeFailure | Exception, reason: SkipReason) -> str:
    """What the log and the report say: for a permission, what the key lacks, then Stripe's words."""
    said = str(failure) if not isinstance(failure, StripeFailure) else failure.message
    status = f"{failure.http_status} " if isinstance(failure, StripeFailure) and failure.http_status else ""
    if reason is SkipReason.PERMISSION and isinstance(failure, StripeFailure):
        lacking = missing_permission(failure)
        if lacking:
            return f"the API key lacks {lacking} (Stripe: {status}{said})"
        return f"the API key is not allowed this request (Stripe: {status}{said})"
    return f"{type(failure).__name__}: {status}{said}"


def _account_refused(failure: StripeFailure) -> bool:
    """A connected account that deauthorized the platform answers `account_invalid`, or 401/403 for a
    request that a restricted key's permissions would otherwise allow (no `rak_…` named)."""
    if failure.code == "account_invalid":
        return True
    return failure.http_status in (401, 403) and missing_permission(failure) is None
