"""The local runtime's moto, with a cost per request that does not grow with the table.

Two methods of moto 5.2.5's DynamoDB cost time proportional to the whole table, so each event of the
worker did and the local runtime slowed down as it filled:

* TransactWriteItems deep-copies every table it touches, once per item of the transaction, so that
  it can put the copies back if the transaction fails (ARCHITECTURE.md, "Pitfalls"). Replaced by the same
  algorithm (the same checks, in the same order, with the same errors and cancellation reasons) that
  snapshots only the items it touches and puts those back on failure.
* Query on the table's own key sorts every item of the table and then keeps those of the partition.
  Wrapped so that moto's own query sees only the partition asked for: the same items, in the same
  order, and the same pages.

And one of its SQS, which made each request cost time proportional to the messages queued and in
flight: a queue's attributes (read several times by every SendMessage, and once per message by every
ReceiveMessage) walk its messages three times, reading the clock twice per message. Replaced by one
walk with one reading of the clock; the same attributes with the same values.

And a race of its SQS under concurrent requests: Queue.delete_message rebuilds the message list from
a copy without holding the queue's lock, so a message sent meanwhile was lost, and a message deleted
by a concurrent DeleteMessage came back (delivered again after its visibility timeout). It now holds
the lock that SendMessage holds to append.

It is applied only inside the local runtime's moto server process (local_runtime.aws_server), never
in tests that use moto in-process unless they ask, and only to the moto release it was written
against (MOTO_VERSION, the pin in pyproject.toml's `run` group): another release may have changed the
method, so there it refuses and says so, and moto's own (slower) method stays. A table with a
stream also keeps moto's own method, since its stream records are part of what a failure rolls back.

Two differences, both DynamoDB's behaviour: transactions run one at a time (a lock), as DynamoDB
isolates them from each other, where moto's server takes requests on many threads and its own method
does not; and an entry naming two operations rolls back what earlier entries wrote before it raises.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import moto
from moto.core.utils import camelcase_to_underscores, unix_time_millis
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models

MOTO_VERSION = "5.2.5"
MAX_TRANSACTION_ITEMS = 100
OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})

type TransactWriteItems = Callable[[DynamoDBBackend, list[dict[str, Any]]], None]

_original: TransactWriteItems = DynamoDBBackend.transact_write_items
_original_query: Callable[..., Any] = Table.query
_original_queue_attributes: property = sqs_models.Queue.__dict__["attributes"]
_original_delete_message: Callable[[sqs_models.Queue, str], None] = sqs_models.Queue.delete_message
_isolation = threading.Lock()


class MotoVersionMismatch(UserWarning):
    """The installed moto is not the release the patches were written for: they are not applied."""


@dataclass(slots=True)
class _Before:
    """One touched item as it was before the transaction (None: it did not exist)."""

    table: Table
    hash_key: DynamoType
    range_key: DynamoType | None
    item: Item | None

    def restore(self) -> None:
        items: Any = self.table.items
        if self.range_key is None:
            if self.item is None:
                items.pop(self.hash_key, None)
            else:
                items[self.hash_key] = self.item
        elif self.item is None:
            items.get(self.hash_key, {}).pop(self.range_key, None)
        else:
            items[self.hash_key][self.range_key] = self.item


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's DynamoDBBackend.transact_write_items with per-item snapshots for the rollback."""
    if len(transact_items) > MAX_TRANSACTION_ITEMS:
        raise TooManyTransactionsException()
    if _touches_a_stream(self, transact_items):
        _original(self, transact_items)
        return
    with _isolation:
        _apply(self, transact_items)


def _touches_a_stream(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> bool:
    for item in transact_items:
        for op in item.values():
            name = op.get("TableName") if isinstance(op, dict) else None
            table = backend.tables.get(name) if isinstance(name, str) else None
            if table is not None and table.stream_shard is not None:
                return True
    return False


def _apply(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:  # noqa: PLR0915
    # moto's method step for step (so that it reads against moto's source), its backup replaced.
    before: list[_Before] = []

    def roll_back() -> None:
        for snapshot in reversed(before):
            snapshot.restore()

    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []  # [(Code, Message, Item)]
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            roll_back()
            raise TransactWriteSingleOpException

        try:
            op_type, op = next(iter(item.items()))
            if op_type not in OPERATIONS:
                raise ValueError("Unsupported transaction operation")

            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")

            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]

            check_unicity(table_name, key)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression, expression_attribute_names, expression_attribute_values
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                # get_item above found the table and the key's values: neither raises here.
                table = self.get_table(table_name)
                hash_key, range_key = self.get_keys_value(table, key)
                before.append(_Before(table, hash_key, range_key, copy.deepcopy(current)))

            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            roll_back()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore[arg-type]
        except Exception as e:  # moto's own: any other failure becomes that item's cancellation reason
            errors.append((type(e).__name__, str(e), original_item))  # type: ignore[arg-type]

    if any(code is not None for code, _, _ in errors):
        roll_back()
        raise TransactionCanceledException(errors)


class _OnePartition:
    """A table as moto's Table.query sees it: one partition's items, everything else the table's."""

    all_items = Table.all_items

    def __init__(self, table: Table, hash_key: DynamoType) -> None:
        self._table = table
        bucket = table.items.get(hash_key)  # .get: the table's defaultdict gains no empty partition
        self.items = {hash_key: bucket} if bucket else {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
    """moto's Table.query; on the table's own key (no index), over that partition only."""
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is None and hash_key is not None:
        return _original_query(_OnePartition(self, hash_key), hash_key, *args, **kwargs)
    return _original_query(self, hash_key, *args, **kwargs)


_MESSAGE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)


@functools.cache
def _property_name(attribute: str) -> str:
    return camelcase_to_underscores(attribute)


def queue_attributes(self: sqs_models.Queue) -> dict[str, Any]:
    """moto's Queue.attributes, with the three message counts from one walk of the messages."""
    now = unix_time_millis()
    ready = delayed = not_visible = 0
    for message in self._messages:
        visible = now > message.visible_at  # Message.visible
        held = now < message.delayed_until  # Message.delayed
        ready += visible and not held  # Queue.messages: visible and not delayed
        delayed += held
        not_visible += not visible
    counts = dict(zip(_MESSAGE_COUNTS, (ready, delayed, not_visible), strict=True))
    result: dict[str, Any] = {}
    for attribute in self.BASE_ATTRIBUTES:
        result[attribute] = (
            counts[attribute] if attribute in counts else getattr(self, _property_name(attribute))
        )
    if self.fifo_queue:
        for attribute in self.FIFO_ATTRIBUTES:
            result[attribute] = getattr(self, _property_name(attribute))
    if self.kms_master_key_id:  # type: ignore[attr-defined]
        for attribute in self.KMS_ATTRIBUTES:
            result[attribute] = getattr(self, _property_name(attribute))
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    return {key: str(value).lower() if isinstance(value, bool) else value for key, value in result.items()}


def delete_message(self: sqs_models.Queue, receipt_handle: str) -> None:
    """moto's Queue.delete_message, under the lock that Queue.add_message appends with."""
    with self._messages_lock:
        _original_delete_message(self, receipt_handle)


def install(version: str | None = None) -> bool:
    """Patch moto's DynamoDB backend (this process only). False, with a warning, on another moto."""
    found = moto.__version__ if version is None else version
    if found != MOTO_VERSION:
        warnings.warn(
            f"moto {found} is installed, but the local runtime's patches (TransactWriteItems, Query) were written for "
            f"moto {MOTO_VERSION}: not applied. Every transaction now copies the whole table, so the "
            f"local runtime slows down as the table grows; install moto[server]=={MOTO_VERSION} "
            "(pyproject.toml, uv.lock: `make run` installs it) to get it back.",
            MotoVersionMismatch,
            stacklevel=2,
        )
        return False
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    sqs_models.Queue.attributes = property(queue_attributes)  # type: ignore[method-assign,assignment]
    sqs_models.Queue.delete_message = delete_message  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    DynamoDBBackend.transact_write_items = _original  # type: ignore[method-assign,assignment]
    Table.query = _original_query  # type: ignore[method-assign]
    sqs_models.Queue.attributes = _original_queue_attributes  # type: ignore[method-assign,assignment]
    sqs_models.Queue.delete_message = _original_delete_message  # type: ignore[method-assign,assignment]


def installed() -> bool:
    return DynamoDBBackend.transact_write_items is transact_write_items


@contextmanager
def patched() -> Iterator[None]:
    """The patch for the duration of a block (tests that compare it with moto's own method)."""
    was = installed()
    if not install():
        raise RuntimeError(f"moto {moto.__version__} is not {MOTO_VERSION}")
    try:
        yield
    finally:
        if not was:
            uninstall()
