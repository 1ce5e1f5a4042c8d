"""One readable line per thing that happens, instead of the functions' JSON logs.

The handlers log as they do in AWS: one JSON object per line on stdout (the webhook with `print`,
the worker and the reconciler through Powertools Logger). The runtime replaces `sys.stdout` with a
`HandlerOutput` before it imports them; every line a handler writes while the runtime invokes it is
read back here and turned into a sentence: received / queued / rejected from the webhook, applied /
stale / duplicate / ignored / failed with the entitlements before -> after from the worker.

Only what the logs carry is shown: ids, types, outcomes, reasons, feature names and their ends;
never a secret, a signature or anything personal from the payload. With LOG_LEVEL=DEBUG the JSON
lines are shown as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from domain.entitlement_events import SOURCE

_source = threading.local()
WORKER_OUTCOMES = ("applied", "stale", "duplicate", "ignored", "guest", "unmatched")
OUTCOME_EXPLANATIONS = {
    "stale": "older than what is stored, nothing written",
    "duplicate": "applied before, nothing written",
    "ignored": "changes no record",
    "guest": "no customer: stored as a guest purchase",
    "unmatched": "dispute or refund of a payment no customer's purchase knows: stored",
}


@contextlib.contextmanager
def source(name: str) -> Iterator[None]:
    """Lines written by this thread meanwhile come from function `name` (webhook, worker, reconcile)."""
    previous = getattr(_source, "name", None)
    _source.name = name
    try:
        yield
    finally:
        _source.name = previous


class Console:
    def __init__(
        self,
        out: TextIO,
        *,
        max_receive_count: int,
        visibility_timeout: int,
        debug: bool,
        cli: str = "stripe-sync --local",
    ) -> None:
        self._out = out
        self._cli = cli
        self._lock = threading.Lock()
        self._max_receive_count = max_receive_count
        self._visibility_timeout = visibility_timeout
        self.debug = debug

    def line(self, who: str, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock:
            self._out.write(f"{stamp}  {who:<9}  {text}\n")
            self._out.flush()

    def raw(self, text: str) -> None:
        with self._lock:
            self._out.write(text if text.endswith("\n") else text + "\n")
            self._out.flush()

    # -- the handlers' log lines ------------------------------------------------------------------

    def handler_line(self, who: str, text: str) -> None:
        record = _json_object(text)
        if record is None or "level" not in record or "message" not in record:
            self.raw(text)  # not a log record (a stray print): shown as it is
            return
        if self.debug:
            self.raw(text)
        if who == "webhook":
            self._webhook(record)
        elif who == "worker":
            self._worker(record)
        elif who == "publisher" and isinstance(record.get("detail"), Mapping):
            self.line("publisher", change_text(record))
            # The event as a backend's rule receives it (its envelope's source, detail-type, detail).
            published = {
                "source": SOURCE,
                "detail-type": record.get("detail_type"),
                "detail": record["detail"],
            }
            self.raw(" " * 21 + json.dumps(published, sort_keys=True))
        elif who == "eventbridge" and record.get("event_id"):
            self._eventbridge(record)
        else:
            self._other(who, record)

    def _webhook(self, record: Mapping[str, Any]) -> None:
        outcome = record.get("outcome")
        status = record.get("status")
        if outcome == "queued":
            group = f" (group {record['message_group']})" if record.get("message_group") else ""
            reference = ", by reference: the worker fetches it" if record.get("by_reference") else ""
            self.line("webhook", f"received {_event(record)} -> queued{group}{reference}")
        elif outcome == "rejected":
            about = f" {_event(record)}" if record.get("event_id") else ""
            self.line("webhook", f"rejected{about}: {status} {record.get('reason', '')}".rstrip())
        elif outcome == "failed":
            detail = record.get("reason") or record.get("error") or record.get("message")
            self.line("webhook", f"FAILED {_event(record)}: {status} {detail} (Stripe retries)")
        else:
            self._other("webhook", record)

    def _eventbridge(self, record: Mapping[str, Any]) -> None:
        message = str(record.get("message"))
        if message == "eventbridge queued":
            group = f" (group {record['message_group']})" if record.get("message_group") else ""
            self.line("eventbridge", f"received {_event(record)} -> queued{group}")
        elif message == "eventbridge rejected":
            self.line("eventbridge", f"rejected {_event(record)}: {record.get('reason', '')}".rstrip())
        else:
            detail = record.get("error") or record.get("reason") or message
            self.line("eventbridge", f"FAILED {_event(record)}: {detail}")

    def _worker(self, record: Mapping[str, Any]) -> None:
        outcome = record.get("outcome")
        if outcome in WORKER_OUTCOMES:
            self.line("worker", self._result(record))
        elif record.get("message") == "event parked in the dead-letter queue":
            self.line(
                "worker",
                f"{_event(record)}: PARKED in the dead-letter queue ({record.get('reason')}): retrying "
                f"cannot fix it; its customer's later events go on. {self._cli} dlq show "
                f"{record.get('dead_letter_message_id')}",
            )
        elif record.get("level") in ("WARNING", "ERROR", "CRITICAL") and record.get("event_id"):
            self.line("worker", self._failure(record))
        else:
            self._other("worker", record)

    def _result(self, record: Mapping[str, Any]) -> str:
        outcome = str(record["outcome"])
        customer = f" for {record['customer_id']}" if record.get("customer_id") else ""
        text = f"{_event(record)}: {outcome}{customer}"
        if outcome == "applied":
            if record.get("entitlements_changed"):
                before = access_text(record.get("entitlements_before"))
                after = access_text(record.get("entitlements_after"))
                text += f"; entitlements {before} -> {after}"
            else:
                text += "; entitlements unchanged"
        else:
            text += f" ({record.get('reason') or OUTCOME_EXPLANATIONS.get(outcome, '')})"
        notes = record.get("notes")
        if isinstance(notes, list) and notes:
            text += "; note: " + "; ".join(str(note) for note in notes)
        return text

    def _failure(self, record: Mapping[str, Any]) -> str:
        reason = record.get("reason")
        if not reason:
            trace = record.get("stack_trace")
            value = trace.get("value") if isinstance(trace, Mapping) else None
            reason = f"{record.get('exception_name', 'error')}: {value}" if value else record.get("message")
        text = f"{_event(record)}: FAILED ({reason})"
        count = str(record.get("receive_count", ""))
        tries = int(count) if count.isdigit() else None
        # The worker sets the retry delay (domain.retry_schedule); without it the visibility timeout.
        delay = record.get("retry_in_seconds")
        retried_in = delay if isinstance(delay, int) else self._visibility_timeout
        if tries is not None and tries >= self._max_receive_count:
            text += f", try {tries}/{self._max_receive_count}: goes to the dead-letter queue"
        elif tries is not None:
            text += f", try {tries}/{self._max_receive_count}: retried in {retried_in} s"
        else:
            text += f"; retried in {retried_in} s"
        if self.debug and record.get("exception"):
            text += "\n" + str(record["exception"])
        return text

    def _other(self, who: str, record: Mapping[str, Any]) -> None:
        level = str(record.get("level"))
        if level == "DEBUG" and not self.debug:
            return
        if who == "worker" and level == "INFO" and not self.debug:
            return  # Powertools' own chatter; the results above are what matters
        shown = {
            key: value
            for key, value in record.items()
            if isinstance(value, int | float | str | bool)
            and key not in ("level", "message", "timestamp", "service", "location", "cold_start")
            and not key.startswith(("function_", "xray"))
        }
        details = " ".join(f"{key}={value}" for key, value in shown.items())
        prefix = "" if level == "INFO" else f"{level} "
        self.line(who, f"{prefix}{record['message']} {details}".rstrip())

    # -- the table's stream (local_runtime.table_stream.StreamObserver) -----------------------------

    def stream_batch_failed(self, size: int, error: BaseException) -> None:
        self.line(
            "publisher", f"batch of {size} stream records FAILED ({type(error).__name__}: {error}); retried"
        )

    def stream_batch_given_up(self, size: int, attempts: int) -> None:
        self.line(
            "publisher",
            f"{size} stream records given up after {attempts} tries (in AWS: described in the publisher's DLQ)",
        )

    # -- the event source mapping (local_runtime.event_source.EventSourceObserver) -------------------

    def batch_failed(self, size: int, error: BaseException) -> None:
        if isinstance(error, BatchProcessingError):
            return  # every message failed and each said why above
        self.line(
            "worker",
            f"invocation FAILED ({type(error).__name__}: {error}): "
            f"all {size} message(s) retried in {self._visibility_timeout} s",
        )

    def deletes_failed(self, count: int, reason: str) -> None:
        self.line(
            "queue", f"{count} processed message(s) not deleted ({reason}): they will be delivered again"
        )

    def moved_to_dead_letter_queue(self, message_id: str, receive_count: int) -> None:
        self.line(
            "queue", f"message {message_id} received {receive_count} times: moved to the dead-letter queue"
        )

    def dead_letter_queue_depth(self, depth: int) -> None:
        if depth:
            self.line("dlq", f"{depth} message(s) in the dead-letter queue: {self._cli} dlq list")
        else:
            self.line("dlq", "the dead-letter queue is empty")

    def poll_failed(self, error: BaseException) -> None:
        self.line("queue", f"polling failed ({type(error).__name__}: {error}); trying again")


class HandlerOutput(io.TextIOBase):
    """`sys.stdout` while the runtime runs: lines from a handler go to the console as sentences."""

    def __init__(self, console: Console, passthrough: TextIO) -> None:
        super().__init__()
        self._console = console
        self._passthrough = passthrough
        self._buffers = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        who = getattr(_source, "name", None)
        if who is None:
            self._passthrough.write(text)
            return len(text)
        pending = getattr(self._buffers, "text", "") + text
        *lines, rest = pending.split("\n")
        self._buffers.text = rest
        for line in lines:
            if line.strip():
                self._console.handler_line(who, line)
        return len(text)

    def flush(self) -> None:
        self._passthrough.flush()


def access_text(access: object) -> str:
    """The worker's log of access ({features: {name: until}, payment_issue, deleted}) in words."""
    if not isinstance(access, Mapping):
        return "none"
    return access_in_words(
        access.get("features") or {}, bool(access.get("payment_issue")), bool(access.get("deleted"))
    )


def access_in_words(
    until: Mapping[str, int | None], payment_issue: bool, deleted: bool, now: float | None = None
) -> str:
    """Each feature with its end (past or to come) and the flags: what the console and the demo print."""
    at = time.time() if now is None else now
    parts = []
    for name, end in sorted(until.items()):
        if end is None:
            parts.append(f"{name} (no end)")
        elif end > at:
            parts.append(f"{name} (until {when(end)})")
        else:
            parts.append(f"{name} (ended {when(end)})")
    text = ", ".join(parts) if parts else "no features"
    if payment_issue:
        text += " [payment issue]"
    if deleted:
        text += " [customer deleted]"
    return text


def change_text(record: Mapping[str, Any]) -> str:
    """A published (or parked) "entitlements changed" event in words: whose, which version, why, and
    access before -> after."""
    detail: Mapping[str, Any] = record["detail"]
    who = detail.get("customer_id") or f"user {detail.get('user_id')}"
    user = f" (user {detail['user_id']})" if detail.get("customer_id") and detail.get("user_id") else ""
    verb = "PARKED in the DLQ" if "parked" in str(record.get("message")) else str(record.get("detail_type"))
    text = f"{verb} {who}{user} v{detail.get('version')}"
    if detail.get("cause_event_id"):
        text += f" (cause {detail['cause_event_id']})"
    return f"{text}: {access_text(_plain_access(detail.get('before')))} -> {access_text(_plain_access(detail.get('after')))}"


def _plain_access(access: object) -> object:
    """The event's access (features with until and source) as the worker logs it (features with until)."""
    if not isinstance(access, Mapping):
        return access
    features = access.get("features")
    plain = (
        {name: grant.get("until") for name, grant in features.items()}
        if isinstance(features, Mapping)
        else {}
    )
    return {**access, "features": plain}


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _event(record: Mapping[str, Any]) -> str:
    return f"{record.get('event_id', '?')} ({record.get('event_type', '?')})"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
