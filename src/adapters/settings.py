"""Settings of the worker and the reconciler, parsed once per container from the environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from domain.entitlements import EntitlementRules

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "entitlement_rules.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    queue_url: str | None
    stripe_api_base: str | None
    ledger_days: int
    rules: EntitlementRules


class SettingsError(ValueError):
    """A setting is missing or invalid: the function cannot start."""


def load_rules(path: Path | None = None) -> EntitlementRules:
    rules_path = path or Path(os.environ.get("ENTITLEMENT_RULES_FILE") or DEFAULT_RULES_FILE)
    try:
        with rules_path.open("rb") as file:
            return EntitlementRules.from_mapping(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as error:
        raise SettingsError(f"entitlement rules {rules_path}: {error}") from error


def load_settings() -> Settings:
    table = os.environ.get("TABLE_NAME")
    if not table:
        raise SettingsError("TABLE_NAME is not set")
    try:
        ledger_days = int(os.environ.get("EVENT_LEDGER_DAYS", "45"))
    except ValueError as error:
        raise SettingsError("EVENT_LEDGER_DAYS must be a whole number of days") from error
    return Settings(
        table_name=table,
        queue_url=os.environ.get("QUEUE_URL") or None,
        stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
        ledger_days=ledger_days,
        rules=load_rules(),
    )
