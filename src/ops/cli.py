"""`stripe-sync`: the operator's view of a deployed stack or of the local runtime.

    stripe-sync --local customer show cus_123            # what `make run` stored
    stripe-sync --stack stripe-sync-prod dlq list        # a deployed stack, by its outputs
    stripe-sync --json --stack stripe-sync-prod dlq redrive --all

Options that choose the target (--local, --stack, --endpoint-url, --region, --table, --queue-url,
--dlq-url) and --json may come before or after the command. Results go to stdout (as JSON with
--json); progress and errors to stderr. Exit status: 0 done, 1 failed, 2 bad usage.

The parser is ops.parser, the commands ops.commands, what they print ops.rendering; this module runs one
command and turns the failures an operator can act on into one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ops.commands import CommandFailed, Commands
from ops.dlq import RedriveRefused
from ops.parser import PROG, build_parser
from ops.rendering import Output
from ops.targets import ClientFactory, TargetError, TargetOptions, aws_access, resolve_target

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
        access = aws_access(options, os.environ)
        clients = ClientFactory(access)
        target = resolve_target(options, os.environ, clients, access)
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
