"""Issue 20, through `make run`: one user with several Stripe customers, a Stripe Entitlements summary
that comes alone, and a backfill that gives an Entitlements account's customers their lookup keys."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from entitlements_reader import EntitlementsReader, UserEntitlements
from events.stripe import objects as samples
from harness.fake_stripe import FakeStripe
from tests.support.running_runtime import (
    STACK,
    Runtime,
    run_module,
    start_runtime,
    stop_runtime,
    wait_until,
)
from tests.support.user_purchases import purchase

pytestmark = pytest.mark.e2e

DAY = 86_400


def one_time(product: str) -> samples.PriceSpec:
    """A one-time price of `product` (no API key here: the worker grants by the session's metadata)."""
    return samples.PriceSpec(f"price_{product}", product, recurring=False, unit_amount=4900)


def reader(runtime: Runtime) -> EntitlementsReader:
    return EntitlementsReader(STACK.table.name, livemode=False, client=runtime.aws("dynamodb"))


def test_a_user_with_two_customers_has_what_both_grant_and_the_cli_shows_it(runtime: Runtime) -> None:
    user = "user_E2eTwoCustomers"
    now = int(time.time())
    course = purchase("cus_E2eCourse00001", one_time("prod_E2eCourse"), now - 60, user)
    ebook = purchase("cus_E2eEbook000001", one_time("prod_E2eEbook"), now - 30, user)
    for event in (ebook, course):  # the later purchase first
        assert runtime.post_event(event)[1] == 200

    def both() -> UserEntitlements | None:
        access = reader(runtime).user_entitlements(user)
        return access if access is not None and len(access.customer_ids) == 2 else None

    access = wait_until(both, "the user's access from both customers")
    assert access.active_features() == {"prod_E2eCourse", "prod_E2eEbook"}
    assert access.customer_ids == ("cus_E2eCourse00001", "cus_E2eEbook000001")

    shown = runtime.cli("--json", "customer", "show", "--user", user)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["user_entitlements"]["active_features"] == ["prod_E2eCourse", "prod_E2eEbook"]
    assert [c["customer_id"] for c in view["customers"]] == ["cus_E2eCourse00001", "cus_E2eEbook000001"]
    assert [c["entitlements"]["active_features"] for c in view["customers"]] == [
        ["prod_E2eCourse"],
        ["prod_E2eEbook"],
    ]
    text = runtime.cli("customer", "show", "--user", user)
    assert "everything any of 2 customer(s) grants" in text.stdout


def test_a_summary_that_comes_alone_grants_what_stripe_says(runtime: Runtime) -> None:
    customer = "cus_E2eSummaryOnly1"
    summary = samples.active_entitlement_summary(
        customer=customer, features=[samples.FeatureSpec("pro_reports", "Pro reports")]
    )
    event = samples.event(
        samples.IdFactory("e2e-summary"),
        "entitlements.active_entitlement_summary.updated",
        summary,
        created=int(time.time()),
    )
    assert runtime.post_event(event)[1] == 200
    access = wait_until(lambda: runtime.entitlements(customer), "the summary's entitlements")
    assert access.features["pro_reports"].source == "entitlements"
    assert access.active_features() == {"pro_reports"}


def test_a_backfill_gives_an_entitlements_accounts_customer_stripes_lookup_keys(tmp_path: Path) -> None:
    customer = "cus_E2eBackfillEnt1"
    now = int(time.time())
    subscription = samples.subscription(
        samples.IdFactory("e2e-backfill-ent"),
        customer=customer,
        items=[samples.ItemSpec(samples.PriceSpec("price_E2eEnt", "prod_E2eEnt"))],
        status="active",
        created=now - 90 * DAY,
        period_start=now - DAY,
        period_end=now + 29 * DAY,
    )
    with FakeStripe() as stripe_api:
        stripe_api.put_subscription(subscription)
        stripe_api.put_active_entitlements(customer, ["pro_reports", "priority_support"])
        # No reconciler runs of its own (an hour apart): the backfill below is what finds the customer.
        runtime = start_runtime(
            tmp_path / "make-run.log",
            STRIPE_API_KEY="sk_test_e2e",
            STRIPE_API_BASE=stripe_api.url,
            RECONCILE_EVERY="3600",
        )
        try:
            wait_until(lambda: "reconcile  run finished" in runtime.output, "the first reconcile run")
            done = run_module(
                "ops",
                "--local",
                "--json",
                "backfill",
                timeout=120,
                AWS_PORT=str(runtime.aws_port),
                STRIPE_API_KEY="sk_test_e2e",
                STRIPE_API_BASE=stripe_api.url,
            )
            assert done.returncode == 0, done.stderr
            backfilled = json.loads(done.stdout)
            assert backfilled["summaries_checked"] == 1
            assert backfilled["drift_by_kind"]["entitlement_summary"] == 1

            def with_lookup_keys() -> bool:
                access = runtime.entitlements(customer)
                return access is not None and access.active_features() == {"pro_reports", "priority_support"}

            wait_until(with_lookup_keys, "the backfilled summary's lookup keys")
        finally:
            code = stop_runtime(runtime, signal.SIGTERM)
    assert code == 0, runtime.output
