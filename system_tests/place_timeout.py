"""A deferred ``RevoxPlaceCallOperator`` that gives up: its order is cancelled, not left to ring.

The wait is handed to a real triggerer with ``timeout=20`` on an order dialled days later. Either
the trigger's deadline or Airflow's own deferral timeout (the scheduler's) ends it, whichever
comes first; both must cancel the order this task placed.
"""

from __future__ import annotations

from typing import Any

from system_tests.checks import _sensor_failed
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
    orders = ctx.simulator_search(to_phone_number=PHONE)
    expect(len(orders) == 1, f"{len(orders)} orders to {PHONE}: {[o['id'] for o in orders]}")
    order = orders[0]
    expect(order["status"] == "cancelled", f"order {order['id']} is {order['status']!r}, left to ring")
    _sensor_failed(ctx, RUN, (f"call {order['id']} cancelled because",), where="place")
    return f"failed with timeout={TIMEOUT_SECONDS}; its one order {order['id']} cancelled, the log says why"
