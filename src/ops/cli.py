"""`stripe-sync`: the operator's view of a deployed stack or of the local runtime.

    stripe-sync --local customer show cus_123            # what `make run` stored
    stripe-sync --stack stripe-sync-prod dlq list        # a deployed stack, by its outputs
    stripe-sync --json --stack stripe-sync-prod dlq redrive --all

Options that choose the target (--local, --stack, --endpoint-url, --region, --table, --queue-url,
--dlq-url) and --json may come before or after the command. Results go to stdout (as JSON with
--json); progress and errors to stderr. Exit status: 0 done, 1 failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from ops.dlq import DeadLetterQueue, ParkedMessage, RedriveRefused
from ops.progress import Progress
from ops.refetch import FETCHABLE_TYPES
from ops.targets import ClientFactory, Target, TargetError, TargetOptions, prepare_environment, resolve_target

PROG = "stripe-sync"
DEFAULT_LIST_LIMIT = 100


class CommandFailed(RuntimeError):
    """The command ran and could not do what was asked (exit status 1)."""


# -- the parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and repair the Stripe -> DynamoDB sync: customers, the dead-letter queue, "
        "refetches from Stripe, reconcile runs.",
        epilog="Target: --local for `make run` (127.0.0.1:$AWS_PORT), --stack NAME for a deployed stack, "
        "or --table/--queue-url/--dlq-url (env TABLE_NAME, QUEUE_URL, DLQ_URL) with your AWS profile. "
        f"`{PROG} COMMAND --help` describes each command.",
    )
    _target_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    customer = commands.add_parser("customer", help="a customer's entitlements and records")
    customer_commands = customer.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = _leaf(customer_commands, "show", "entitlements (as backend services read them) and records")
    who = show.add_mutually_exclusive_group(required=True)
    who.add_argument("customer_id", nargs="?", help="Stripe customer id (cus_…) or customer_account id")
    who.add_argument(
        "--user",
        metavar="USER_ID",
        help="your application's user id: the user's access across all their customers, and each customer",
    )
    show.add_argument(
        "--live", action="store_true", help="with --user: the live-mode customer (default test)"
    )

    dlq = commands.add_parser("dlq", help="the dead-letter queue: list, show, redrive")
    dlq_commands = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _leaf(dlq_commands, "list", "the messages parked in the dead-letter queue")
    listing.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_LIST_LIMIT,
        help=f"at most this many (default {DEFAULT_LIST_LIMIT})",
    )
    show_message = _leaf(dlq_commands, "show", "one parked message: attributes and the event it carries")
    show_message.add_argument("message_id", help="the SQS message id (from `dlq list`)")
    redrive = _leaf(
        dlq_commands,
        "redrive",
        "send messages back to the event queue (same group and deduplication id), then delete them "
        "from the dead-letter queue",
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?", help="the SQS message id (from `dlq list`)")
    which.add_argument("--all", action="store_true", help="every message in the dead-letter queue")
    redrive.add_argument(
        "--force",
        action="store_true",
        help="also messages sent less than 5 minutes ago (SQS FIFO would drop them as duplicates; "
        "safe on the local runtime)",
    )

    refetch = commands.add_parser("refetch", help="fetch from Stripe and queue into the customer's group")
    refetch_commands = refetch.add_subparsers(dest="action", metavar="ACTION", required=True)
    obj = _leaf(refetch_commands, "object", "fetch an object and queue it as a synthetic sync.fetched event")
    obj.add_argument("object_type", choices=FETCHABLE_TYPES, help="the Stripe object type")
    obj.add_argument("object_id", help="its id (sub_…, in_…, cs_…, pi_…, ch_…, dp_…, cus_…)")
    event = _leaf(refetch_commands, "event", "fetch an event (Stripe keeps 30 days) and queue it")
    event.add_argument("event_id", help="evt_…")
    for leaf in (obj, event):
        leaf.add_argument("--live", action="store_true", help="use the live-mode API key (default test)")
        leaf.add_argument("--account", metavar="ACCT_ID", help="Connect: the connected account (acct_…)")

    reconcile = _leaf(
        commands,
        "reconcile",
        "compare the table with Stripe and queue repairs (the scheduled reconciler, run now)",
    )
    reconcile.add_argument("--customer", metavar="CUSTOMER_ID", help="only this customer (cus_…)")
    reconcile.add_argument("--dry-run", action="store_true", help="report drift without queueing repairs")
    reconcile.add_argument(
        "--time-budget",
        type=_positive_int,
        metavar="SECONDS",
        help="stop after about this long; the next run resumes (default RECONCILE_TIME_BUDGET_SECONDS or 780)",
    )
    backfill = _leaf(
        commands,
        "backfill",
        "walk the Stripe account once (after the first deploy) and queue every subscription, paid "
        "purchase, granting payment, refund, lost dispute and customer with a user id that the table lacks",
    )
    backfill.add_argument("--dry-run", action="store_true", help="report what would be queued, queue nothing")
    backfill.add_argument(
        "--since",
        metavar="DATE",
        type=_since,
        help="only objects created on or after this date (YYYY-MM-DD, UTC; default: all)",
    )
    backfill.add_argument(
        "--time-budget",
        type=_positive_int,
        metavar="SECONDS",
        help="length of each run; runs follow each other until the backfill is done, each resuming "
        "from the backfill's cursor (default RECONCILE_TIME_BUDGET_SECONDS or 780)",
    )
    return parser


def _since(text: str) -> int:
    from domain.reconcile import InvalidRequest, parse_since  # noqa: PLC0415

    try:
        return parse_since(text)
    except InvalidRequest as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _leaf(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
    _target_options(parser, suppress=True)
    return parser


def _target_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """On the top-level parser with defaults, on every command without (so either place works)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("target and output")
    group.add_argument("--json", action="store_true", default=default(False), help="print results as JSON")
    group.add_argument(
        "--local",
        action="store_true",
        default=default(False),
        help="the local runtime (`make run`) on 127.0.0.1:$AWS_PORT (default 5000), dummy credentials",
    )
    group.add_argument(
        "--stack", default=default(None), metavar="NAME", help="a deployed stack: names from its outputs"
    )
    group.add_argument(
        "--endpoint-url",
        default=default(None),
        metavar="URL",
        help="AWS endpoint (default: AWS_ENDPOINT_URL or AWS)",
    )
    group.add_argument(
        "--region", default=default(None), help="AWS region (default: AWS_REGION or the profile's)"
    )
    group.add_argument(
        "--table", default=default(None), metavar="NAME", help="the sync table (env TABLE_NAME)"
    )
    group.add_argument(
        "--queue-url", default=default(None), metavar="URL", help="the event queue (env QUEUE_URL)"
    )
    group.add_argument(
        "--dlq-url", default=default(None), metavar="URL", help="the dead-letter queue (env DLQ_URL)"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


# -- output -----------------------------------------------------------------------------------------


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


# -- commands ---------------------------------------------------------------------------------------


class Commands:
    def __init__(self, target: Target, clients: ClientFactory, output: Output, env: dict[str, str]) -> None:
        self.target = target
        self.clients = clients
        self.output = output
        self.env = env

    # customer show

    def customer_show(self, args: argparse.Namespace) -> None:
        from ops.customers import (  # noqa: PLC0415
            customer_for_user,
            show_customer,
            user_access,
            user_as_dict,
        )

        table_name = self.target.require_table()
        dynamodb = self.clients("dynamodb")
        now = time.time()
        user = user_access(dynamodb, table_name, args.user, livemode=args.live) if args.user else None
        if user is not None:
            # A user may have several customers: their access is what any of them grants.
            customers = [
                show_customer(
                    dynamodb,
                    table_name,
                    customer,
                    endpoint_url=self.target.endpoint_url,
                    region=self.target.region,
                ).as_dict(now)
                for customer in user.customer_ids
            ]
            shown = {
                "user_id": args.user,
                "user_entitlements": user_as_dict(user, now),
                "customers": customers,
            }
            self.output.result(shown, lambda: _user_text(shown, now))
            return
        customer_id = args.customer_id or customer_for_user(
            dynamodb, table_name, args.user, livemode=args.live
        )
        view = show_customer(
            dynamodb,
            table_name,
            customer_id,
            endpoint_url=self.target.endpoint_url,
            region=self.target.region,
        )
        data = view.as_dict(now)
        if args.user:
            data["user_id"] = args.user
        self.output.result(data, lambda: _customer_text(data, now))

    # dlq

    def _dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.clients("sqs"), self.target.require_dlq())

    def dlq_list(self, args: argparse.Namespace) -> None:
        dlq = self._dlq()
        messages = dlq.browse(limit=args.limit)
        dlq.release(messages)
        depth = dlq.depth()
        data = {"queue_url": dlq.url, "depth": depth, "messages": [m.summary() for m in messages]}

        def human() -> str:
            if not messages:
                return (
                    "the dead-letter queue is empty"
                    if depth == 0
                    else f"{depth} message(s), none visible now"
                )
            rows = [["MESSAGE ID", "EVENT", "TYPE", "GROUP", "TRIES", "SENT", "REASON"]]
            rows += [
                [
                    m.message_id,
                    str(m.event.get("id", "?")),
                    str(m.event.get("type", "?")),
                    m.group_id or "-",
                    str(m.receive_count),
                    when(m.sent_at),
                    _short(m.reason) if m.reason else "tries used up (see the worker's log)",
                ]
                for m in messages
            ]
            text = table(rows)
            if depth > len(messages):
                text += (
                    f"\n{depth - len(messages)} more not shown (--limit, or later messages of a group that "
                    "SQS FIFO hides while the earlier ones are read)"
                )
            return text

        self.output.result(data, human)

    def dlq_show(self, args: argparse.Namespace) -> None:
        dlq = self._dlq()
        found = self._find(dlq, args.message_id)
        data = {**found.summary(), "attributes": found.attributes, "body": _json_or_text(found.body)}

        def human() -> str:
            lines = [f"message {found.message_id}"]
            lines.append(
                f"  reason: {found.reason} ({found.failure_type})"
                if found.reason
                else "  reason: none recorded: SQS moved it after maxReceiveCount tries (see the worker's log)"
            )
            lines += [f"  {name}: {value}" for name, value in sorted(found.attributes.items())]
            lines.append("body:")
            body = data["body"]
            lines.append(json.dumps(body, indent=2) if not isinstance(body, str) else body)
            return "\n".join(lines)

        self.output.result(data, human)

    def dlq_redrive(self, args: argparse.Namespace) -> None:
        dlq = self._dlq()
        queue_url = self.target.require_queue()
        if args.all:
            moved, refused = self._redrive_all(dlq, queue_url, force=args.force)
        else:
            message = self._find(dlq, args.message_id, keep=True)
            try:
                if not args.force:
                    dlq.check_redrivable(message)
                moved = [{**message.summary(), "new_message_id": dlq.redrive(message, queue_url)}]
            except BaseException:
                dlq.release([message])
                raise
            refused = []
        data = {"redriven": moved, "refused": refused, "left_in_dlq": dlq.depth()}

        def human() -> str:
            lines = [f"redriven {m['message_id']} ({m['event_id']}, {m['event_type']})" for m in moved]
            lines += [f"left in the DLQ: {r['message_id']}: {r['reason']}" for r in refused]
            lines.append(f"{len(moved)} redriven, {data['left_in_dlq']} left in the dead-letter queue")
            return "\n".join(lines)

        self.output.result(data, human)
        if refused and not moved:
            raise CommandFailed("nothing redriven")

    def _redrive_all(
        self, dlq: DeadLetterQueue, queue_url: str, *, force: bool
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        progress = Progress(dlq.depth(), "redriven", self.output.err)
        moved: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        held: list[ParkedMessage] = []  # refused ones stay hidden until the end, so the loop ends
        try:
            while batch := dlq.receive():
                for message in batch:
                    try:
                        if not force:
                            dlq.check_redrivable(message)
                    except RedriveRefused as refusal:
                        held.append(message)
                        refused.append({"message_id": message.message_id, "reason": str(refusal)})
                        continue
                    moved.append({**message.summary(), "new_message_id": dlq.redrive(message, queue_url)})
                    progress.advance()
        finally:
            progress.finish()
            dlq.release(held)
        return moved, refused

    def _find(self, dlq: DeadLetterQueue, message_id: str, *, keep: bool = False) -> ParkedMessage:
        """One message; it stays hidden when `keep` (to be redriven), else it is made visible again."""
        found = dlq.find(message_id)
        if found is None:
            raise CommandFailed(
                f"no message {message_id} in the dead-letter queue (or hidden right now: being read, or "
                "behind an earlier message of its FIFO group)"
            )
        if not keep:
            dlq.release([found])
        return found

    # refetch

    def _stripe(self) -> Any:
        from adapters.stripe_api import StripeApi  # noqa: PLC0415 - the stripe SDK only when needed
        from ops.refetch import stripe_api_keys  # noqa: PLC0415

        keys = stripe_api_keys(self.env, self.target.secret_id, self.clients)
        return StripeApi(keys, self.env.get("STRIPE_API_BASE") or None)

    def refetch_object(self, args: argparse.Namespace) -> None:
        from ops.refetch import refetch_object  # noqa: PLC0415

        queue_url = self.target.require_queue()
        queued = refetch_object(
            self._stripe(),
            self.clients("sqs"),
            queue_url,
            args.object_type,
            args.object_id,
            livemode=args.live,
            account=args.account,
        )
        self.output.result(
            queued.as_dict(),
            lambda: (
                f"queued {queued.event_id} ({queued.event_type}) for {args.object_type} {args.object_id} "
                f"into group {queued.group_id}"
            ),
        )

    def refetch_event(self, args: argparse.Namespace) -> None:
        from ops.refetch import refetch_event  # noqa: PLC0415

        queue_url = self.target.require_queue()
        queued = refetch_event(
            self._stripe(),
            self.clients("sqs"),
            queue_url,
            args.event_id,
            livemode=args.live,
            account=args.account,
        )
        self.output.result(
            queued.as_dict(),
            lambda: f"queued {queued.event_id} ({queued.event_type}) into group {queued.group_id}",
        )

    # reconcile

    def reconcile(self, args: argparse.Namespace) -> None:
        from ops.reconcile import run_reconcile  # noqa: PLC0415

        report = run_reconcile(
            self.target,
            self.env,
            customer=args.customer,
            dry_run=args.dry_run,
            time_budget_seconds=args.time_budget,
            progress_stream=self.output.err,
        )
        data = report.as_dict()
        self.output.result(data, lambda: _report_text(data))
        if report.counts.errors or report.stopped not in (None, "time budget"):
            raise CommandFailed(f"reconcile stopped: {report.stopped or f'{report.counts.errors} error(s)'}")

    def backfill(self, args: argparse.Namespace) -> None:
        from ops.backfill import run_backfill  # noqa: PLC0415

        report = run_backfill(
            self.target,
            self.env,
            since=args.since,
            dry_run=args.dry_run,
            time_budget_seconds=args.time_budget,
            progress_stream=self.output.err,
        )
        data = report.as_dict()
        self.output.result(data, lambda: _report_text(data))
        if not report.complete:
            raise CommandFailed(
                f"backfill stopped: {report.stopped or 'not complete'}; run it again to resume"
            )


def _user_text(data: dict[str, Any], now: float) -> str:
    user = data["user_entitlements"]
    mode = "live" if user["livemode"] else "test"
    lines = [
        f"user {data['user_id']} ({mode} mode, version {user['version']}, updated {when(user['updated_at'])}): "
        f"everything any of {len(user['customer_ids'])} customer(s) grants: "
        + (", ".join(user["customer_ids"]) or "none"),
    ]
    lines.extend(_features_text(user))
    if user["deleted"]:
        lines.append("  every customer deleted in Stripe")
    for customer in data["customers"]:
        lines.extend(["", _customer_text(customer, now)])
    return "\n".join(lines)


def _features_text(access: dict[str, Any]) -> list[str]:
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


def _customer_text(data: dict[str, Any], now: float) -> str:
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
        lines.extend(_features_text(entitlements))
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
                    _record_state(record["record"]),
                    record["stamp"]["event_id"],
                    when(record["stamp"]["created"]),
                ]
            )
        lines.append(table(rows))
    return "\n".join(lines)


def _record_state(record: dict[str, Any]) -> str:
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


def _report_text(data: dict[str, Any]) -> str:
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


def _short(text: str, width: int = 70) -> str:
    """One line of a table: a long reason cut (`dlq show` prints it whole)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def _json_or_text(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


# -- main -------------------------------------------------------------------------------------------

DISPATCH: dict[tuple[str, str | None], Callable[[Commands, argparse.Namespace], None]] = {
    ("customer", "show"): Commands.customer_show,
    ("dlq", "list"): Commands.dlq_list,
    ("dlq", "show"): Commands.dlq_show,
    ("dlq", "redrive"): Commands.dlq_redrive,
    ("refetch", "object"): Commands.refetch_object,
    ("refetch", "event"): Commands.refetch_event,
    ("reconcile", None): Commands.reconcile,
    ("backfill", None): Commands.backfill,
}


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    output = Output(args.json, out, err)
    options = TargetOptions(
        endpoint_url=args.endpoint_url,
        region=args.region,
        stack=args.stack,
        local=args.local,
        table=args.table,
        queue_url=args.queue_url,
        dlq_url=args.dlq_url,
    )
    try:
        prepare_environment(options, os.environ)
        clients = ClientFactory()
        target = resolve_target(options, os.environ, clients)
        command = DISPATCH[(args.command, getattr(args, "action", None))]
        command(Commands(target, clients, output, dict(os.environ)), args)
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as error:
        message = _failure_message(error)
        if message is None:
            raise
        err.write(f"{PROG}: {message}\n")
        return 1
    return 0


def _failure_message(error: Exception) -> str | None:
    """A one-line reason for the errors an operator can act on; None for bugs (shown with a traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from adapters.event_queue import QueueUnavailable  # noqa: PLC0415
    from domain.credentials import CredentialsError  # noqa: PLC0415
    from ops.customers import CustomerNotFound  # noqa: PLC0415
    from ops.refetch import MissingApiKey  # noqa: PLC0415

    if isinstance(error, TargetError | CommandFailed | CustomerNotFound | MissingApiKey | CredentialsError):
        return str(error)
    if isinstance(error, RedriveRefused | QueueUnavailable):
        return str(error)
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"AWS: {details.get('Code', 'error')}: {details.get('Message', error)}"
    if isinstance(error, BotoCoreError):
        return f"AWS: {error}"
    stripe_message = _stripe_failure(error)
    if stripe_message is not None:
        return stripe_message
    from domain.stripe_objects import NotAtStripe  # noqa: PLC0415

    if isinstance(error, NotAtStripe):
        return f"Stripe: {error}"
    if isinstance(error, LookupError | ValueError):
        return f"{type(error).__name__}: {error}"
    return None


def _stripe_failure(error: Exception) -> str | None:
    if "stripe" not in sys.modules:
        return None
    import stripe  # noqa: PLC0415

    if isinstance(error, stripe.StripeError):
        return f"Stripe: {error.user_message or error}"
    return None
