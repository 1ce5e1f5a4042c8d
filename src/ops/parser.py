"""The `stripe-sync` command line: its commands, their options, and the options that choose the target
(which may come before or after the command)."""

from __future__ import annotations

import argparse
from typing import Any

from ops.refetch import FETCHABLE_TYPES

PROG = "stripe-sync"
DEFAULT_LIST_LIMIT = 100


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
