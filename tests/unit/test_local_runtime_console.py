"""What `make run` prints: one readable line per event, from the handlers' own JSON logs."""

from __future__ import annotations

import io
import json
import threading
import time

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local_runtime.console import Console, HandlerOutput, access_text, source


def console(debug: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(
        out, max_receive_count=5, visibility_timeout=180, debug=debug, cli="stripe-sync --local"
    ), out


def lines(out: io.StringIO) -> list[str]:
    # Drop the time stamp; keep who and what.
    return [line[10:] for line in out.getvalue().splitlines()]


def log(**fields: object) -> str:
    return json.dumps({"level": "INFO", "message": "m", "timestamp": "t", "service": "s", **fields})


def test_webhook_lines_say_received_queued_and_rejected() -> None:
    shown, out = console()
    shown.handler_line(
        "webhook",
        log(outcome="queued", event_id="evt_1", event_type="invoice.paid", message_group="cus_1", status=200),
    )
    shown.handler_line(
        "webhook", log(level="WARNING", outcome="rejected", status=400, reason="no valid signature")
    )
    shown.handler_line(
        "webhook", log(level="ERROR", outcome="failed", status=503, error="queue down", event_id="e")
    )
    assert lines(out) == [
        "webhook    received evt_1 (invoice.paid) -> queued (group cus_1)",
        "webhook    rejected: 400 no valid signature",
        "webhook    FAILED e (?): 503 queue down (Stripe retries)",
    ]


def test_worker_results_show_entitlements_before_and_after() -> None:
    shown, out = console()
    future = int(time.time()) + 86_400
    shown.handler_line(
        "worker",
        log(
            outcome="applied",
            event_id="evt_1",
            event_type="customer.subscription.created",
            customer_id="cus_1",
            entitlements_changed=True,
            entitlements_after={
                "features": {"pro": None, "api": future},
                "payment_issue": True,
                "deleted": False,
            },
        ),
    )
    shown.handler_line(
        "worker",
        log(outcome="applied", event_id="evt_2", event_type="invoice.paid", entitlements_changed=False),
    )
    shown.handler_line("worker", log(outcome="stale", event_id="evt_3", event_type="x", customer_id="cus_1"))
    shown.handler_line(
        "worker", log(outcome="ignored", event_id="evt_4", event_type="y", reason="not tracked")
    )
    text = lines(out)
    assert text[0].startswith(
        "worker     evt_1 (customer.subscription.created): applied for cus_1; entitlements none -> "
    )
    assert "pro (no end)" in text[0]
    assert "api (until " in text[0]
    assert text[0].endswith("[payment issue]")
    assert text[1] == "worker     evt_2 (invoice.paid): applied; entitlements unchanged"
    assert text[2] == "worker     evt_3 (x): stale for cus_1 (older than what is stored, nothing written)"
    assert text[3] == "worker     evt_4 (y): ignored (not tracked)"


def test_worker_failures_count_the_tries_up_to_the_dlq() -> None:
    shown, out = console()
    for count in ("1", "5"):
        shown.handler_line(
            "worker",
            log(
                level="WARNING",
                event_id="evt_p",
                event_type="t",
                reason="subscription object: KeyError",
                receive_count=count,
            ),
        )
    shown.handler_line(
        "worker",
        log(
            level="ERROR",
            message="event failed",
            event_id="evt_q",
            event_type="t",
            exception_name="ClientError",
            stack_trace={"type": "ClientError", "value": "throttled"},
            exception="Traceback ...",
        ),
    )
    shown.handler_line(
        "worker",
        log(
            level="WARNING",
            message="event not applied",
            event_id="evt_r",
            event_type="t",
            reason="Stripe is down",
            receive_count=2,
            retry_in_seconds=4,
        ),
    )
    shown.handler_line(
        "worker",
        log(
            level="WARNING",
            message="event parked in the dead-letter queue",
            event_id="evt_s",
            event_type="t",
            reason="message body is not JSON",
            dead_letter_message_id="m-dlq-1",
            receive_count=1,
        ),
    )
    assert lines(out) == [
        "worker     evt_p (t): FAILED (subscription object: KeyError), try 1/5: retried in 180 s",
        "worker     evt_p (t): FAILED (subscription object: KeyError), try 5/5: goes to the dead-letter queue",
        "worker     evt_q (t): FAILED (ClientError: throttled); retried in 180 s",
        "worker     evt_r (t): FAILED (Stripe is down), try 2/5: retried in 4 s",
        "worker     evt_s (t): PARKED in the dead-letter queue (message body is not JSON): retrying cannot "
        "fix it; its customer's later events go on. stripe-sync --local dlq show m-dlq-1",
    ]


def test_json_lines_are_shown_too_in_debug_and_other_text_as_is() -> None:
    shown, out = console(debug=True)
    record = log(outcome="applied", event_id="e", event_type="t", entitlements_changed=False)
    shown.handler_line("worker", record)
    shown.handler_line("worker", "plain text from a print()")
    assert out.getvalue().splitlines()[0] == record
    assert out.getvalue().splitlines()[-1] == "plain text from a print()"


def test_worker_chatter_is_hidden_unless_debugging() -> None:
    shown, out = console()
    shown.handler_line("worker", log(message="Processing batch"))
    assert out.getvalue() == ""
    shown.handler_line("reconcile", log(message="reconcile run", checked=3, drift=0))
    assert lines(out) == ["reconcile  reconcile run checked=3 drift=0"]


def test_the_event_source_observer_lines() -> None:
    shown, out = console()
    shown.batch_failed(2, BatchProcessingError("All records failed", []))  # each message said why already
    shown.batch_failed(2, TimeoutError("slow"))
    shown.dead_letter_queue_depth(1)
    shown.dead_letter_queue_depth(0)
    assert lines(out) == [
        "worker     invocation FAILED (TimeoutError: slow): all 2 message(s) retried in 180 s",
        "dlq        1 message(s) in the dead-letter queue: stripe-sync --local dlq list",
        "dlq        the dead-letter queue is empty",
    ]


def test_handler_output_routes_lines_by_the_thread_that_writes_them() -> None:
    shown, out = console()
    passthrough = io.StringIO()
    stdout = HandlerOutput(shown, passthrough)
    stdout.write("not from a handler\n")
    record = log(outcome="queued", event_id="evt_9", event_type="t")

    def webhook_thread() -> None:
        with source("webhook"):
            stdout.write(record[:10])  # a line may arrive in pieces
            stdout.write(record[10:] + "\n")

    thread = threading.Thread(target=webhook_thread)
    thread.start()
    thread.join()
    assert passthrough.getvalue() == "not from a handler\n"
    assert lines(out) == ["webhook    received evt_9 (t) -> queued"]


def test_access_text() -> None:
    past = int(time.time()) - 10
    assert access_text(None) == "none"
    assert access_text({"features": {}}) == "no features"
    assert access_text({"features": {"a": past}, "deleted": True}).startswith("a (ended ")
    assert access_text({"features": {"a": past}, "deleted": True}).endswith("[customer deleted]")
