"""The workload: one history per distinct customer, a share of the events delivered twice, every
delivery shuffled across and within customers."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from events import scenarios
from events.stripe import objects as samples

type JsonObject = dict[str, Any]

LOAD_SCENARIOS = tuple(
    name
    for name in scenarios.SCENARIOS
    if name
    not in {"purchase_dispute_lost", "purchase_dispute_won", "guest_checkout", "guest_purchase_disputed"}
)


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    customer_id: str
    scenario: str
    events: tuple[JsonObject, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST: the event and its exact bytes."""

    event_id: str
    customer_id: str
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Workload:
    histories: tuple[CustomerHistory, ...]
    deliveries: tuple[Delivery, ...]  # in posting order

    @property
    def event_ids(self) -> frozenset[str]:
        return frozenset(str(e["id"]) for h in self.histories for e in h.events)

    @property
    def distinct_events(self) -> int:
        return sum(len(h.events) for h in self.histories)

    @property
    def duplicates(self) -> int:
        return len(self.deliveries) - self.distinct_events


def load_customer_id(index: int, prefix: str = "cus") -> str:
    """`cus_Load000000042`: distinct per index, the length of a real id."""
    return f"{prefix}_Load{index:010d}"


def customer_history(index: int, scenario: str) -> CustomerHistory:
    """Scenario `scenario` for customer number `index`, with its own customer, user and ids."""
    params = replace(
        scenarios.DEFAULT_PARAMS,
        customer_id=load_customer_id(index),
        user_id=f"user_load_{index}",
        # The Accounts v2 variant replaces the customer id with this one: it must be distinct too.
        accounts_v2_customer=load_customer_id(index, "acct"),
    )
    built = scenarios.build(scenario, params)
    if built.customer_id is None:
        raise ValueError(f"scenario {scenario} has no customer: its state cannot be compared")
    return CustomerHistory(built.customer_id, scenario, tuple(built.events))


def scenario_history(index: int) -> CustomerHistory:
    """The scenarios of LOAD_SCENARIOS in turn, one per customer."""
    return customer_history(index, LOAD_SCENARIOS[index % len(LOAD_SCENARIOS)])


# Where a subscription may go next (Stripe's lifecycle); canceled and incomplete_expired end it.
_NEXT_STATUSES: Mapping[str, tuple[samples.SubscriptionStatus, ...]] = {
    "incomplete": ("active", "active", "incomplete_expired"),
    "trialing": ("active", "active", "past_due", "paused", "canceled"),
    "active": ("active", "active", "active", "past_due", "canceled"),
    "past_due": ("active", "active", "unpaid", "canceled"),
    "unpaid": ("active", "canceled"),
    "paused": ("active", "canceled"),
}
_PLANS = (
    samples.PriceSpec("price_LoadBasicMonthly", "prod_LoadBasic", "basic_monthly", 900),
    samples.PriceSpec("price_LoadProMonthly", "prod_LoadPro", "pro_monthly", 2900),
    samples.PriceSpec("price_LoadTeamMonthly", "prod_LoadTeam", "team_monthly", 9900),
)


def subscription_history(
    index: int, length: int = 10, start: int = scenarios.DEFAULT_START
) -> CustomerHistory:
    """customer.created, then one subscription through `length - 1` snapshots a day apart: a random
    (seeded by `index`) walk through Stripe's statuses with plan changes and monthly renewals.

    Many snapshots of one object: delivered shuffled, most of them are stale, so the table (and
    moto's cost per transaction, which grows with it) stays small for the number of events.
    """
    if length < 2:
        raise ValueError("a subscription history has a customer and at least one subscription event")
    rng = random.Random(f"load-subscription-{index}")  # reproducible, not a secret  # noqa: S311  # nosec B311
    ids = samples.IdFactory(f"load-subscription-{index}")
    customer = load_customer_id(index)
    subscription_id = samples.derived_id("sub", customer)
    events: list[JsonObject] = [
        samples.event(
            ids,
            "customer.created",
            samples.customer(ids, id=customer, created=start, metadata={"user_id": f"user_load_{index}"}),
            created=start,
        )
    ]
    status: samples.SubscriptionStatus = rng.choice(("incomplete", "trialing"))
    plan = rng.choice(_PLANS)
    period_start, period_end = start, scenarios.add_months(start, 1)
    for step in range(1, length):
        created = start + step * scenarios.DAY
        if step > 1:
            choices = _NEXT_STATUSES[status]
            if step < length - 1:  # the end comes last, so that every snapshot is a real one
                choices = tuple(c for c in choices if c not in ("canceled", "incomplete_expired")) or (
                    status,
                )
            status = rng.choice(choices)
            if rng.random() < 0.2:
                plan = rng.choice(_PLANS)
        while created >= period_end:
            period_start, period_end = period_end, scenarios.add_months(period_end, 1)
        ended = status in ("canceled", "incomplete_expired")
        obj = samples.subscription(
            ids,
            id=subscription_id,
            customer=customer,
            items=[samples.ItemSpec(plan)],
            status=status,
            created=start,
            period_start=period_start,
            period_end=period_end,
            canceled_at=created if ended else None,
            ended_at=created if ended else None,
            cancel_at_period_end=status == "active" and rng.random() < 0.1,
            metadata={"user_id": f"user_load_{index}"},
        )
        kind = "created" if step == 1 else "deleted" if ended else "updated"
        events.append(samples.event(ids, f"customer.subscription.{kind}", obj, created=created))
    return CustomerHistory(customer, "subscription_history", tuple(events))


def build_workload(
    customers: int,
    *,
    history: Callable[[int], CustomerHistory] = scenario_history,
    duplicate_share: float = 0.1,
    seed: int = 0,
) -> Workload:
    """`customers` histories (`history(index)` for each), `duplicate_share` of the events delivered
    twice, every delivery in a random order (a seeded one: the same arguments give the same run)."""
    if customers < 1:
        raise ValueError("at least one customer")
    if not 0 <= duplicate_share <= 1:
        raise ValueError("duplicate_share is a fraction between 0 and 1")
    rng = random.Random(seed)  # a reproducible order, not a secret  # noqa: S311  # nosec B311
    histories = tuple(history(index) for index in range(customers))
    deliveries = [
        Delivery(str(event["id"]), history.customer_id, scenarios.render(event))
        for history in histories
        for event in history.events
    ]
    deliveries += rng.sample(deliveries, round(len(deliveries) * duplicate_share))
    rng.shuffle(deliveries)  # across customers and, as Stripe does not promise order, within them
    return Workload(histories, tuple(deliveries))
