"""The sync table for tests and benchmarks, created in moto exactly as template.yaml declares it, and a
table of its keys alone (what moto costs by itself)."""

from __future__ import annotations

from functools import cache
from typing import Any

from adapters import table_items
from local_runtime.template import TableSpec, read_template


@cache
def table_spec() -> TableSpec:
    return read_template().table


def create_sync_table(dynamodb: Any, name: str) -> str:
    """Create the table (keys, billing, TTL from the template) under `name` and point the models at it."""
    spec = table_spec()
    dynamodb.create_table(TableName=name, **spec.create_arguments)
    if spec.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
        )
    table_items.configure(name)
    return name


def create_keys_only_table(dynamodb: Any, name: str, *, stream: bool = False) -> str:
    """A table with the sync table's keys and billing alone: no index, no TTL, and its stream only
    with `stream`. What moto costs on its own (bench.load's baseline) and what the local runtime's
    moto patches are checked on, without the models pointed at it."""
    arguments = table_spec().create_arguments
    keys = {key["AttributeName"] for key in arguments["KeySchema"]}
    extra = {"StreamSpecification": arguments["StreamSpecification"]} if stream else {}
    dynamodb.create_table(
        TableName=name,
        KeySchema=arguments["KeySchema"],
        AttributeDefinitions=[a for a in arguments["AttributeDefinitions"] if a["AttributeName"] in keys],
        BillingMode=arguments["BillingMode"],
        **extra,
    )
    return name
