"""One JSON object per line on stdout, with CloudWatch's embedded metric format for counts.

For the two light handlers (the EventBridge ingress and the "entitlements changed" publisher), as the
webhook writes its lines: CloudWatch Logs Insights parses them like Powertools' output, and each
metric is counted without a PutMetricData call or Powertools' import.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

DEFAULT_NAMESPACE = "StripeSync"
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def emit(level: str, message: str, *, service: str, metrics: tuple[str, ...] = (), **fields: Any) -> None:
    """The log record when LOG_LEVEL lets it through, and the metrics in any case."""
    logged = _LEVELS[level] >= _LEVELS.get(os.environ.get("LOG_LEVEL", "INFO").upper(), 20)
    if not logged and not metrics:
        return
    now = time.time()
    record: dict[str, Any] = {"service": os.environ.get("POWERTOOLS_SERVICE_NAME") or service}
    if metrics:
        record["_aws"] = {
            "Timestamp": int(now * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in metrics],
                }
            ],
        }
        record.update((name, 1) for name in metrics)
    if logged:
        record.update(level=level, message=message, timestamp=round(now, 3))
        record.update((key, value) for key, value in fields.items() if value is not None)
    print(json.dumps(record, default=str, separators=(",", ":")), flush=True)  # compact: bytes are billed
