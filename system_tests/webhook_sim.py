"""``python -m system_tests.webhook_sim``: the test kit's simulator, its webhook deliveries on record.

The command line of ``python -m airflow_provider_revox.testing`` (its parser, its build and its
serve loop), with the webhook sender always on (``--webhook-faults``; no default URL, so only the
orders of an assistant given a ``webhook_url`` by ``PATCH /assistants/{id}`` are announced), plus
two things that command line cannot do:

* ``--delivery-log FILE``: one JSON line per delivery attempt, ``{"at", "call_id", "status"}``
  (wall-clock seconds; status 0 when no answer came, with ``error``, the exception's name:
  ``ConnectError`` when refused, ``ReadTimeout``...). Never the URL: its path holds the webhook
  token.
* ``--orders-dir DIR``: a scenario file (``*.json``) written into DIR is placed at once, then
  renamed ``*.placed``: orders with scripted ends, placed while the test runs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_revox._simulator import cli
from airflow_provider_revox._simulator.scenario import ScenarioError, apply_scenario, load_scenario
from airflow_provider_revox._simulator.server import SimulatorServer
from airflow_provider_revox._simulator.webhooks import WebhookSender

#: The sender's faults: some webhooks twice, out of order by up to 0.5 s of real time (at the
#: system test's speed); none dropped, so a webhook lost is one the endpoint could not take.
FAULTS = "duplicate=0.2,delay=300,retries=3,retry_wait=5"


def webhook_sim_args(home: Path) -> list[str]:
    """This module's own options for a deployment in ``home`` (the files the test reads)."""
    return [
        "--delivery-log",
        str(delivery_log(home)),
        "--orders-dir",
        str(orders_dir(home)),
        "--webhook-faults",
        FAULTS,
    ]


def delivery_log(home: Path) -> Path:
    """Where the simulator of a deployment in ``home`` records its webhook deliveries."""
    return home / "webhook-deliveries.jsonl"


def orders_dir(home: Path) -> Path:
    """Where the test drops the scenario files the simulator of ``home`` places while running."""
    return home / "sim-orders"


def read_deliveries(home: Path) -> list[dict[str, Any]]:
    """Every delivery attempt recorded so far, in order."""
    path = delivery_log(home)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    # The last line may be half written: only whole lines count.
    return [json.loads(line) for line in lines if line.endswith("}")]


class DeliveryLog:
    """Posts each delivery and appends its outcome to the log (the sender's ``post``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A sender waits a while for an answer: a busy api-server is slow, not down.
        self._client = httpx.Client(timeout=30.0)
        self._lock = threading.Lock()

    def post(self, url: str, body: dict[str, Any]) -> int:
        """Send one webhook; return its HTTP status, 0 when no answer came."""
        entry: dict[str, Any] = {"call_id": (body.get("call") or {}).get("id"), "status": 0}
        try:
            entry["status"] = self._client.post(url, json=body).status_code
        except httpx.HTTPError as error:
            entry["error"] = type(error).__name__
        line = json.dumps({"at": round(time.time(), 3), **entry})
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        return int(entry["status"])


def place_dropped_orders(server: SimulatorServer, folder: Path, stop: threading.Event) -> None:
    """Place every scenario file dropped into ``folder`` until ``stop`` is set."""
    folder.mkdir(parents=True, exist_ok=True)
    while not stop.wait(0.1):
        for path in sorted(folder.glob("*.json")):
            try:
                placed = apply_scenario(load_scenario(path), server.engine, server.faults)
                print(f"placed {len(placed)} orders from {path.name}", flush=True)
            except ScenarioError as error:
                print(f"cannot place {path.name}: {error}", flush=True)
            path.rename(path.with_suffix(".placed"))


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit status."""
    parser = cli.build_parser()
    parser.prog = "python -m system_tests.webhook_sim"
    parser.add_argument("--delivery-log", required=True, type=Path)
    parser.add_argument("--orders-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        server, generated = cli._build(args, os.environ)
        log = DeliveryLog(args.delivery_log)
        sender = WebhookSender(
            server.engine, args.webhook_faults, url=args.webhook_url, seed=args.seed, post=log.post
        )
    except (ValueError, ScenarioError) as error:
        parser.error(str(error))
    stop = threading.Event()
    placing = threading.Thread(
        target=place_dropped_orders, args=(server, args.orders_dir, stop), name="orders", daemon=True
    )
    placing.start()
    try:
        cli._serve(server, generated, sender)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
