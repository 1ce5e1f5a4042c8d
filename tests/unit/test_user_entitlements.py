"""One user, several Stripe customers (Checkout creates one per session unless given one): the user
entitlements item holds everything any of them grants, whatever the delivery order, duplicates
included (ARCHITECTURE.md, "The table")."""

from __future__ import annotations

import itertools
from typing import Any

from domain.entitlements import EntitlementRules, Entitlements, Grant
from domain.sync import EventApplier
from domain.user_entitlements import CustomerPart, with_part
from events.stripe import objects as s
from harness.memory_store import MemoryStore
from tests.support.user_purchases import COURSE, DAY, EBOOK, T0, purchase, subscription_events

NOW = T0 + 10 * DAY


def deliver(events: list[dict[str, Any]]) -> MemoryStore:
    store = MemoryStore()
    applier = EventApplier(store, EntitlementRules(), clock=lambda: NOW)
    for event in events:
        applier.apply(event)
    return store


def user_access(store: MemoryStore, user: str = "user_42") -> tuple[dict[str, Grant], tuple[str, ...]]:
    item = store.user_entitlements[(user, False)]
    return dict(item.features), item.customer_ids


def test_a_user_with_two_customers_has_both_purchases_in_either_order() -> None:
    course = purchase("cus_course", COURSE, T0)
    ebook = purchase("cus_ebook", EBOOK, T0 + DAY)
    expected = (
        {"prod_course": Grant(None, "cs_cus_course"), "prod_ebook": Grant(None, "cs_cus_ebook")},
        ("cus_course", "cus_ebook"),
    )
    assert user_access(deliver([course, ebook])) == expected
    assert user_access(deliver([ebook, course])) == expected
    # Each customer's own item still holds only its own purchase.
    store = deliver([ebook, course])
    assert set(store.entitlements["cus_course"].entitlements.features) == {"prod_course"}


def test_every_order_and_duplicate_of_two_customers_events_ends_the_same() -> None:
    events = [purchase("cus_course", COURSE, T0), *subscription_events("cus_sub")]
    finals = set()
    for order in itertools.permutations(events):
        store = deliver([*order, order[0], order[-1]])  # and two duplicates, late
        features, customers = user_access(store)
        finals.add((tuple(sorted(features.items())), customers))
    # The subscription ended (its cancellation is the newest snapshot in every order); the course stays.
    assert finals == {((("prod_course", Grant(None, "cs_cus_course")),), ("cus_course", "cus_sub"))}


def test_access_ends_in_the_user_item_when_the_customer_that_granted_it_ends() -> None:
    events = subscription_events("cus_sub")
    store = deliver(events[:2])
    assert user_access(store) == ({"prod_pro": Grant(None, "sub_cus_sub")}, ("cus_sub",))
    version = store.user_entitlements[("user_42", False)].version
    applier = EventApplier(store, EntitlementRules(), clock=lambda: NOW)
    applier.apply(events[2])
    assert user_access(store) == ({}, ("cus_sub",))
    assert store.user_entitlements[("user_42", False)].version == version + 1
    applier.apply(events[2])  # a duplicate changes nothing readers see
    assert store.user_entitlements[("user_42", False)].version == version + 1


def test_a_customer_whose_metadata_names_another_user_leaves_the_first() -> None:
    events = subscription_events("cus_sub")
    store = deliver(events[:2])
    ids = s.IdFactory("moved")
    moved = s.customer(ids, id="cus_sub", created=T0, metadata={"user_id": "user_7"})
    EventApplier(store, EntitlementRules(), clock=lambda: NOW).apply(
        s.event(ids, "customer.updated", moved, created=T0 + 2)
    )
    assert user_access(store, "user_42") == ({}, ())
    assert user_access(store, "user_7") == ({"prod_pro": Grant(None, "sub_cus_sub")}, ("cus_sub",))


def test_the_user_item_is_repaired_when_a_crash_came_between_the_customers_items_and_it() -> None:
    event = purchase("cus_course", COURSE, T0)
    store = MemoryStore()
    applier = EventApplier(store, EntitlementRules(), clock=lambda: NOW)
    applier.apply(event)
    del store.user_entitlements[("user_42", False)]  # as if the worker died before that write
    applier.apply(event)  # the retry: a duplicate, which repairs
    assert user_access(store) == ({"prod_course": Grant(None, "cs_cus_course")}, ("cus_course",))


def test_a_part_from_an_older_state_of_its_customer_never_replaces_a_newer_one() -> None:
    granted = Entitlements("cus_1", False, {"pro": Grant(None, "sub_1")}, payment_issue=False, deleted=False)
    ended = Entitlements("cus_1", False, {}, payment_issue=False, deleted=False)
    newer = with_part(None, "user_42", False, CustomerPart("cus_1", 5, ended), now=10)
    assert newer is not None
    assert with_part(newer, "user_42", False, CustomerPart("cus_1", 4, granted), now=11) is None
    assert with_part(newer, "user_42", False, CustomerPart("cus_1", 5, granted), now=11) is None
    # A customer that left cannot come back through a late part either.
    left = with_part(newer, "user_42", False, CustomerPart("cus_1", 6, None), now=12)
    assert left is not None
    assert left.customer_ids == ()
    assert with_part(left, "user_42", False, CustomerPart("cus_1", 5, granted), now=13) is None


def test_deleted_only_when_every_customer_is_deleted_and_the_latest_until_wins() -> None:
    a = Entitlements("cus_a", False, {"pro": Grant(100, "sub_a")}, payment_issue=True, deleted=False)
    b = Entitlements("cus_b", False, {"pro": Grant(None, "sub_b")}, payment_issue=False, deleted=False)
    gone = Entitlements("cus_a", False, {}, payment_issue=False, deleted=True)
    item = with_part(None, "u", False, CustomerPart("cus_a", 1, a), now=1)
    item = with_part(item, "u", False, CustomerPart("cus_b", 1, b), now=2)
    assert item is not None
    assert dict(item.features) == {"pro": Grant(None, "sub_b")}
    assert (item.payment_issue, item.deleted, item.version) == (True, False, 2)
    item = with_part(item, "u", False, CustomerPart("cus_a", 2, gone), now=3)
    assert item is not None
    assert (item.payment_issue, item.deleted) == (False, False)
    gone_b = Entitlements("cus_b", False, {}, payment_issue=False, deleted=True)
    item = with_part(item, "u", False, CustomerPart("cus_b", 2, gone_b), now=4)
    assert item is not None
    assert item.deleted
    assert item.customer_ids == ("cus_a", "cus_b")


def test_without_a_user_id_no_user_item_is_written() -> None:
    ids = s.IdFactory("anon")
    profile = s.customer(ids, id="cus_anon", created=T0)
    store = deliver([s.event(ids, "customer.created", profile, created=T0)])
    assert store.user_entitlements == {}


def test_a_duplicate_or_stale_delivery_does_not_rewrite_a_user_item_that_says_the_same() -> None:
    events = subscription_events("cus_sub")
    ids = s.IdFactory("email")
    profile = s.customer(
        ids, id="cus_sub", created=T0, email="new@example.com", metadata={"user_id": "user_42"}
    )
    # The customer's state moves on (a new email), its access does not: its part keeps its version.
    store = deliver([*events, s.event(ids, "customer.updated", profile, created=T0 + 6 * DAY)])
    revision = store.user_entitlements[("user_42", False)].revision
    applier = EventApplier(store, EntitlementRules(), clock=lambda: NOW)
    applier.apply(events[1])  # stale: older than the cancellation
    applier.apply(events[2])  # duplicate
    assert store.user_entitlements[("user_42", False)].revision == revision
