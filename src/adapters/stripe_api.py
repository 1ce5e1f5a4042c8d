"""Reads from the Stripe API with the stripe SDK: one client per mode, the Connect account per call.

Used by the worker only where the design allows an API call (ties, thin or oversized events,
Checkout line items, the rest of an entitlements summary, a dispute's customer) and by the reconciler.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import stripe
from stripe._base_address import BaseAddresses

from domain.credentials import Mode
from domain.stripe_objects import NotAtStripe

Json = Mapping[str, Any]

# The SDK retries connection errors, 409s and 5xx with exponential backoff itself.
MAX_NETWORK_RETRIES = 3
# The largest page Stripe's list endpoints serve.
LIST_LIMIT = 100
# What a fetch by id expands: a Checkout session's payment time is its PaymentIntent's charge's.
FETCH_EXPANSIONS: dict[str, dict[str, list[str]]] = {
    "checkout.session": {"expand": ["payment_intent.latest_charge"]}
}


@dataclass(frozen=True, slots=True)
class StripePage:
    """One page of a Stripe list: its objects as plain JSON, and whether more follow."""

    data: list[dict[str, Any]]
    has_more: bool


class StripeApi:
    """`domain.sync.StripeObjects` on the stripe SDK."""

    def __init__(
        self, api_keys: Mapping[Mode, str], api_base: str | None = None, *, timeout_seconds: float = 5.0
    ) -> None:
        # The SDK's default is 80 s: a hung connection must not eat the worker's 30 s or the
        # reconciler's time reserve (with retries the worst case stays well inside either).
        base: BaseAddresses = {"api": api_base} if api_base else {}
        self._clients: dict[Mode, stripe.StripeClient] = {
            mode: stripe.StripeClient(
                key,
                base_addresses=base,
                max_network_retries=MAX_NETWORK_RETRIES,
                http_client=stripe.RequestsClient(timeout=timeout_seconds),
            )
            for mode, key in api_keys.items()
        }

    def can_fetch(self, livemode: bool) -> bool:
        return _mode(livemode) in self._clients

    def client(self, livemode: bool) -> stripe.StripeClient:
        try:
            return self._clients[_mode(livemode)]
        except KeyError:
            raise LookupError(f"no {_mode(livemode)}-mode STRIPE_API_KEY configured") from None

    def fetch_object(self, object_type: str, object_id: str, livemode: bool, account: str | None) -> Json:
        v1 = self.client(livemode).v1
        retrieve: dict[str, Callable[..., Any]] = {
            "subscription": v1.subscriptions.retrieve,
            "invoice": v1.invoices.retrieve,
            "checkout.session": v1.checkout.sessions.retrieve,
            "payment_intent": v1.payment_intents.retrieve,
            "charge": v1.charges.retrieve,
            "refund": v1.refunds.retrieve,
            "dispute": v1.disputes.retrieve,
            "customer": v1.customers.retrieve,
        }
        if object_type not in retrieve:
            raise LookupError(f"cannot fetch Stripe objects of type {object_type!r}")
        # A session's payment charge says when it was paid (its term counts from then).
        params: Any = FETCH_EXPANSIONS.get(object_type) or None
        return _answered(lambda: retrieve[object_type](object_id, params, options=_options(account)))

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Json:
        return _answered(
            lambda: self.client(livemode).v1.events.retrieve(event_id, options=_options(account))
        )

    def fetch_thin_event(self, event_id: str, livemode: bool, account: str | None) -> Json:
        """A thin event as `GET /v2/core/events/{id}` has it (v2 names the account `Stripe-Context`)."""
        options: Any = {"stripe_context": account} if account else {}
        return _answered(lambda: self.client(livemode).v2.core.events.retrieve(event_id, options=options))

    def checkout_line_items(self, session_id: str, livemode: bool, account: str | None) -> list[Json]:
        pages = self.client(livemode).v1.checkout.sessions.line_items.list(
            session_id, {"limit": 100}, options=_options(account)
        )
        return [_plain(line) for line in pages.auto_paging_iter()]

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]:
        pages = self.client(livemode).v1.entitlements.active_entitlements.list(
            {"customer": customer_id, "limit": 100}, options=_options(account)
        )
        return [str(e.lookup_key) for e in pages.auto_paging_iter() if e.lookup_key]

    def list_page(
        self, livemode: bool, path: str, params: Mapping[str, Any], *, account: str | None = None
    ) -> StripePage:
        """One page (LIST_LIMIT unless `params` says otherwise) of any list endpoint, as `account`
        (Stripe-Account) when given: the reconciler's and the backfill's lists go through here."""
        # The SDK's raw request (same auth, retries and typed errors) without a StripeObject per field:
        # those cost ~130 ms of CPU per page of 100 subscriptions, the JSON parse ~4 ms (bench/reconcile.py).
        raw_request: Any = self.client(livemode).raw_request
        query = {"limit": LIST_LIMIT, **params}
        if account:
            query["stripe_account"] = account
        page = raw_request("get", path, **query).data
        return StripePage(list(page["data"]), bool(page["has_more"]))


def _answered(request: Callable[[], Any]) -> dict[str, Any]:
    """The object as plain JSON; Stripe's "no such object" (404 `resource_missing`) as the domain's
    NotAtStripe, an answer the worker and the reconciler act on. Any other error stays the SDK's."""
    try:
        return _plain(request())
    except stripe.InvalidRequestError as error:
        if error.http_status == 404 and error.code == "resource_missing":
            raise NotAtStripe(error.user_message or str(error)) from error
        raise


def _mode(livemode: bool) -> Mode:
    return "live" if livemode else "test"


def _options(account: str | None) -> Any:
    return {"stripe_account": account} if account else {}


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as the plain JSON dict a webhook would carry. The SDK turns `*_decimal` fields
    into Decimal; Stripe sends them as strings, and so must the queued snapshot."""
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    plain: dict[str, Any] = json.loads(json.dumps(result, default=_json_default))
    return plain


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
