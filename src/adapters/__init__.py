"""I/O of the functions: the table, the queues, the bus, Stripe, credentials and settings.

SettingsError and the reading of one variable live here, not in adapters.settings, because every
function's package holds this package while the webhook's must not hold adapters.settings (the
entitlement rules and the reconciler's options): each function parses its settings once per container
with these, into one frozen object it hands to the adapters it configures.
"""

from __future__ import annotations

from collections.abc import Mapping


class SettingsError(ValueError):
    """A setting is missing or invalid: the function cannot start. `variable` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


def required(env: Mapping[str, str], variable: str) -> str:
    """The variable's value; SettingsError when it is unset or empty."""
    value = env.get(variable)
    if not value:
        raise SettingsError(variable, f"{variable} is not set")
    return value


def optional(env: Mapping[str, str], variable: str) -> str | None:
    """The variable's value; None when it is unset or empty."""
    return env.get(variable) or None


def whole_number(env: Mapping[str, str], variable: str, default: int, *, unit: str) -> int:
    """A whole number of `unit` (at least 0); the default when unset or empty."""
    text = (env.get(variable) or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise SettingsError(variable, f"{variable} must be a whole number of {unit}, is {text!r}")
    return int(text)
