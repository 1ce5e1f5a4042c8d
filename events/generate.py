"""Writes the sample Lambda events in this folder; re-run it before `sam local invoke`.

The Stripe events are the `signup_paid` scenario's (events.scenarios, at the API version the pinned
SDK speaks): the webhook samples carry its `customer.subscription.created`, the worker's batch that
event and its `invoice.paid`. Nothing here writes a Stripe object by hand.

The webhook events are signed with a timestamp of now, and the webhook rejects a signature
older than SIGNATURE_TOLERANCE_SECONDS (300 s), so a committed event goes stale in five
minutes. Usage (from the repository root):

    .venv/bin/python -m events.generate                    # signs with whsec_local_sample_secret
    .venv/bin/python -m events.generate --secret whsec_... # signs with your endpoint's secret

Everything but the signature timestamp is fixed, so the diff after a run shows only that.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from events import lambda_events, scenarios

Json = dict[str, Any]

SCENARIO = "signup_paid"
WEBHOOK_EVENT = "customer.subscription.created"
WORKER_EVENTS = ("customer.subscription.created", "invoice.paid")
# How long after an event's creation the webhook queued it, and SQS first handed it out (ms).
QUEUED_AFTER_MS = 412


def sample_events() -> dict[str, Json]:
    """The scenario's events by type (each type the samples use occurs once in it)."""
    events = scenarios.build(SCENARIO).events
    return {event["type"]: event for event in events if event["type"] in {WEBHOOK_EVENT, *WORKER_EVENTS}}


def webhook_event(secret: str, signed_at: int, *, base64_body: bool) -> Json:
    """API Gateway HTTP API (payload format 2.0) request for POST /webhooks/stripe."""
    raw = scenarios.render(sample_events()[WEBHOOK_EVENT])
    # Payload format 2.0 lower-cases header names.
    headers = {
        "accept": "*/*; q=0.5, application/xml",
        "cache-control": "no-cache",
        "content-length": str(len(raw)),
        "content-type": "application/json; charset=utf-8",
        "host": f"{lambda_events.API_ID}.execute-api.{lambda_events.REGION}.amazonaws.com",
        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "x-amzn-trace-id": lambda_events.TRACE_ROOT,
        "x-forwarded-for": lambda_events.STRIPE_SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    return lambda_events.webhook_event(
        raw, secret, timestamp=signed_at, base64_body=base64_body, headers=headers
    )


def worker_batch() -> Json:
    """The FIFO batch the webhook queues for the worker: one record per event, in order."""
    events = sample_events()
    records = []
    for sequence, event_type in enumerate(WORKER_EVENTS, start=1):
        event = events[event_type]
        records.append(
            lambda_events.sqs_record(
                scenarios.render(event).decode("utf-8"),
                event_id=event["id"],
                group=event["data"]["object"]["customer"],
                sequence=sequence,
                sent_ms=int(event["created"]) * 1000 + QUEUED_AFTER_MS,
            )
        )
    return lambda_events.sqs_batch(records)


def write(path: Path, document: Json) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--secret", default=lambda_events.SAMPLE_SECRET, help="whsec_… to sign with (default: %(default)s)"
    )
    parser.add_argument("--timestamp", type=int, default=None, help="signature time, epoch s (default: now)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args(argv)
    signed_at = args.timestamp if args.timestamp is not None else int(time.time())
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "webhook_apigw_v2.json", webhook_event(args.secret, signed_at, base64_body=False))
    write(args.out / "webhook_apigw_v2_base64.json", webhook_event(args.secret, signed_at, base64_body=True))
    write(args.out / "worker_sqs_batch.json", worker_batch())
    write(args.out / "reconcile_schedule.json", lambda_events.schedule_event())
    print(f"wrote events to {args.out} (signed at {signed_at}; valid for 300 s)")


if __name__ == "__main__":
    main()
