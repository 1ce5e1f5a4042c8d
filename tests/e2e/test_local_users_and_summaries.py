"""Issue 20, through `make run`: one user with several Stripe customers, a Stripe Entitlements summary
that comes alone, and a backfill that gives an Entitlements account's customers their lookup keys."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from entitlements_reader import EntitlementsReader, UserEntitlements
from events.stripe import objects as samples
from harness.fake_stripe import FakeStripe
from tests.support.running_runtime import (
    ROOT,
    STACK,
    Runtime,
    scrubbed_environment,
    start_runtime,
    stop_runtime,
    wait_until,
)

pytestmark = pytest.mark.e2e

DAY = 86_400


def reader(runtime: Runtime) -> EntitlementsReader:
    return EntitlementsReader(STACK.table.name, livemode=False, client=runtime.aws("dynamodb"))


def purchase(customer: str, product: str, user: str, created: int) -> dict[str, Any]:
    """A paid one-time Checkout purchase whose session created its own customer (no API key here:
    the worker grants by the session's metadata)."""
    ids = samples.IdFactory(f"e2e-{customer}")
    session = samples.checkout_session(
        ids,
        id=f"cs_{customer}",
        mode="payment",
        status="complete",
        payment_status="paid",
        customer=customer,
        customer_creation="always",
        client_reference_id=user,
        amount_total=4900,
        metadata={"product_id": product},
        created=created,
    )
    return samples.event(ids, "checkout.session.completed", session, created=created)


def test_a_user_with_two_customers_has_what_both_grant_and_the_cli_shows_it(runtime: Runtime) -> None:
    user = "user_E2eTwoCustomers"
    now = int(time.time())
    course = purchase("cus_E2eCourse00001", "prod_E2eCourse", user, now - 60)
    ebook = purchase("cus_E2eEbook000001", "prod_E2eEbook", user, now - 30)
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
            env = scrubbed_environment()
            env.update(
                AWS_PORT=str(runtime.aws_port), STRIPE_API_KEY="sk_test_e2e", STRIPE_API_BASE=stripe_api.url
            )
            done = subprocess.run(
                [sys.executable, "-m", "ops", "--local", "--json", "backfill"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
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
