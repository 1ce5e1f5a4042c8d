"""Reads from the Stripe API with the stripe SDK: one client per mode, the Connect account per call.

Used by the worker only where the design allows an API call (ties, thin or oversized events,
Checkout line items, the rest of an entitlements summary, a dispute's customer) and by the reconciler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import stripe
from stripe._base_address import BaseAddresses

from domain.credentials import Mode

Json = Mapping[str, Any]

# The SDK retries connection errors, 409s and 5xx with exponential backoff itself.
MAX_NETWORK_RETRIES = 3


class StripeApi:
    """`domain.sync.StripeObjects` on the stripe SDK."""

    def __init__(self, api_keys: Mapping[Mode, str], api_base: str | None = None) -> None:
        base: BaseAddresses = {"api": api_base} if api_base else {}
        self._clients: dict[Mode, stripe.StripeClient] = {
            mode: stripe.StripeClient(key, base_addresses=base, max_network_retries=MAX_NETWORK_RETRIES)
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
            "dispute": v1.disputes.retrieve,
            "customer": v1.customers.retrieve,
        }
        if object_type not in retrieve:
            raise LookupError(f"cannot fetch Stripe objects of type {object_type!r}")
        return _plain(retrieve[object_type](object_id, options=_options(account)))

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Json:
        return _plain(self.client(livemode).v1.events.retrieve(event_id, options=_options(account)))

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


def _mode(livemode: bool) -> Mode:
    return "live" if livemode else "test"


def _options(account: str | None) -> Any:
    return {"stripe_account": account} if account else {}


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as the plain JSON dict a webhook would carry."""
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(result)
