"""The reconciler's adapters (domain.reconcile.run is the use case; domain.reconcile.ports its ports):
Stripe lists and fetches through adapters.stripe_api with the SDK's errors turned into the port's,
every table read of a pass in `TableRecords`, and `reconcile`, which wires them from settings parsed
once per container (adapters.settings.ReconcileSettings) for the Lambda, the local runtime and the
ops CLI. I/O only: what a pass does with what it reads is the domain's.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.constants import NONE
from pynamodb.exceptions import PynamoDBException, UpdateError

from adapters import reconcile_cursor, sync_table, table_items
from adapters.event_queue import QueueUnavailable
from adapters.fetched_queue import FetchedQueue
from adapters.settings import ReconcileSettings, SettingsError
from adapters.stripe_api import StripeApi
from adapters.stripe_credentials import api_keys
from domain.reconcile import Account, Everything, ReconcileReport, Scope
from domain.reconcile.pages import SCAN_PAGE_ITEMS
from domain.reconcile.ports import (
    Key,
    NotFound,
    RateLimited,
    RecordsPage,
    Refused,
    ScannedRecord,
    StripeFailure,
    StripePage,
    StripeUnavailable,
)
from domain.reconcile.request import DEFAULT_MAX_REQUESTS_PER_SECOND
from domain.reconcile.run import ReconcileNotConfigured as NotConfigured
from domain.reconcile.run import Reconciler as ReconcileUseCase
from domain.records import RecordKind, Snapshot
from domain.settlement import can_drift
from domain.stripe_objects import NotAtStripe

VERIFIED_KINDS = ("subscription", "purchase", "payment", "dispute", "entitlement_summary")

# Failures of the table and the queue: they stop every phase alike, so they end a run where it stands
# (the cursor stays at the last finished page) instead of skipping a phase.
STOPPING_ERRORS: tuple[type[Exception], ...] = (
    QueueUnavailable,
    PynamoDBException,
    BotoCoreError,
    ClientError,
)


class ReconcileNotConfigured(SettingsError, NotConfigured):
    """No API key, or no queue for a run that repairs: the reconciler cannot run."""


# -- Stripe ---------------------------------------------------------------------------------------


def port_failure(error: stripe.StripeError) -> StripeFailure:
    """The SDK's error as the port's (domain.reconcile.ports): only status, code and message cross."""
    status, code, message = error.http_status, error.code, error.user_message or str(error)
    if isinstance(error, stripe.RateLimitError) or status == 429:
        return RateLimited(message, http_status=status, code=code)
    if isinstance(error, stripe.APIConnectionError) or status is None or status >= 500:
        return StripeUnavailable(message, http_status=status, code=code)
    if status == 404:
        return NotFound(message, http_status=status, code=code)
    return Refused(message, http_status=status, code=code)


class StripeListing:
    """`domain.reconcile.ports.StripeLists` on adapters.stripe_api."""

    def __init__(self, api: StripeApi) -> None:
        self.api = api

    def can_fetch(self, livemode: bool) -> bool:
        return self.api.can_fetch(livemode)

    def list_page(
        self, livemode: bool, account: str | None, path: str, params: Mapping[str, Any]
    ) -> StripePage:
        return _translated(lambda: self.api.list_page(livemode, path, params, account=account))

    def fetch_object(
        self, object_type: str, object_id: str, livemode: bool, account: str | None
    ) -> Mapping[str, Any]:
        return _translated(lambda: self.api.fetch_object(object_type, object_id, livemode, account))

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]:
        return _translated(lambda: self.api.active_entitlement_keys(customer_id, livemode, account))


def _translated[T](request: Callable[[], T]) -> T:
    try:
        return request()
    except stripe.StripeError as error:
        raise port_failure(error) from error
    except NotAtStripe as error:  # adapters.stripe_api's 404 resource_missing
        raise NotFound(str(error), http_status=404, code="resource_missing") from error


# -- the table ------------------------------------------------------------------------------------


class TableRecords:
    """`domain.reconcile.ports.ReconcileTable` on adapters.table_items (so a change of the storage
    layout changes only this class): records by key in batches, ledger entries in batches, a
    customer's records, and a page of the records that can still drift (the records-to-check index)."""

    @staticmethod
    def key_of(kind: RecordKind, object_id: str, customer: str | None) -> Key | None:
        """Where the worker stores the record of an object: in its customer's partition, or for a
        purchase without a customer apart as a guest; None when the object names no customer."""
        if customer is not None:
            return table_items.customer_pk(customer), table_items.record_sk(kind, object_id)
        if kind == "purchase":
            return f"GUEST#{object_id}", table_items.record_sk(kind, object_id)
        return None

    def records(self, keys: Iterable[Key]) -> dict[Key, Snapshot]:
        """The stored snapshots at these keys (BatchGetItem, 100 keys a request)."""
        wanted = set(keys)
        if not wanted:
            return {}
        found = table_items.RecordItem.batch_get(wanted)
        return {(item.pk, item.sk): table_items.snapshot_of_item(item) for item in found}

    def subscriptions(self, objects: Iterable[Mapping[str, Any]]) -> dict[str, Snapshot]:
        """The stored snapshots of these subscriptions, by id."""
        from domain.reconcile import customer_of_object  # noqa: PLC0415 - one rule, the domain's

        keys = set()
        for obj in objects:
            customer, object_id = customer_of_object(obj), obj.get("id")
            if customer is not None and isinstance(object_id, str):
                keys.add(
                    (table_items.customer_pk(customer), table_items.record_sk("subscription", object_id))
                )
        return {snapshot.record.id: snapshot for snapshot in self.records(keys).values()}

    @staticmethod
    def key_of_payment_record(snapshot: Snapshot) -> Key:
        """A dispute or refund names no customer: the worker files it under the customer its payment
        intent or charge leads to (the PAYMENT# lookups), else apart as unmatched. The table has no
        ledger since state items, so this record's stamp is what tells an applied event from a lost one."""
        record = snapshot.record
        customer = sync_table.DynamoCustomerStore().customer_of_payment(
            getattr(record, "payment_intent_id", None), getattr(record, "charge_id", None)
        )
        if customer is not None:
            return table_items.customer_pk(customer), table_items.record_sk(record.kind, record.id)
        return table_items.unmatched_pk(snapshot), table_items.record_sk(record.kind, record.id)

    def applied(self, event_ids: Iterable[str]) -> set[str]:
        """The events the ledger of a table written before state items holds (BatchGetItem, 100 a
        request); the worker writes no ledger now, so for newer events the records' stamps decide."""
        keys = {(f"EVENT#{event_id}", "EVENT") for event_id in event_ids}
        if not keys:
            return set()
        return {item.pk.removeprefix("EVENT#") for item in table_items.LedgerItem.batch_get(keys)}

    def of_customer(self, customer_id: str) -> list[Snapshot]:
        query = table_items.RecordItem.query(table_items.customer_pk(customer_id), consistent_read=True)
        return [table_items.snapshot_of_item(item) for item in query]

    def scan_page(
        self, position: str | None, limit: int, compared_already: Callable[[str, str], bool]
    ) -> RecordsPage:
        """One Scan request of the records-to-check index, then one BatchGetItem of the records it
        names that are not `compared_already`. On a table written before the index (no RECORDS_INDEXED
        marker yet), one Scan request of the table's records instead, marking each that can drift as
        it goes; the scan that reaches the end from the start writes the marker. The position says
        which scan it continues: {"index": key}, {"table": key}, or a bare key (a scan a reconciler
        before the index began: it ends without the marker, and the next pass scans the table again)."""
        start = json.loads(position) if position else None
        if start is None:
            where = "index" if reconcile_cursor.records_indexed() else "table"
            key = None
        elif "index" in start or "table" in start:
            ((where, key),) = start.items()
        else:
            where, key = "legacy", start
        if where == "index":
            return self._index_page(key, limit, compared_already)
        return self._table_page(key, limit, compared_already, marks=where == "table")

    @staticmethod
    def _index_page(
        start: dict[str, Any] | None, limit: int, compared_already: Callable[[str, str], bool]
    ) -> RecordsPage:
        results = table_items.SyncItem.records_to_check.scan(page_size=limit, last_evaluated_key=start)
        page = next(results.page_iter)
        accounts: set[Account] = set()
        keys: list[Key] = []
        for raw in page.get("Items", []):
            item = _indexed(raw)
            if item.account:
                accounts.add(("live" if item.livemode else "test", item.account))
            if item.kind is not None and not compared_already(item.kind, item.object_id):
                keys.append(item.key)
        found = {(item.pk, item.sk): item for item in table_items.RecordItem.batch_get(keys)} if keys else {}
        last = page.get("LastEvaluatedKey")
        return RecordsPage(
            [_scanned(found[key]) for key in keys if key in found],  # a record deleted since is gone
            accounts,
            json.dumps({"index": last}, sort_keys=True) if last else None,
        )

    @staticmethod
    def _table_page(
        start: dict[str, Any] | None,
        limit: int,
        compared_already: Callable[[str, str], bool],
        *,
        marks: bool,
    ) -> RecordsPage:
        results = table_items.RecordItem.scan(
            table_items.RecordItem.kind.is_in(*VERIFIED_KINDS), page_size=limit, last_evaluated_key=start
        )
        page = next(results.page_iter)
        items = [table_items.RecordItem.from_raw_data(raw) for raw in page.get("Items", [])]
        for item in items:
            if item.drift_check is None:
                mark_record_to_check(item)
        last = page.get("LastEvaluatedKey")
        if last is None and marks:
            reconcile_cursor.mark_records_indexed(int(time.time()))
        return RecordsPage(
            [_scanned(item) for item in items if not compared_already(item.kind, _object_id(item.sk))],
            {("live" if item.livemode else "test", item.account) for item in items if item.account},
            json.dumps({"table": last} if marks else last, sort_keys=True) if last else None,
        )


@dataclass(frozen=True, slots=True)
class _IndexedItem:
    key: Key
    kind: str | None  # None: an entitlements item, read for its account alone
    object_id: str
    livemode: bool
    account: str | None


def _indexed(raw: Mapping[str, Any]) -> _IndexedItem:
    """An item of the index as projected (keys, item_type, kind, livemode, account)."""
    pk, sk = raw["pk"]["S"], raw["sk"]["S"]
    kind = raw["kind"]["S"] if "kind" in raw and raw.get("item_type", {}).get("S") == "record" else None
    return _IndexedItem(
        (pk, sk),
        kind,
        _object_id(sk),
        bool(raw.get("livemode", {}).get("BOOL")),
        raw.get("account", {}).get("S") or None,
    )


def _object_id(sk: str) -> str:
    return sk.partition("#")[2]


def mark_record_to_check(item: table_items.RecordItem) -> None:
    """Mark a record written before the index, unless the worker rewrote it since it was read (its
    write set or left out the mark itself). A record that cannot be read is left to the phase."""
    try:
        drifts = can_drift(table_items.snapshot_of_item(item).record)
    except (ValueError, TypeError, KeyError):
        return
    if not drifts:
        return
    try:
        table_items.RecordItem._get_connection().update_item(
            item.pk,
            item.sk,
            actions=[table_items.RecordItem.drift_check.set(item.pk)],
            condition=table_items.RecordItem.stamp_event == item.stamp_event,
            return_values=NONE,
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise


def _scanned(item: table_items.RecordItem) -> ScannedRecord:
    return ScannedRecord(
        key=(item.pk, item.sk),
        kind=item.kind,
        object_id=_object_id(item.sk),
        livemode=bool(item.livemode),
        account=item.account or None,
        snapshot=lambda: table_items.snapshot_of_item(item),
    )


# -- wiring ---------------------------------------------------------------------------------------


class Reconciler(ReconcileUseCase):
    """The use case over the real adapters: Stripe through `api`, repairs into `queue` (None for dry
    runs only), the table bound by `bind_table`."""

    def __init__(
        self,
        api: StripeApi,
        queue: FetchedQueue | None,
        *,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        requeue_failed_events: bool = True,
        records: TableRecords | None = None,
        scan_page_items: int = SCAN_PAGE_ITEMS,
        user_id_key: str = "user_id",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            StripeListing(api),
            queue,
            records or TableRecords(),
            reconcile_cursor.CursorStore,
            max_requests_per_second=max_requests_per_second,
            requeue_failed_events=requeue_failed_events,
            scan_page_items=scan_page_items,
            user_id_key=user_id_key,
            stopping_errors=STOPPING_ERRORS,
            clock=clock,
            sleep=sleep,
            jitter=jitter,
        )


def reconcile(
    settings: ReconcileSettings,
    scope: Scope | None = None,
    dry_run: bool = False,
    progress: Callable[[ReconcileReport], None] | None = None,
    *,
    time_budget_seconds: float | None = None,
) -> ReconcileReport:
    """Reconcile a deployed stack or the local runtime with these settings (parsed once per container:
    adapters.settings.reconcile_settings).

    `scope`: Everything() (the default; resumes the pass where the last run left it, after an
    unfinished backfill), OneCustomer("cus_…"), or Backfill(since) (resumes the backfill). `dry_run`:
    report drift without queueing repairs (a full dry run keeps a cursor of its own). `progress` is
    called with the report so far after every page.
    Raises, when it cannot run at all: ReconcileNotConfigured (no key, no queue), CredentialsError or
    SecretsUnavailable (the Stripe secret). Stripe failures skip a phase and are in the report; a
    failing table or queue ends the run, and is in the report too.
    """
    keys = api_keys(settings.stripe)
    if not keys:
        raise ReconcileNotConfigured(
            "STRIPE_API_KEY", "no STRIPE_API_KEY configured: nothing to reconcile against"
        )
    if not dry_run and not settings.queue_url:
        raise ReconcileNotConfigured("QUEUE_URL", "QUEUE_URL is not set (a dry run needs none)")
    settings.table.bind()
    reconciler = Reconciler(
        StripeApi(keys, settings.stripe_api_base),
        FetchedQueue(settings.queue_url, settings.sqs_client() if settings.sqs_client else None)
        if settings.queue_url
        else None,
        max_requests_per_second=settings.options.max_requests_per_second,
        requeue_failed_events=settings.options.requeue_failed_events,
        user_id_key=settings.user_id_key,
    )
    return reconciler.run(
        scope or Everything(),
        dry_run=dry_run,
        time_budget_seconds=settings.options.time_budget_seconds
        if time_budget_seconds is None
        else time_budget_seconds,
        progress=progress,
    )


def bind_table(table_name: str, host: str | None = None) -> None:
    """Point the models at the table (and at a DynamoDB endpoint when given): the tests' and the
    benchmarks' shortcut; reconcile() binds its settings' TableSettings."""
    table_items.configure(table_name, host=host)
