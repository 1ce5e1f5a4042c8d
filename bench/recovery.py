"""Recovery benchmark (issue 17): how soon the worker recovers from what real accounts see, measured
through the local runtime (`make run`: moto, the webhook, the event source mapping, worker processes)
with the template's queue settings (visibility timeout 720 s, maxReceiveCount).

* Stripe outage: a one-time Checkout purchase whose line items the worker must fetch is posted while
  a fake Stripe (harness.fake_stripe, through STRIPE_API_BASE) answers 503 to everything for
  RECOVERY_BENCH_OUTAGE_SECONDS (default 30, the issue's figure). Measured: from Stripe answering
  again to the purchase's features in the entitlements item. Target: within 60 s. Before issue 17
  the failed event came back only after the 720 s visibility timeout.
* Unparseable event: a subscription signup whose `customer.subscription.created` cannot be read
  (its object has no `status`), posted with the customer's other events, on a runtime without an
  API key. Measured: from the post of the event queued right behind it (same customer, same FIFO
  group) to the worker's outcome for that event. Target: within 60 s. Before issue 17 the group
  waited 5 x 720 s for the unparseable event to reach the dead-letter queue.

Baselines from the same run: the same purchase with Stripe answering (post to granted), and the same
signup with nothing unparseable (post to outcome of the same event).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_SECONDS = 60.0
OUTAGE_SECONDS = float(os.environ.get("RECOVERY_BENCH_OUTAGE_SECONDS", "30"))
WAIT_LIMIT_SECONDS = 300.0
SECRET = "whsec_bench_recovery_0123456789"
API_KEY = "sk_test_bench_recovery_0123456789"
POLL_SECONDS = 0.1


def _post_all(runtime: Any, events: list[dict[str, Any]]) -> dict[str, float]:
    """POST each event signed, in order; the wall-clock time each was answered 200."""
    from events import scenarios
    from harness import load

    answered: dict[str, float] = {}
    for event in events:
        delivery = load.Delivery(str(event["id"]), "", scenarios.render(event))
        post = load.post_signed(runtime.webhook_url, SECRET, delivery)
        if post.status != 200:
            raise RuntimeError(f"{event['id']} answered {post.status}: {post.error}")
        answered[delivery.event_id] = post.sent_at + post.seconds
    return answered


def _wait(check: Callable[[], float | None], what: str) -> float:
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{what}: not within {WAIT_LIMIT_SECONDS:.0f} s")


def _granted_at(runtime: Any, customer_id: str) -> Callable[[], float | None]:
    from entitlements_reader import EntitlementsReader

    reader = EntitlementsReader(runtime.stack.table.name, livemode=False, client=runtime.aws("dynamodb"))

    def check() -> float | None:
        access = reader.entitlements(customer_id)
        return time.time() if access is not None and access.features else None

    return check


def _outcome_at(runtime: Any, event_id: str) -> Callable[[], float | None]:
    from harness import load

    def check() -> float | None:
        return next((o.at for o in load.worker_outcomes(runtime.output()) if o.event_id == event_id), None)

    return check


def _purchase(customer_id: str) -> Any:
    from events.scenarios import ScenarioParams, build

    return build("one_time_purchase", ScenarioParams(customer_id=customer_id), ends_at=int(time.time()))


def stripe_outage(folder: Path) -> tuple[float, float]:
    """(baseline post-to-granted, outage end-to-granted) in seconds."""
    from harness import load
    from harness.fake_stripe import FakeStripe

    with FakeStripe() as fake:
        settings = {"STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": fake.url, "RECONCILE_EVERY": "86400"}
        with load.RuntimeProcess(folder / "outage.log", SECRET, settings=settings) as runtime:
            warm, calm = _purchase("cus_RecoveryWarm01"), _purchase("cus_RecoveryCalm01")
            stormy = _purchase("cus_RecoveryStorm1")
            for scenario in (warm, calm, stormy):
                fake.load(scenario.api_objects, scenario.api_lists)
            # A first purchase warms the worker processes' clients; the baseline is the second.
            _post_all(runtime, warm.events)
            _wait(_granted_at(runtime, "cus_RecoveryWarm01"), "the first purchase")
            posted = _post_all(runtime, calm.events)
            baseline = _wait(
                _granted_at(runtime, "cus_RecoveryCalm01"), "the purchase without an outage"
            ) - max(posted.values())

            fake.fail(503, times=1_000_000)  # every request, until recover()
            _post_all(runtime, stormy.events)
            time.sleep(OUTAGE_SECONDS)
            failed_during = fake.count("/v1/", status=503)
            if _granted_at(runtime, "cus_RecoveryStorm1")() is not None:
                raise RuntimeError("granted during the outage: the purchase did not need Stripe")
            fake.recover()
            answering_again = time.time()
            granted = _wait(_granted_at(runtime, "cus_RecoveryStorm1"), "the purchase after the outage")
            print(
                f"  outage: {failed_during} Stripe requests answered 503 in {OUTAGE_SECONDS:.0f} s; "
                f"log {runtime.log}",
                flush=True,
            )
            return baseline, granted - answering_again


def unparseable_event(folder: Path) -> tuple[float, float]:
    """(baseline, behind an unparseable event): post to outcome of the event that follows it."""
    from events.scenarios import ScenarioParams, build
    from harness import load

    def signup(customer_id: str) -> list[dict[str, Any]]:
        scenario = build("signup_paid", ScenarioParams(customer_id=customer_id), ends_at=int(time.time()))
        return json.loads(json.dumps(scenario.events))

    warm, clean, poisoned = (
        signup("cus_RecoveryWarm02"),
        signup("cus_RecoveryClean1"),
        signup("cus_RecoveryPoison"),
    )
    index = next(i for i, e in enumerate(poisoned) if e["type"] == "customer.subscription.created")
    del poisoned[index]["data"]["object"]["status"]
    behind_clean, behind_poison = clean[index + 1]["id"], poisoned[index + 1]["id"]
    with load.RuntimeProcess(folder / "unparseable.log", SECRET) as runtime:
        _post_all(runtime, warm)  # warms the worker processes; the baseline is the next signup
        _wait(_outcome_at(runtime, warm[-1]["id"]), "the first signup")
        posted = _post_all(runtime, clean)
        baseline = (
            _wait(_outcome_at(runtime, behind_clean), "the event without an unparseable one")
            - posted[behind_clean]
        )
        posted = _post_all(runtime, poisoned)
        applied = _wait(_outcome_at(runtime, behind_poison), "the event behind the unparseable one")
        parked = "PARKED in the dead-letter queue" in runtime.output()
        print(f"  unparseable event parked in the DLQ: {parked}; log {runtime.log}", flush=True)
        return baseline, applied - posted[behind_poison]


def _verdict(seconds: float) -> str:
    return "met" if seconds <= TARGET_SECONDS else "MISSED"


def run() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    try:
        baseline, recovered = stripe_outage(folder)
        print(
            f"purchase needing a fetch, {OUTAGE_SECONDS:.0f} s Stripe outage: granted {recovered:.1f} s after "
            f"Stripe answered again (target <= {TARGET_SECONDS:.0f} s: {_verdict(recovered)}); without an "
            f"outage {baseline:.1f} s from post to granted; before issue 17 up to 720 s",
            flush=True,
        )
        baseline, behind = unparseable_event(folder)
        print(
            f"event queued behind an unparseable event of its customer: applied {behind:.1f} s after its "
            f"post (target <= {TARGET_SECONDS:.0f} s: {_verdict(behind)}); without the unparseable event "
            f"{baseline:.1f} s; before issue 17 about 3600 s (5 x 720 s)",
            flush=True,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    run()
