"""The Lambda entry points; each parses its settings once per container and wires domain and adapters.

LogSettings is here because every function's package holds this package, the webhook's included,
which holds neither Powertools nor handlers.log_line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
DEFAULT_NAMESPACE = "StripeSync"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How the light functions write their JSON lines (LOG_LEVEL, POWERTOOLS_SERVICE_NAME,
    POWERTOOLS_METRICS_NAMESPACE, the names Powertools reads for the others)."""

    threshold: int  # the lowest level logged; an unknown LOG_LEVEL logs INFO and up, as Powertools does
    service: str
    namespace: str

    def logs(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold


@functools.cache
def log_settings(default_service: str) -> LogSettings:
    """Parsed once per container (and per default service name, which each handler gives)."""
    return LogSettings(
        threshold=LEVELS.get(os.environ.get("LOG_LEVEL", "INFO").upper(), LEVELS["INFO"]),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or default_service,
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
    )
