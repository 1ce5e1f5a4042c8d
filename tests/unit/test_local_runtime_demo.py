"""`make demo`'s pieces: which secret it signs with, its customers, how it shows entitlements."""

from __future__ import annotations

import time

import pytest

from entitlements_reader import CustomerEntitlements, FeatureGrant
from local_runtime.demo import DemoError, demo_customer_id, demo_secret, entitlements_text


def test_the_demo_signs_with_the_runtimes_secret_for_test_mode() -> None:
    assert demo_secret({"STRIPE_WEBHOOK_SECRET": "whsec_a"}, 3000) == "whsec_a"
    assert demo_secret({"STRIPE_WEBHOOK_SECRET": "live:whsec_live, test:whsec_test"}, 3000) == "whsec_test"
    with pytest.raises(DemoError, match="no secret for test mode"):
        demo_secret({"STRIPE_WEBHOOK_SECRET": "live:whsec_live"}, 3000)
    with pytest.raises(DemoError, match="webhook secret #1") as raised:
        demo_secret({"STRIPE_WEBHOOK_SECRET": "sk_test_not_a_secret"}, 3000)
    assert "sk_test_not_a_secret" not in str(raised.value)


def test_without_the_variable_the_demo_finds_the_generated_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "local_runtime.demo.read_generated_secret", lambda port: "whsec_local_gen" if port == 3007 else None
    )
    assert demo_secret({}, 3007) == "whsec_local_gen"
    with pytest.raises(DemoError, match="same STRIPE_WEBHOOK_SECRET as `make run`"):
        demo_secret({}, 3008)


def test_each_run_and_story_gets_its_own_customer() -> None:
    ids = {demo_customer_id(run, index) for run in (1795454662, 1795454663) for index in (1, 2, 3, 4)}
    assert len(ids) == 8
    assert all(i.startswith("cus_Demo") and len(i) == len("cus_") + 14 for i in ids)


def utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def test_entitlements_in_words() -> None:
    now = time.time()
    access = CustomerEntitlements(
        customer_id="cus_1",
        livemode=False,
        features={
            "pro": FeatureGrant(None, "sub_1"),
            "course": FeatureGrant(int(now) - 60, "cs_1"),
            "api": FeatureGrant(int(now) + 86_400, "sub_1"),
        },
        payment_issue=True,
        deleted=False,
        version=3,
        updated_at=int(now),
    )
    assert entitlements_text(access, now=now) == (
        f"api (until {utc(int(now) + 86_400)}), course (ended {utc(int(now) - 60)}), pro (no end) [payment issue]  v3"
    )
    assert entitlements_text(None) == "no entitlements item yet"
