"""The light functions' JSON log line (handlers.emit) and what an ingress logs of a queued event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from domain.ingress import parse_event, queue_message
from handlers import emit, queued_event_fields


@pytest.fixture(autouse=True)
def default_log_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


def written(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_line_carries_its_metrics_as_embedded_metrics_and_leaves_out_empty_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit(
        "INFO",
        "ingress queued",
        service="ingress",
        metrics=("DeliveriesQueued",),
        request_id="r-1",
        gone=None,
    )

    [line] = written(capsys)
    assert line["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "StripeSync",
            "Dimensions": [["service"]],
            "Metrics": [{"Name": "DeliveriesQueued", "Unit": "Count"}],
        }
    ]
    assert isinstance(line["_aws"]["Timestamp"], int)
    assert isinstance(line.pop("timestamp"), float)
    del line["_aws"]
    assert line == {
        "service": "ingress",
        "DeliveriesQueued": 1,
        "level": "INFO",
        "message": "ingress queued",
        "request_id": "r-1",
    }


def test_the_mode_metrics_are_also_counted_per_mode_and_the_others_per_service_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit(
        "WARNING",
        "rejected",
        service="ingress",
        metrics=("DeliveriesRejected", "DeliveriesUnverified"),
        by_mode=("claimed_mode", "live"),
        mode_metrics={"DeliveriesUnverified"},
    )

    [line] = written(capsys)
    assert [
        (d["Dimensions"], [m["Name"] for m in d["Metrics"]]) for d in line["_aws"]["CloudWatchMetrics"]
    ] == [
        ([["service"]], ["DeliveriesRejected"]),
        ([["service"], ["service", "claimed_mode"]], ["DeliveriesUnverified"]),
    ]
    assert (line["claimed_mode"], line["DeliveriesRejected"], line["DeliveriesUnverified"]) == ("live", 1, 1)


def test_without_a_mode_value_nothing_is_counted_per_mode(capsys: pytest.CaptureFixture[str]) -> None:
    emit(
        "INFO",
        "queued",
        service="ingress",
        metrics=("DeliveriesQueued",),
        by_mode=("mode", None),
        mode_metrics={"DeliveriesQueued"},
    )

    [line] = written(capsys)
    assert [d["Dimensions"] for d in line["_aws"]["CloudWatchMetrics"]] == [[["service"]]]
    assert "mode" not in line


def test_below_log_level_only_the_metrics_are_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "named")

    emit("INFO", "queued", service="ingress", metrics=("DeliveriesQueued",), event_id="evt_1")
    emit("INFO", "nothing to count", service="ingress", event_id="evt_2")

    [line] = written(capsys)
    assert set(line) == {"service", "_aws", "DeliveriesQueued"}
    assert line["service"] == "named"


def test_a_queued_event_is_logged_by_its_ids_and_its_group_and_nothing_of_its_payload(
    stripe_event_factory: Callable[..., dict[str, Any]],
) -> None:
    document = stripe_event_factory("invoice.paid", account="acct_1Connected")
    event = parse_event(json.dumps(document))
    message = queue_message(event)

    assert queued_event_fields(event, message) == {
        "event_id": document["id"],
        "event_type": "invoice.paid",
        "livemode": False,
        "account": "acct_1Connected",
        "message_group": message.group_id,
        "by_reference": False,
    }
