"""What `stripe-sync` prints: results on stdout (as JSON with --json, else as text for a person), notes
on stderr, and the text of each result."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


class Output:
    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err

    def result(self, data: Any, human: Callable[[], str]) -> None:
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        else:
            self.out.write(human().rstrip("\n") + "\n")

    def note(self, text: str) -> None:
        self.err.write(text + "\n")


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def user_text(data: dict[str, Any], now: float) -> str:
    user = data["user_entitlements"]
    mode = "live" if user["livemode"] else "test"
    lines = [
        f"user {data['user_id']} ({mode} mode, version {user['version']}, updated {when(user['updated_at'])}): "
        f"everything any of {len(user['customer_ids'])} customer(s) grants: "
        + (", ".join(user["customer_ids"]) or "none"),
    ]
    lines.extend(features_text(user))
    if user["deleted"]:
        lines.append("  every customer deleted in Stripe")
    for customer in data["customers"]:
        lines.extend(["", customer_text(customer, now)])
    return "\n".join(lines)


def features_text(access: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    features = access["features"]
    if features:
        rows = [["  FEATURE", "UNTIL", "SOURCE", "NOW"]]
        for name, grant in features.items():
            until = "no end" if grant["until"] is None else when(grant["until"])
            rows.append([f"  {name}", until, grant["source"], "granted" if grant["active"] else "ended"])
        lines.append(table(rows))
    else:
        lines.append("  no features")
    lines.append(f"  payment issue: {'yes' if access['payment_issue'] else 'no'}")
    return lines


def customer_text(data: dict[str, Any], now: float) -> str:
    lines = [
        f"customer {data['customer_id']}" + (f" (user {data['user_id']})" if data.get("user_id") else "")
    ]
    entitlements = data["entitlements"]
    if entitlements is None:
        lines.append("entitlements: none (no entitlements item)")
    else:
        mode = "live" if entitlements["livemode"] else "test"
        lines.append(
            f"entitlements ({mode} mode, version {entitlements['version']}, "
            f"updated {when(entitlements['updated_at'])}):"
        )
        lines.extend(features_text(entitlements))
        if entitlements["deleted"]:
            lines.append("  customer deleted in Stripe")
    records = data["records"]
    lines.append(f"records ({len(records)}):")
    if records:
        rows = [["  KIND", "ID", "STATE", "FROM EVENT", "AT"]]
        for record in records:
            rows.append(
                [
                    f"  {record['kind']}",
                    record["id"],
                    record_state(record["record"]),
                    record["stamp"]["event_id"],
                    when(record["stamp"]["created"]),
                ]
            )
        lines.append(table(rows))
    return "\n".join(lines)


def record_state(record: dict[str, Any]) -> str:
    """A few words about a record, never personal data (no email, no names)."""
    parts = []
    for key in ("status", "payment_status"):
        if record.get(key):
            parts.append(str(record[key]))
    if record.get("cancel_at_period_end"):
        parts.append("cancels at period end")
    if record.get("current_period_end"):
        parts.append(f"period ends {when(record['current_period_end'])[:10]}")
    if record.get("refunded"):
        parts.append("refunded")
    if record.get("deleted"):
        parts.append("deleted")
    return ", ".join(parts) or "-"


def report_text(data: dict[str, Any]) -> str:
    scope = {"everything": "every subscription", "backfill": "backfill of the account"}.get(
        data["scope"], f"customer {data['scope']}"
    )
    lines = [
        f"reconcile {scope}{' (dry run)' if data['dry_run'] else ''}: "
        f"{'complete' if data['complete'] else 'not complete'}"
        + (f", stopped: {data['stopped']}" if data.get("stopped") else ""),
        f"  checked {data['checked']}, drift {data['drift']} (missing {data['missing']}, stale {data['stale']}, "
        f"extra {data['extra']}), repaired {data['repaired']}, not found {data['not_found']}, "
        f"skipped {data['skipped']}, errors {data['errors']}",
        f"  {data['pages']} page(s), {data['stripe_requests']} Stripe request(s), "
        f"{data['rate_limited']} rate-limited",
    ]
    by_kind = {kind: n for kind, n in (data.get("drift_by_kind") or {}).items() if n}
    if by_kind:
        lines.append("  drift by kind: " + ", ".join(f"{kind} {n}" for kind, n in by_kind.items()))
    if data.get("events_checked") or data.get("failed_events"):
        lines.append(
            f"  events: {data['failed_events']} undelivered by Stripe, {data['events_checked']} checked, "
            f"{data['events_applied']} already applied, {data['events_lost']} lost and queued again"
        )
    lines += [
        f"  {d['kind']}: {d['object']} {d['id']}"
        + (f" (customer {d['customer']})" if d.get("customer") else "")
        for d in data.get("drifts") or []
    ]
    # What the reconciler says needs a look: errors, objects Stripe does not know.
    lines += [f"  note: {note}" for note in data.get("messages") or []]
    return "\n".join(lines)


def short(text: str, width: int = 70) -> str:
    """One line of a table: a long reason cut (`dlq show` prints it whole)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def json_or_text(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body
