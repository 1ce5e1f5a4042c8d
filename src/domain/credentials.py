"""Stripe credentials as operators write them: the syntax of STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY.

The same strings are used locally (environment) and in AWS (the Secrets Manager secret), so both
parse here. Values are secrets: errors name the position of a bad entry, never its text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["test", "live"]
MODES: tuple[Mode, ...] = ("test", "live")


class CredentialsError(ValueError):
    """A configured secret or key is malformed (the message never contains the value)."""


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """One endpoint signing secret; `mode` None means it is accepted for either mode."""

    value: bytes = field(repr=False)
    mode: Mode | None = None

    def accepts(self, livemode: bool) -> bool:
        return self.mode is None or self.mode == ("live" if livemode else "test")


def parse_webhook_secrets(text: str | None) -> tuple[WebhookSecret, ...]:
    """`whsec_a,test:whsec_b,live:whsec_c` -> secrets; several per mode allowed (rotation)."""
    secrets: list[WebhookSecret] = []
    for position, entry in enumerate(_entries(text), start=1):
        mode: Mode | None = None
        value = entry
        prefix, sep, rest = entry.partition(":")
        if sep:
            if prefix not in MODES:
                raise CredentialsError(f"webhook secret #{position}: mode must be 'test' or 'live'")
            mode, value = prefix, rest.strip()
        if not value.startswith("whsec_") or len(value) <= len("whsec_"):
            raise CredentialsError(f"webhook secret #{position}: expected whsec_…")
        secrets.append(WebhookSecret(value.encode(), mode))
    return tuple(secrets)


def parse_api_keys(text: str | None) -> dict[Mode, str]:
    """`sk_test_…,sk_live_…` (or restricted `rk_…`) -> key per mode; the prefix gives the mode."""
    keys: dict[Mode, str] = {}
    for position, entry in enumerate(_entries(text), start=1):
        kind, _, rest = entry.partition("_")
        mode, _, secret = rest.partition("_")
        if kind not in ("sk", "rk") or mode not in MODES or not secret:
            raise CredentialsError(
                f"API key #{position}: expected sk_test_…, sk_live_…, rk_test_… or rk_live_…"
            )
        if mode in keys:
            raise CredentialsError(f"API key #{position}: a second {mode}-mode key")
        keys[mode] = entry
    return keys


def _entries(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]
