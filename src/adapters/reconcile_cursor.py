"""The reconciler's own items in the table: its cursor, and the subscription ids a pass has listed.

    pk                          sk                  what
    RECONCILE                   CURSOR              where the pass stands (DRY_RUN_CURSOR: dry runs')
    RECONCILE                   BACKFILL            where the backfill stands (DRY_RUN_BACKFILL)
    RECONCILE                   ACCOUNTS            the Connect accounts that have records, per mode,
                                                    and those that deauthorized the platform
    RECONCILE                   RECORDS_INDEXED     written once a scan of the whole table marked every
                                                    record written before the records-to-check index
    RECONCILE#SEEN#<pass id>    <page number>       the ids one listed page held; expire after SEEN_DAYS

The cursor is written with an optimistic lock (pynamodb's VersionAttribute): two runs that overlap
(the schedule and an operator) cannot move it past pages the other has not finished; the second one
stops. The seen ids let the records phase, possibly runs later, tell which records the lists left out
(test-clock subscriptions, other accounts, objects Stripe no longer has) without keeping a million ids
in one item.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.exceptions import PutError

from adapters.sync_table import SyncItem
from domain.credentials import MODES
from domain.reconcile import Account, Counts, PassCursor
from domain.reconcile.ports import CursorConflict

CURSOR_PK = "RECONCILE"
CURSOR_SK = "CURSOR"
DRY_RUN_CURSOR_SK = "DRY_RUN_CURSOR"
BACKFILL_SK = "BACKFILL"
DRY_RUN_BACKFILL_SK = "DRY_RUN_BACKFILL"
ACCOUNTS_SK = "ACCOUNTS"
RECORDS_INDEXED_SK = "RECORDS_INDEXED"
SEEN_DAYS = 35  # longer than any pass runs: a pass of a million subscriptions takes hours, not weeks


class CursorItem(SyncItem, discriminator="cursor"):
    pass_id = UnicodeAttribute()
    phases = UnicodeAttribute()  # space-separated, in order
    phase = UnicodeAttribute()
    position = UnicodeAttribute(null=True)
    pages = NumberAttribute()
    started_at = NumberAttribute()
    updated_at = NumberAttribute()
    completed_at = NumberAttribute(null=True)
    counts = UnicodeAttribute()  # JSON: counter name -> number
    checkpoint = NumberAttribute(null=True)
    new_accounts = UnicodeAttribute(null=True)  # space-separated "<mode>:<acct_…>"
    version = VersionAttribute()


class AccountsItem(SyncItem, discriminator="reconcile_accounts"):
    accounts = UnicodeAttribute()  # space-separated "<mode>:<acct_…>"
    # JSON "<mode>:<acct_…>" -> epoch seconds: accounts that refused the platform, and since when
    deauthorized = UnicodeAttribute(null=True)


class SeenPageItem(SyncItem, discriminator="reconcile_seen"):
    ids = UnicodeAttribute()  # space-separated subscription ids
    expires_at = TTLAttribute()


class RecordsIndexedItem(SyncItem, discriminator="records_indexed"):
    """From when the records phase reads the records-to-check index instead of the whole table."""

    indexed_at = NumberAttribute()


def seen_pk(pass_id: str) -> str:
    return f"RECONCILE#SEEN#{pass_id}"


def records_indexed() -> bool:
    """Whether every record that can drift carries its mark (adapters.reconciler.TableRecords)."""
    try:
        RecordsIndexedItem.get(CURSOR_PK, RECORDS_INDEXED_SK, consistent_read=True)
    except RecordsIndexedItem.DoesNotExist:
        return False
    return True


def mark_records_indexed(now: int) -> None:
    RecordsIndexedItem(CURSOR_PK, RECORDS_INDEXED_SK, indexed_at=now).save()


MODELS: tuple[type[SyncItem], ...] = (CursorItem, AccountsItem, SeenPageItem, RecordsIndexedItem)


class CursorStore:
    def __init__(self, *, dry_run: bool = False, backfill: bool = False) -> None:
        if backfill:
            self._sk = DRY_RUN_BACKFILL_SK if dry_run else BACKFILL_SK
        else:
            self._sk = DRY_RUN_CURSOR_SK if dry_run else CURSOR_SK

    def load(self) -> PassCursor | None:
        try:
            item = CursorItem.get(CURSOR_PK, self._sk, consistent_read=True)
        except CursorItem.DoesNotExist:
            return None
        return PassCursor(
            pass_id=item.pass_id,
            phases=tuple(item.phases.split()),
            phase=item.phase,
            position=item.position,
            pages=int(item.pages),
            started_at=int(item.started_at),
            updated_at=int(item.updated_at),
            completed_at=None if item.completed_at is None else int(item.completed_at),
            counts=Counts.from_dict(json.loads(item.counts)),
            version=item.version,
            checkpoint=None if item.checkpoint is None else int(item.checkpoint),
            new_accounts=tuple((item.new_accounts or "").split()),
        )

    def save(self, cursor: PassCursor) -> PassCursor:
        """Write the cursor if nobody else did since it was read; returns it with its new version."""
        item = CursorItem(
            CURSOR_PK,
            self._sk,
            pass_id=cursor.pass_id,
            phases=" ".join(cursor.phases),
            phase=cursor.phase,
            position=cursor.position,
            pages=cursor.pages,
            started_at=cursor.started_at,
            updated_at=cursor.updated_at,
            completed_at=cursor.completed_at,
            counts=json.dumps(cursor.counts.as_dict(), sort_keys=True),
            checkpoint=cursor.checkpoint,
            new_accounts=" ".join(cursor.new_accounts) or None,
        )
        if cursor.version is not None:
            item.version = cursor.version
        try:
            item.save()
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise CursorConflict("another reconcile run moved the cursor: this run stops") from error
            raise
        return replace(cursor, version=item.version)

    def add_seen(self, pass_id: str, page: int, ids: Iterable[str], now: int) -> None:
        """Remember the ids of one listed page (saved before the cursor moves past it)."""
        SeenPageItem(
            seen_pk(pass_id),
            f"{page:09d}",
            ids=" ".join(ids),
            expires_at=datetime.fromtimestamp(now + SEEN_DAYS * 86_400, UTC),
        ).save()

    def seen(self, pass_id: str) -> set[str]:
        """Every id the pass's lists held so far."""
        found: set[str] = set()
        for item in SeenPageItem.query(seen_pk(pass_id), consistent_read=True):
            found.update(item.ids.split())
        return found

    def accounts(self) -> set[Account]:
        """The Connect accounts found with records so far (by the records phase of earlier passes)."""
        return _accounts(self._accounts_item())

    def add_accounts(self, accounts: Iterable[Account]) -> None:
        """Remember more accounts (the union: two runs adding at once lose nothing but a retry's worth,
        and an account left out now is added by the next records page that holds it)."""
        item = self._accounts_item()
        known = _accounts(item)
        merged = known | set(accounts)
        if merged != known:
            AccountsItem(
                CURSOR_PK,
                ACCOUNTS_SK,
                accounts=" ".join(sorted(f"{mode}:{acct}" for mode, acct in merged)),
                deauthorized=item.deauthorized if item else None,
            ).save()

    def deauthorized(self) -> dict[Account, int]:
        """The connected accounts marked as refusing the platform, with when that was first seen."""
        return _deauthorized(self._accounts_item())

    def set_deauthorized(self, account: Account, since: int | None) -> None:
        """Mark (since `since`) or clear (None) one account; the accounts list is kept as it is."""
        item = self._accounts_item()
        marks = _deauthorized(item)
        if since is None:
            marks.pop(account, None)
        else:
            marks.setdefault(account, since)
        text = (
            json.dumps({f"{mode}:{acct}": at for (mode, acct), at in sorted(marks.items())})
            if marks
            else None
        )
        AccountsItem(CURSOR_PK, ACCOUNTS_SK, accounts=item.accounts if item else "", deauthorized=text).save()

    @staticmethod
    def _accounts_item() -> AccountsItem | None:
        try:
            return AccountsItem.get(CURSOR_PK, ACCOUNTS_SK, consistent_read=True)
        except AccountsItem.DoesNotExist:
            return None


def _accounts(item: AccountsItem | None) -> set[Account]:
    found: set[Account] = set()
    for entry in (item.accounts if item else "").split():
        mode, _, account = entry.partition(":")
        if mode in MODES and account:
            found.add((mode, account))
    return found


def _deauthorized(item: AccountsItem | None) -> dict[Account, int]:
    marks: dict[Account, int] = {}
    for entry, since in json.loads(item.deauthorized or "{}").items() if item else ():
        mode, _, account = str(entry).partition(":")
        if mode in MODES and account:
            marks[(mode, account)] = int(since)
    return marks
