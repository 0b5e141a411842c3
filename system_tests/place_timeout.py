"""A deferred ``RevoxPlaceCallOperator`` that gives up: its order is cancelled, not left to ring.

The wait is handed to a real triggerer with ``timeout=20`` on an order dialled days later. Either
the trigger's deadline or Airflow's own deferral timeout (the scheduler's) ends it, whichever
comes first; both must cancel the order this task placed.
"""

from __future__ import annotations

from typing import Any

from system_tests.context import Context, expect
from system_tests.stack import Stack

RUN = "place_timeout"
PHONE = "+33612340015"  # no scenario order goes to this number
TIMEOUT_SECONDS = 20


def place_timeout_conf(stack: Stack) -> dict[str, Any]:
    """The run's conf: the number, and a dial time days ahead on the simulator's clock."""
    return {"phone": PHONE, "scheduled_at": stack.sim_time(600.0).isoformat()}


def check_place_timed_out(ctx: Context) -> str:
    """The task failed on its timeout, and its one order is cancelled, the log saying why."""
    run = ctx.runs[RUN]
    expect(run.state == "failed", f"run {RUN} ended {run.state}, expected failed")
    ti = ctx.ti(RUN, "place")
    expect(ti["state"] == "failed", f"task state {ti['state']}")
    expect(ctx.watch.deferred_in_triggerer(ti), "the placement's wait never deferred to a triggerer")
    orders = ctx.simulator_search(to_phone_number=PHONE)
    expect(len(orders) == 1, f"{len(orders)} orders to {PHONE}: {[o['id'] for o in orders]}")
    order = orders[0]
    expect(order["status"] == "cancelled", f"order {order['id']} is {order['status']!r}, left to ring")
    log = ctx.api.log(ti)
    said = f"Call {order['id']} cancelled because"
    expect(said in log, f"the log does not say the order was cancelled:\n{log[-1500:]}")
    return f"failed with timeout={TIMEOUT_SECONDS}; its one order {order['id']} cancelled, the log says why"
