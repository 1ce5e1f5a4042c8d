"""`refetch`: read an object or an event from Stripe and queue it into its customer's group.

An object goes as the synthetic `sync.fetched` event the reconciler sends (adapters.fetched_queue:
stamped with the fetch time, so it wins over older snapshots and loses to later webhooks); an event
goes as Stripe would have delivered it. The worker applies either like any webhook.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from domain.credentials import Mode

if TYPE_CHECKING:
    from ops.targets import ClientFactory

# What adapters.stripe_api.StripeApi.fetch_object can read.
FETCHABLE_TYPES = (
    "customer",
    "subscription",
    "invoice",
    "checkout.session",
    "payment_intent",
    "charge",
    "dispute",
)


class MissingApiKey(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Queued:
    event_id: str
    event_type: str
    group_id: str
    deduplication_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "group_id": self.group_id,
            "deduplication_id": self.deduplication_id,
        }


def stripe_api_keys(
    env: Mapping[str, str], secret_id: str | None, clients: ClientFactory | None = None
) -> dict[Mode, str]:
    """STRIPE_API_KEY from the environment, else the deployment's secret (--stack, STRIPE_SECRET_ID),
    read with the operator's boto3 credentials (`clients`: an ops.targets.ClientFactory)."""
    from adapters.stripe_credentials import api_keys  # noqa: PLC0415
    from ops.targets import operator_credentials  # noqa: PLC0415

    keys = api_keys(operator_credentials(env, secret_id, clients))
    if not keys:
        raise MissingApiKey(
            "no Stripe API key: set STRIPE_API_KEY=sk_test_... (or rk_...), or use --stack NAME to read the "
            "stack's secret"
        )
    return keys


def refetch_object(
    api: Any,
    sqs: Any,
    queue_url: str,
    object_type: str,
    object_id: str,
    *,
    livemode: bool,
    account: str | None,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Queued:
    from adapters.fetched_queue import FetchedQueue, fetched_message  # noqa: PLC0415

    obj = api.fetch_object(object_type, object_id, livemode, account)
    message = fetched_message(obj, clock_ms(), account)
    FetchedQueue(queue_url, client=sqs).send([message])
    return Queued(_event_id(message.body), "sync.fetched", message.group_id, message.deduplication_id)


def refetch_event(
    api: Any, sqs: Any, queue_url: str, event_id: str, *, livemode: bool, account: str | None
) -> Queued:
    from adapters.fetched_queue import FetchedQueue, event_message  # noqa: PLC0415

    event = dict(api.fetch_event(event_id, livemode, account))
    if account and not event.get("account"):
        event["account"] = account
    message = event_message(event)
    FetchedQueue(queue_url, client=sqs).send([message])
    return Queued(str(event.get("id")), str(event.get("type")), message.group_id, message.deduplication_id)


def _event_id(body: str) -> str:
    return str(json.loads(body).get("id"))
