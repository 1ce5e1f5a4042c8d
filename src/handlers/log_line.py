"""One JSON object per line on stdout, with CloudWatch's embedded metric format for counts.

For the two light handlers (the EventBridge ingress and the "entitlements changed" publisher), as the
webhook writes its lines: CloudWatch Logs Insights parses them like Powertools' output, and each
metric is counted without a PutMetricData call or Powertools' import.
"""

from __future__ import annotations

import json
import time
from typing import Any

from handlers import log_settings


def emit(level: str, message: str, *, service: str, metrics: tuple[str, ...] = (), **fields: Any) -> None:
    """The log record when LOG_LEVEL lets it through, and the metrics in any case (handlers.LogSettings,
    parsed once per container; `service` unless POWERTOOLS_SERVICE_NAME names another)."""
    config = log_settings(service)
    logged = config.logs(level)
    if not logged and not metrics:
        return
    now = time.time()
    record: dict[str, Any] = {"service": config.service}
    if metrics:
        record["_aws"] = {
            "Timestamp": int(now * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": config.namespace,
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
