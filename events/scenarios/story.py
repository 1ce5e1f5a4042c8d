"""A story: one customer's Stripe objects, whose successive snapshots it emits as events, and
the Scenario it ends in."""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from events.stripe import objects as samples
from events.stripe.objects import ApiShape, FeatureSpec, IdFactory, JsonObject, PriceSpec

DAY = 86400
HOUR = 3600
DEFAULT_START = 1767225600  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class ScenarioParams:
    """Who and what a scenario is about. `customer_id` may be a `cus_…` or, for Accounts v2, an
    `acct_…` id (then objects carry `customer_account` and no Customer object exists)."""

    customer_id: str = "cus_R7fTQm2pLx9bNc"
    user_id: str = "user_1001"
    product_id: str = "prod_SamplePro0001"
    price_id: str = "price_1SamplePro0Monthly0001"
    lookup_key: str | None = "pro_monthly"
    unit_amount: int = 2000
    upgrade_product_id: str = "prod_SampleTeam001"
    upgrade_price_id: str = "price_1SampleTeam0Monthly001"
    upgrade_lookup_key: str | None = "team_monthly"
    upgrade_unit_amount: int = 5000
    metered_product_id: str = "prod_SampleApi0001"
    metered_price_id: str = "price_1SampleApiCalls0Meter1"
    metered_lookup_key: str | None = "api_calls_metered"
    one_time_product_id: str = "prod_SampleCourse1"
    one_time_price_id: str = "price_1SampleCourse0Once0001"
    one_time_lookup_key: str | None = "course_lifetime"
    one_time_amount: int = 9900
    currency: str = "usd"
    features: tuple[FeatureSpec, ...] = (
        FeatureSpec("pro_reports", "Pro reports"),
        FeatureSpec("priority_support", "Priority support"),
    )
    start: int = DEFAULT_START
    api: ApiShape = "current"
    livemode: bool = False
    # The Connect account the events come from (events then carry `account`).
    account: str | None = None
    # Used by the Accounts v2 and Connect variants in `all_scenarios`.
    accounts_v2_customer: str = "acct_1SampleCustomerAcct01"
    connect_account: str = "acct_1SampleConnectedAcct1"

    @property
    def pro_price(self) -> PriceSpec:
        return PriceSpec(
            self.price_id, self.product_id, self.lookup_key, self.unit_amount, self.currency, nickname="Pro"
        )

    @property
    def upgrade_price(self) -> PriceSpec:
        return PriceSpec(
            self.upgrade_price_id,
            self.upgrade_product_id,
            self.upgrade_lookup_key,
            self.upgrade_unit_amount,
            self.currency,
            nickname="Team",
        )

    @property
    def metered_price(self) -> PriceSpec:
        return PriceSpec(
            self.metered_price_id,
            self.metered_product_id,
            self.metered_lookup_key,
            unit_amount=1,
            currency=self.currency,
            usage_type="metered",
            nickname="API calls",
        )

    @property
    def one_time_price(self) -> PriceSpec:
        return PriceSpec(
            self.one_time_price_id,
            self.one_time_product_id,
            self.one_time_lookup_key,
            self.one_time_amount,
            self.currency,
            recurring=False,
            nickname="Video course",
        )


DEFAULT_PARAMS = ScenarioParams()


@dataclass(frozen=True)
class Scenario:
    """One customer's events, and what the Stripe API would answer afterwards.

    What a story ends in is not written here: the demo derives it from the rules
    (local_runtime.demo.expected_entitlements).
    `api_objects` holds the final state of every object by id as the API returns it at the SDK's
    version (`current` shape), for fetch mocks and tie-breaking; `api_lists` holds list answers by
    request path (Checkout line items, active entitlements).
    """

    name: str
    customer_id: str | None
    story: str
    events: list[JsonObject]
    api_objects: dict[str, JsonObject] = field(default_factory=dict)
    api_lists: dict[str, JsonObject] = field(default_factory=dict)

    def bodies(self) -> list[bytes]:
        return [render(event) for event in self.events]


def render(event: JsonObject) -> bytes:
    """The exact bytes Stripe posts: pretty-printed JSON with two-space indents, UTF-8."""
    return json.dumps(event, indent=2, ensure_ascii=False).encode()


def add_months(timestamp: int, months: int) -> int:
    """Stripe's monthly periods: same day of month, clamped to the month's last day."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


type Request = tuple[str, str] | None


class Tracked:
    """One Stripe object whose successive snapshots the story emits."""

    def __init__(self, build: Callable[..., JsonObject], fields: dict[str, Any]) -> None:
        self._build = build
        self.fields = fields
        self.current = build(**fields)

    @property
    def id(self) -> str:
        return str(self.current["id"])

    def change(self, **changes: Any) -> tuple[JsonObject, JsonObject]:
        before = self.current
        self.fields.update(changes)
        self.current = self._build(**self.fields)
        return before, self.current

    def amend(self, amendment: Callable[[JsonObject], None]) -> None:
        """Change this and every later snapshot in a way the builder has no parameter for."""
        build = self._build

        def amended(**fields: Any) -> JsonObject:
            obj = build(**fields)
            amendment(obj)
            return obj

        self._build = amended
        self.current = amended(**self.fields)

    def fetched(self) -> JsonObject:
        # The worker fetches with the pinned SDK, whatever version the webhook endpoint uses.
        if "api" in self.fields:
            return self._build(**{**self.fields, "api": "current"})
        return self.current


class Story:
    """One customer's story as it is told: the objects it tracks, the events emitted so far (ids
    derived from the story's name and parameters, so every build gives the same bytes), the
    current billing period."""

    def __init__(self, name: str, params: ScenarioParams, *, same_second: bool = False) -> None:
        self.name = name
        self.p = params
        self.ids = IdFactory(f"{name}|{params.customer_id}|{params.api}|{params.livemode}|{params.account}")
        self.events: list[JsonObject] = []
        self.same_second = same_second
        # Test clocks: objects live in simulated time while events are created in real time;
        # once set, events are created at this real time onwards, whatever the simulated time.
        self.real_time: int | None = None
        self.test_clock: str | None = None
        self.period = (params.start, add_months(params.start, 1))
        self.payment_method = samples.derived_id("pm", params.customer_id)
        self._last_created: int | None = None
        self._tracked: list[Tracked] = []
        self._deleted_customers: set[str] = set()
        self.api_lists: dict[str, JsonObject] = {}

    @property
    def accounts_v2(self) -> bool:
        return self.p.customer_id.startswith("acct_")

    @property
    def customer(self) -> str | None:
        return None if self.accounts_v2 else self.p.customer_id

    @property
    def customer_account(self) -> str | None:
        return self.p.customer_id if self.accounts_v2 else None

    def request(self) -> Request:
        return self.ids("req"), self.ids.idempotency_key()

    def track(self, build: Callable[..., JsonObject], **fields: Any) -> Tracked:
        tracked = Tracked(partial(build, self.ids), fields)
        self._tracked.append(tracked)
        return tracked

    def emit(
        self, type: str, obj: JsonObject, at: int, request: Request, previous: JsonObject | None = None
    ) -> int:
        created = at if self.real_time is None else self.real_time
        if not self.same_second and self._last_created is not None and created <= self._last_created:
            created = self._last_created + 1
        self._last_created = created
        self.events.append(
            samples.event(
                self.ids,
                type,
                obj,
                created=created,
                livemode=self.p.livemode,
                account=self.p.account,
                previous_attributes=previous,
                api_version=samples.api_version_for(self.p.api),
                request_id=request[0] if request else None,
                idempotency_key=request[1] if request else None,
            )
        )
        return created

    def emit_current(self, type: str, tracked: Tracked, at: int, request: Request) -> None:
        self.emit(type, tracked.current, at, request)

    def update(self, type: str, tracked: Tracked, at: int, request: Request, **changes: Any) -> None:
        """An `*.updated` event: carries `previous_attributes`."""
        before, after = tracked.change(**changes)
        self.emit(type, after, at, request, samples.previous_attributes(before, after))

    def transition(self, type: str, tracked: Tracked, at: int, request: Request, **changes: Any) -> None:
        """Any other event about a changed object (invoice.paid, customer.subscription.deleted…)."""
        tracked.change(**changes)
        self.emit(type, tracked.current, at, request)

    def find(self, object_id: str) -> Tracked:
        return next(tracked for tracked in self._tracked if tracked.current.get("id") == object_id)

    def delete_customer(self, customer_id: str) -> None:
        self._deleted_customers.add(customer_id)

    def scenario(self, story: str) -> Scenario:
        objects: dict[str, JsonObject] = {}
        for tracked in self._tracked:
            if "id" in tracked.current:
                objects[tracked.id] = tracked.fetched()
        for customer_id in self._deleted_customers:
            objects[customer_id] = samples.deleted_customer(customer_id)
        return Scenario(
            name=self.name,
            customer_id=self.p.customer_id,
            story=story,
            events=self.events,
            api_objects=objects,
            api_lists=dict(self.api_lists),
        )
