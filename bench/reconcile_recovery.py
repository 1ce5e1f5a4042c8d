"""Reconcile recovery (issue 17, item 7): through the local runtime (`python -m local_runtime` as a
subprocess, its reconciler on a short timer, Stripe served by harness.fake_stripe in this process).

The account: a platform subscription and two connected accounts, each with a subscription the table
learnt from signed webhooks. Once a pass has listed both accounts, three faults at once:
* the key may no longer read events (every `/v1/events` list answers 403 `rak_event_read`);
* connected account acct_Gone deauthorizes the platform (every request as it answers 403);
* in acct_Lost a subscription is canceled and its webhook is lost.
Measured: whether the next pass completes, which phases it skipped and why, how many passes until the
lost cancellation is repaired (the customer's entitlements empty), and the requests made as the
deauthorized account per pass. Targets: the pass completes; repaired within two passes; at most one
request per pass as the deauthorized account. The pass time is printed beside a clean pass of the same
run (the baseline).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECONCILE_EVERY = 3  # seconds between the runtime's reconcile runs
WAIT_SECONDS = 90.0
PLATFORM, GONE, LOST = None, "acct_Gone", "acct_Lost"
CUSTOMERS = {PLATFORM: "cus_RecoverPlatform", GONE: "cus_RecoverGone", LOST: "cus_RecoverLost"}
SECRET = "whsec_bench_reconcile_recovery_0123456789"  # a local test secret  # nosec B105
PRODUCT = "prod_RecoverPro"


def _subscription(customer: str, status: str = "active", **changes: Any) -> dict[str, Any]:
    from events.stripe import objects as s

    now = int(time.time())
    fields: dict[str, Any] = {
        "id": f"sub_{customer}",
        "items": [s.ItemSpec(s.PriceSpec("price_RecoverPro", PRODUCT))],
        "created": now - 86_400,
        "period_start": now - 86_400,
        "period_end": now + 29 * 86_400,
    }
    fields.update(changes)
    return s.subscription(s.IdFactory(customer), customer=customer, status=status, **fields)  # type: ignore[arg-type]


def _runs(output: str) -> list[dict[str, Any]]:
    """The reconciler's "reconcile run" log records, in order (LOG_LEVEL=DEBUG shows the JSON lines)."""
    runs = []
    for line in output.splitlines():
        if line.startswith("{") and '"reconcile run"' in line:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "reconcile run":
                runs.append(record)
    return runs


def _durations(output: str) -> list[float]:
    """Seconds of each finished run, from the runtime's console ("reconcile  run finished in X s")."""
    found = []
    for line in output.splitlines():
        if "run finished in" in line and "reconcile" in line:
            found.append(float(line.rsplit("in", 1)[1].strip().removesuffix("s").strip()))
    return found


def _pass_after(output: str, passes_before: int) -> dict[str, Any] | None:
    runs = _runs(output)
    return runs[passes_before] if len(runs) > passes_before else None


def _wait[T](check: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class _Measured:
    first: dict[str, Any]  # the first pass after the faults, as the reconciler logged it
    repaired_after: int | None  # passes until the lost cancellation was repaired
    repair_seconds: float
    passes_seen: int
    gone_requests: int
    untouched: bool
    faulted_seconds: float
    clean_seconds: float

    @property
    def met(self) -> bool:
        repaired = self.repaired_after is not None and self.repaired_after <= 2
        return bool(self.first.get("complete")) and repaired and self.gone_requests <= self.passes_seen


def run() -> None:
    from harness import load
    from harness.fake_stripe import FakeStripe

    folder = Path(tempfile.mkdtemp(prefix="bench-reconcile-recovery-"))
    with FakeStripe() as fake:
        subscriptions = {account: _subscription(customer) for account, customer in CUSTOMERS.items()}
        for account, obj in subscriptions.items():
            fake.put_subscription(obj, account=account)
        settings = {
            "STRIPE_API_KEY": "sk_test_bench_recovery",
            "STRIPE_API_BASE": fake.url,
            "RECONCILE_EVERY": str(RECONCILE_EVERY),
        }
        with load.RuntimeProcess(folder / "runtime.log", SECRET, settings=settings) as runtime:
            _seed(runtime, subscriptions)
            measured = _measure(runtime, fake)
    _print(measured)
    if not measured.met:
        raise RuntimeError("reconcile recovery targets not met")


def _features(runtime: Any, customer: str) -> set[str] | None:
    item = (
        runtime.aws("dynamodb")
        .get_item(
            TableName=runtime.stack.table.name,
            Key={"pk": {"S": f"CUSTOMER#{customer}"}, "sk": {"S": "ENTITLEMENTS"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return None if item is None else set(item["features"]["M"])


def _seed(runtime: Any, subscriptions: dict[str | None, dict[str, Any]]) -> None:
    """Signed webhooks for each subscription, applied; then a pass that lists both accounts."""
    from events.stripe import objects as s
    from harness import load

    for account, obj in subscriptions.items():
        event = s.event(
            s.IdFactory(f"recover{obj['id']}"), "customer.subscription.created", obj, created=int(time.time())
        )
        if account is not None:
            event["account"] = account
        body = json.dumps(event).encode()
        posted = load.post_signed(runtime.webhook_url, SECRET, load.Delivery(event["id"], "", body))
        if posted.status != 200:
            raise RuntimeError(f"webhook answered {posted.status}: {posted.error}")
    for customer in CUSTOMERS.values():
        _wait(lambda c=customer: _features(runtime, c) == {PRODUCT}, f"{customer}'s entitlements")  # type: ignore[misc]
    # 3 lists for the platform and each of the 2 accounts, and the records phase.
    _wait(
        lambda: any(r.get("phase_count") == 10 and r.get("complete") for r in _runs(runtime.output())),
        "a pass over both connected accounts",
    )


def _measure(runtime: Any, fake: Any) -> _Measured:
    clean = _durations(runtime.output())[-1]
    passes_before = len(_runs(runtime.output()))
    injected = time.monotonic()
    requests_before = len(fake.requests)
    fake.forbid("/v1/events", "rak_event_read")
    fake.deauthorized.add(GONE)
    now = int(time.time())
    fake.put_subscription(
        _subscription(CUSTOMERS[LOST], "canceled", canceled_at=now, ended_at=now), account=LOST
    )
    first = _wait(lambda: _pass_after(runtime.output(), passes_before), "the first pass after the faults")
    repaired_after: int | None = None
    for number in (1, 2, 3):
        _wait(lambda n=number: len(_runs(runtime.output())) >= passes_before + n, f"pass {number}")  # type: ignore[misc]
        try:
            _wait(
                lambda: _features(runtime, CUSTOMERS[LOST]) == set(),
                "the repair",
                timeout=RECONCILE_EVERY + 2.0,
            )
        except RuntimeError:
            continue
        repaired_after = number
        break
    repair_seconds = time.monotonic() - injected
    durations = _durations(runtime.output())
    return _Measured(
        first=first,
        repaired_after=repaired_after,
        repair_seconds=repair_seconds,
        passes_seen=len(_runs(runtime.output())) - passes_before,
        gone_requests=sum(1 for r in fake.requests[requests_before:] if r.account == GONE),
        untouched=_features(runtime, CUSTOMERS[GONE]) == {PRODUCT}
        and _features(runtime, CUSTOMERS[PLATFORM]) == {PRODUCT},
        faulted_seconds=durations[passes_before] if len(durations) > passes_before else float("nan"),
        clean_seconds=clean,
    )


def _print(m: _Measured) -> None:
    reasons: dict[str, int] = {}
    for skipped in m.first.get("skipped_phases", []):
        reasons[skipped["reason"]] = reasons.get(skipped["reason"], 0) + 1
    lacking = next((text for text in m.first.get("messages", []) if "rak_event_read" in text), "")
    skipped_text = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    print(f"reconcile recovery, through the local runtime (reconcile every {RECONCILE_EVERY} s):")
    print(
        f"  pass with a forbidden list and a deauthorized account completes  {m.first.get('complete')!s:>8}   target: True"
    )
    print(f"  phases skipped: {sum(reasons.values())} ({skipped_text})")
    print(f"  logged: {lacking[:110]}")
    print(
        f"  lost cancellation in another account repaired after    {m.repaired_after} pass(es), "
        f"{m.repair_seconds:.1f} s   target: <= 2 passes"
    )
    print(
        f"  requests as the deauthorized account                   {m.gone_requests} in {m.passes_seen} pass(es)   target: <= 1 a pass"
    )
    print(f"  other accounts' entitlements untouched                 {m.untouched}")
    print(
        f"  pass time with the faults / clean pass (baseline)      {m.faulted_seconds:.2f} s / "
        f"{m.clean_seconds:.2f} s = {m.faulted_seconds / m.clean_seconds:.2f}x"
    )
    print(f"  targets {'met' if m.met else 'NOT MET'}")
