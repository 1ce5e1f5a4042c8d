"""What the storage benchmarks share: a moto table of the template's shape whose DynamoDB calls are
metered (requests, read and write units by DynamoDB's size rules, and the CPU spent inside them, which
moto serves in this process and Lambda would not)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench._dynamodb_units import UnitMeter

T0 = 1_767_225_600
DAY = 86_400


@dataclass
class Meter:
    units: UnitMeter
    call_seconds: float = 0.0
    _started: float = 0.0

    def attach(self, client: Any) -> None:
        self.units.attach(client)
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def _before(self, **_: Any) -> None:
        self._started = time.process_time()

    def _after(self, **_: Any) -> None:
        self.call_seconds += time.process_time() - self._started


def environment(table_name: str = "bench-storage") -> None:
    """Settings for a bench on moto's table: fake credentials, no Stripe key or secret, no endpoint or
    profile of the machine that runs it."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        TABLE_NAME=table_name,
        POWERTOOLS_METRICS_NAMESPACE="StripeSync",
    )
    for name in ("STRIPE_API_KEY", "STRIPE_SECRET_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)


def models() -> list[Any]:
    from adapters import table_items

    found, pending = [], [table_items.SyncItem]
    while pending:
        model = pending.pop()
        found.append(model)
        pending += model.__subclasses__()
    return found


@contextmanager
def table() -> Iterator[Meter]:
    import boto3
    from moto import mock_aws

    from harness.sync_table_fixture import create_sync_table

    with mock_aws():
        create_sync_table(boto3.client("dynamodb"), os.environ["TABLE_NAME"])
        meter = Meter(UnitMeter())
        for model in models():
            model._connection = None
            meter.attach(model._get_connection().connection.client)
        yield meter
