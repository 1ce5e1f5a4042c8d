"""The `stripe-sync` commands against a resolved target: customers, the dead-letter queue, refetches,
reconcile and backfill. Each renders its result through ops.rendering.Output."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ops.dlq import DeadLetterQueue, ParkedMessage, RedriveRefused
from ops.progress import Progress
from ops.rendering import (
    Output,
    customer_text,
    json_or_text,
    report_text,
    short,
    table,
    user_text,
    when,
)
from ops.targets import ClientFactory, Target


class CommandFailed(RuntimeError):
    """The command ran and could not do what was asked (exit status 1)."""


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
                show_customer(dynamodb, self.target.table(), customer).as_dict(now)
                for customer in user.customer_ids
            ]
            shown = {
                "user_id": args.user,
                "user_entitlements": user_as_dict(user, now),
                "customers": customers,
            }
            self.output.result(shown, lambda: user_text(shown, now))
            return
        customer_id = args.customer_id or customer_for_user(
            dynamodb, table_name, args.user, livemode=args.live
        )
        view = show_customer(dynamodb, self.target.table(), customer_id)
        data = view.as_dict(now)
        if args.user:
            data["user_id"] = args.user
        self.output.result(data, lambda: customer_text(data, now))

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
                    short(m.reason) if m.reason else "tries used up (see the worker's log)",
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
        data = {**found.summary(), "attributes": found.attributes, "body": json_or_text(found.body)}

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
                moved = [
                    {
                        **message.summary(),
                        "new_message_id": dlq.redrive(message, queue_url, forced=args.force),
                    }
                ]
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
                    moved.append(
                        {**message.summary(), "new_message_id": dlq.redrive(message, queue_url, forced=force)}
                    )
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
        self.output.result(data, lambda: report_text(data))
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
        self.output.result(data, lambda: report_text(data))
        if not report.complete:
            raise CommandFailed(
                f"backfill stopped: {report.stopped or 'not complete'}; run it again to resume"
            )
