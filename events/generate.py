"""Writes the sample Lambda events in this folder; re-run it before `sam local invoke`.

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

from events import lambda_events

API_VERSION = "2025-03-31.basil"  # items carry the period; invoices name parent.subscription_details

CUSTOMER = "cus_TgS1o8vcGmoR32"
SUBSCRIPTION = "sub_1SkQ2hB7WZ01zgkW4yVd9aLm"
INVOICE = "in_1SkQ2hB7WZ01zgkWqT5uXc0P"
PRICE = "price_1PgafmB7WZ01zgkW6dKueIc5"
PRODUCT = "prod_QXg1hqf4jFNsqG"
PERIOD_START = 1767261600  # 2026-01-01T10:00:00Z
PERIOD_END = 1769940000  # 2026-02-01T10:00:00Z

Json = dict[str, Any]


def price() -> Json:
    return {
        "id": PRICE,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1721948530,
        "currency": "usd",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": "pro_monthly",
        "metadata": {},
        "nickname": None,
        "product": PRODUCT,
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": 2000,
        "unit_amount_decimal": "2000",
    }


def subscription() -> Json:
    """An active monthly subscription as Stripe sends it (shape of fixtures3.json's)."""
    return {
        "id": SUBSCRIPTION,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": PERIOD_START,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic"},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": PERIOD_START,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": "pm_1SkQ2fB7WZ01zgkWa8LmBvQy",
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_TgS1Vn2h0Jczwc",
                    "object": "subscription_item",
                    "billing_thresholds": None,
                    "created": PERIOD_START,
                    "current_period_end": PERIOD_END,
                    "current_period_start": PERIOD_START,
                    "discounts": [],
                    "metadata": {},
                    "plan": {
                        "id": PRICE,
                        "object": "plan",
                        "active": True,
                        "amount": 2000,
                        "amount_decimal": "2000",
                        "billing_scheme": "per_unit",
                        "created": 1721948530,
                        "currency": "usd",
                        "interval": "month",
                        "interval_count": 1,
                        "livemode": False,
                        "metadata": {},
                        "meter": None,
                        "nickname": None,
                        "product": PRODUCT,
                        "tiers_mode": None,
                        "transform_usage": None,
                        "trial_period_days": None,
                        "usage_type": "licensed",
                    },
                    "price": price(),
                    "quantity": 1,
                    "subscription": SUBSCRIPTION,
                    "tax_rates": [],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={SUBSCRIPTION}",
        },
        "latest_invoice": INVOICE,
        "livemode": False,
        "metadata": {"user_id": "user_42"},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": PERIOD_START,
        "status": "active",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def invoice() -> Json:
    """The subscription's first invoice, paid (newer API versions: parent.subscription_details)."""
    return {
        "id": INVOICE,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Example SaaS",
        "amount_due": 2000,
        "amount_overpaid": 0,
        "amount_paid": 2000,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "billing_reason": "subscription_create",
        "collection_method": "charge_automatically",
        "created": PERIOD_START,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_account": None,
        "customer_email": "jenny.rosen@example.com",
        "customer_name": "Jenny Rosen",
        "discounts": [],
        "due_date": None,
        "effective_at": PERIOD_START,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1Pga/test_sample",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1Pga/test_sample/pdf",
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_1SkQ2hB7WZ01zgkWmV3bLx9K",
                    "object": "line_item",
                    "amount": 2000,
                    "currency": "usd",
                    # Non-ASCII on purpose: the signature covers UTF-8 bytes.
                    "description": "1 \u00d7 Pro (at $20.00 / month)",
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": INVOICE,
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": SUBSCRIPTION,
                            "subscription_item": "si_TgS1Vn2h0Jczwc",
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": PERIOD_END, "start": PERIOD_START},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": PRICE, "product": PRODUCT},
                        "type": "price_details",
                        "unit_amount_decimal": "2000",
                    },
                    "quantity": 1,
                    "taxes": [],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{INVOICE}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": "8F3A1C2D-0001",
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {"user_id": "user_42"}, "subscription": SUBSCRIPTION},
            "type": "subscription_details",
        },
        "period_end": PERIOD_START,
        "period_start": PERIOD_START,
        "status": "paid",
        "status_transitions": {
            "finalized_at": PERIOD_START,
            "marked_uncollectible_at": None,
            "paid_at": PERIOD_START + 2,
            "voided_at": None,
        },
        "subtotal": 2000,
        "test_clock": None,
        "total": 2000,
    }


def stripe_event(event_id: str, event_type: str, created: int, data_object: Json) -> Json:
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_Vd3kLq8ZpXy2Nb", "idempotency_key": "5b6f0a2e-6c1d-4d7e-9a51-0c9e3f1b2a77"},
        "type": event_type,
    }


SUBSCRIPTION_CREATED = stripe_event(
    "evt_1SkQ2iB7WZ01zgkWnN3xZ7Qa", "customer.subscription.created", PERIOD_START + 1, subscription()
)
INVOICE_PAID = stripe_event("evt_1SkQ2jB7WZ01zgkWp4Hc8TfR", "invoice.paid", PERIOD_START + 3, invoice())


def stripe_body(event: Json) -> str:
    """The body as Stripe sends it: pretty-printed JSON, UTF-8, kept byte for byte."""
    return json.dumps(event, indent=2, ensure_ascii=False)


def webhook_event(secret: str, signed_at: int, *, base64_body: bool) -> Json:
    """API Gateway HTTP API (payload format 2.0) request for POST /webhooks/stripe."""
    raw = stripe_body(SUBSCRIPTION_CREATED).encode()
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


def sqs_record(event: Json, sequence: int, sent_ms: int) -> Json:
    return lambda_events.sqs_record(
        stripe_body(event),
        event_id=event["id"],
        group=event["data"]["object"]["customer"],
        sequence=sequence,
        sent_ms=sent_ms,
    )


def worker_batch() -> Json:
    return lambda_events.sqs_batch(
        [
            sqs_record(SUBSCRIPTION_CREATED, 1, (PERIOD_START + 1) * 1000 + 412),
            sqs_record(INVOICE_PAID, 2, (PERIOD_START + 3) * 1000 + 87),
        ]
    )


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
