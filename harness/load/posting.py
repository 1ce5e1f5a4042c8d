"""Posting signed deliveries from a few threads, held back by the queue's backlog, and watching the
queue drain."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from events import lambda_events
from harness.load.runtime_process import POLL_SECONDS, LoadError
from harness.load.workload import Delivery

POST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Post:
    event_id: str
    sent_at: float  # wall clock (epoch seconds), comparable with the runtime's log timestamps
    seconds: float  # until the webhook's answer
    status: int  # 0: no answer (the error says why)
    error: str = ""


def post_signed(url: str, secret: str, delivery: Delivery) -> Post:
    """Sign `delivery` as Stripe does, at the current time, and POST it."""
    sent_at = time.time()
    header = lambda_events.signature_header(delivery.body, secret, int(sent_at))
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=delivery.body,
        headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS) as answer:  # loopback  # noqa: S310  # nosec B310
            answer.read()
            status, error = int(answer.status), ""
    except urllib.error.HTTPError as refused:
        status, error = refused.code, refused.read().decode(errors="replace")
    except OSError as failure:
        status, error = 0, f"{type(failure).__name__}: {failure}"
    return Post(delivery.event_id, sent_at, time.perf_counter() - started, status, error)


class BacklogGate:
    """Holds the posters back while the event queue holds `limit` messages or more (None: never).

    moto's SQS walks every queued message on each send and receive (measured on this runtime's moto:
    receive + delete of a batch 60 ms with 100 messages queued, 700 ms with 2,000), so an unbounded
    backlog would measure the growth of moto's list rather than the pipeline. Stripe itself pushes
    to an endpoint at the pace it answers, with retries, not all at once.
    """

    def __init__(self, depth: Callable[[], int], limit: int | None) -> None:
        self._depth = depth
        self.limit = limit
        self.last_depth = 0
        self.peak_depth = 0
        self._open = threading.Event()
        self._open.set()

    def watch(self, stop: threading.Event) -> None:
        while self.limit is not None and not stop.is_set():
            try:
                self.last_depth = self._depth()
            except Exception:  # an unanswered poll (the runtime busy or gone): keep the gate as it is
                stop.wait(POLL_SECONDS)
                continue
            self.peak_depth = max(self.peak_depth, self.last_depth)
            if self.last_depth < self.limit:
                self._open.set()
            else:
                self._open.clear()
            stop.wait(POLL_SECONDS)

    def wait(self, deadline: float) -> bool:
        """True once posting may go on; False at `deadline` (time.monotonic)."""
        return self._open.wait(max(0.0, deadline - time.monotonic()))


def post_all(
    url: str,
    secret: str,
    deliveries: Sequence[Delivery],
    *,
    posters: int,
    deadline: float,
    gate: BacklogGate | None = None,
    alive: Callable[[], bool] = lambda: True,
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> list[Post]:
    """POST every delivery from `posters` threads, in order as they take them; none after `deadline`
    (time.monotonic), nor once a post went unanswered and `alive()` says the runtime is gone.
    Returns the posts made, in no particular order."""
    posts: list[Post] = []
    lock = threading.Lock()
    taken = 0
    next_report = time.monotonic() + progress_every

    def poster() -> None:
        nonlocal taken, next_report
        while time.monotonic() < deadline:
            if gate is not None and not gate.wait(deadline):
                return
            with lock:
                if taken >= len(deliveries):
                    return
                delivery = deliveries[taken]
                taken += 1
            post = post_signed(url, secret, delivery)
            if post.status == 0 and not alive():
                with lock:
                    posts.append(post)
                return
            with lock:
                posts.append(post)
                if progress is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + progress_every
                    queued = f", queue {gate.last_depth}" if gate is not None and gate.limit else ""
                    progress(f"posted {len(posts)}/{len(deliveries)}{queued}")

    threads = [threading.Thread(target=poster, name=f"poster-{n}", daemon=True) for n in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A poster finishes its last request within POST_TIMEOUT_SECONDS of the deadline.
        thread.join(max(0.0, deadline - time.monotonic()) + POST_TIMEOUT_SECONDS + 1)
    with lock:
        return list(posts)


def queue_depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def wait_drained(
    sqs: Any,
    queue_url: str,
    *,
    deadline: float,
    alive: Callable[[], bool],
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> float | None:
    """The wall time when the queue was first seen empty, or None at `deadline` (time.monotonic)."""
    next_report = time.monotonic() + progress_every
    while time.monotonic() < deadline:
        if not alive():
            raise LoadError("the runtime stopped while the queue was draining")
        depth = queue_depth(sqs, queue_url)
        if depth == 0:
            return time.time()
        if progress is not None and time.monotonic() >= next_report:
            next_report = time.monotonic() + progress_every
            progress(f"queue: {depth} message(s) left")
        time.sleep(POLL_SECONDS)
    return None
