"""Load on the local runtime: many customers' signed events, shuffled and duplicated, posted at once.

Used by tests/e2e/test_load.py (a reduced size, in `make test`) and bench/load.py (`make bench`, the
full size). The pieces, one module each:

* `workload.build_workload`: one history per distinct customer (a story of events.scenarios, or one
  subscription's snapshots from events.stripe.objects), a share of the events delivered twice,
  every delivery shuffled across and within customers;
* `runtime_process.RuntimeProcess`: `python -m local_runtime` as a subprocess on spare loopback ports,
  LOG_LEVEL=DEBUG so that the functions' JSON log lines (with millisecond timestamps) are in its output;
* `posting` and `run.run_load`: a few poster threads sign each body with the runtime's secret and POST
  it, held back while the event queue holds `max_backlog` messages, then the queue is watched until it
  is drained; everything is bounded by one deadline;
* `final_state.in_order_state` / `differences`: the final table against the same histories applied
  one customer at a time, in order, by `domain.sync.EventApplier` on a store the caller gives
  (harness.memory_store.MemoryStore).

Latency. Stale and duplicate deliveries write nothing, so "the entitlements item reflects the event"
cannot be observed for them. An event counts as processed when the worker logs its outcome (applied,
stale, duplicate, ignored): for an applied event that line follows the committed transaction, so it is
when the item reflects it. End-to-end latency is, per distinct event, the first POST to the first
outcome. Posting as fast as the worker drains, most of it is time spent queued behind the backlog
(about max_backlog / the worker's rate), which is why the worker's throughput is reported beside it.

Scenarios left out: disputes name no customer and are retried until their purchase arrives, which a
backlog of thousands can delay past maxReceiveCount (they would be parked, by design); a guest
Checkout has no customer whose state could be compared.
"""

from harness.load.final_state import TableState, differences, in_order_state, runtime_rules, table_state
from harness.load.posting import BacklogGate, Post, post_all, post_signed, queue_depth, wait_drained
from harness.load.run import (
    PROCESSED_OUTCOMES,
    LoadResult,
    WorkerOutcome,
    ledger_problems,
    lost_events,
    percentile,
    run_load,
    runtime_gone,
    worker_outcomes,
)
from harness.load.runtime_process import LoadError, RuntimeProcess, free_port
from harness.load.workload import (
    LOAD_SCENARIOS,
    CustomerHistory,
    Delivery,
    Workload,
    build_workload,
    customer_history,
    load_customer_id,
    scenario_history,
    subscription_history,
)

__all__ = [
    "LOAD_SCENARIOS",
    "PROCESSED_OUTCOMES",
    "BacklogGate",
    "CustomerHistory",
    "Delivery",
    "LoadError",
    "LoadResult",
    "Post",
    "RuntimeProcess",
    "TableState",
    "WorkerOutcome",
    "Workload",
    "build_workload",
    "customer_history",
    "differences",
    "free_port",
    "in_order_state",
    "ledger_problems",
    "load_customer_id",
    "lost_events",
    "percentile",
    "post_all",
    "post_signed",
    "queue_depth",
    "run_load",
    "runtime_gone",
    "runtime_rules",
    "scenario_history",
    "subscription_history",
    "table_state",
    "wait_drained",
    "worker_outcomes",
]
