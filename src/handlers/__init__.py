"""The Lambda entry points; each parses its settings once per container and wires domain and adapters.

The light functions' log line (LogSettings, `emit`, `queued_event_fields`) is here because every
function's package holds this package, the webhook's included, which holds no Powertools: the webhook,
the EventBridge ingress and the "entitlements changed" publisher write one JSON object per line on
stdout, with CloudWatch's embedded metric format for counts. CloudWatch Logs Insights parses them
like Powertools' output, and each metric is counted without a PutMetricData call or Powertools' import.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.ingress import QueueMessage, StripeEvent

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


def emit(
    level: str,
    message: str,
    *,
    service: str,
    metrics: tuple[str, ...] = (),
    by_mode: tuple[str, str | None] | None = None,
    mode_metrics: Collection[str] = (),
    **fields: Any,
) -> None:
    """The log record when LOG_LEVEL lets it through, and the metrics in any case (LogSettings, parsed
    once per container; `service` unless POWERTOOLS_SERVICE_NAME names another). `by_mode`
    (dimension name, value) also counts those of the metrics in `mode_metrics` per mode."""
    config = log_settings(service)
    logged = config.logs(level)
    if not logged and not metrics:
        return
    now = time.time()
    record: dict[str, Any] = {"service": config.service}
    if metrics:
        namespace = config.namespace
        per_mode = [name for name in metrics if by_mode is not None and by_mode[1] and name in mode_metrics]
        directives = []
        if rest := [name for name in metrics if name not in per_mode]:
            directives.append(_directive(namespace, [["service"]], rest))
        if per_mode and by_mode is not None:
            dimension, value = by_mode
            directives.append(_directive(namespace, [["service"], ["service", dimension]], per_mode))
            record[dimension] = value
        record["_aws"] = {"Timestamp": int(now * 1000), "CloudWatchMetrics": directives}
        record.update((name, 1) for name in metrics)
    if logged:
        record.update(level=level, message=message, timestamp=round(now, 3))
        record.update((key, value) for key, value in fields.items() if value is not None)
    print(json.dumps(record, default=str, separators=(",", ":")), flush=True)  # compact: bytes are billed


def _directive(namespace: str, dimensions: list[list[str]], names: list[str]) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "Dimensions": dimensions,
        "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
    }


def queued_event_fields(event: StripeEvent, message: QueueMessage) -> dict[str, Any]:
    """What an ingress logs of an event it queues (or failed to): its ids and where it goes, nothing of
    its payload."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "livemode": event.livemode,
        "account": event.account,
        "message_group": message.group_id,
        "by_reference": message.by_reference,
    }
