"""How many ``GET /call/{id}`` per second the simulator serves on loopback.

The server runs as ``python -m airflow_provider_revox.testing`` in its own process; the load comes
from separate client processes, each on one keep-alive connection, each sending
a fixed number of requests over the seeded population, so the run stops by itself.
The figure is merged into bench/results.json under ``simulator``, with its target (at least
2,000 per second) evaluated from it. The bench fails when a request errs or the server did not
count every request the clients sent (the load did not happen as claimed).
"""

from __future__ import annotations

import http.client
import multiprocessing
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.testing import SimulatorProcess
from bench.results import evaluate, merge_results

API_KEY = "bench-simulator-key"
# Orders the server holds (each client cycles through them, so most answers come from the JSON
# cache), and one keep-alive connection per client process: the machine has two cores.
CALLS, CLIENTS = 200, 2
# Requests each client times, after a warm-up that keeps connection set-up and first renders out.
REQUESTS_PER_CLIENT, WARMUP = 10_000, 500
SEED = 0
TARGET_GETS_PER_S = 2000


def _client(
    port: int,
    ids: list[str],
    count: int,
    start: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for i in range(WARMUP):
        connection.request("GET", f"/api/call/{ids[i % len(ids)]}", headers=headers)
        connection.getresponse().read()
    start.wait()
    began = time.perf_counter()
    errors = 0
    for i in range(count):
        connection.request("GET", f"/api/call/{ids[i % len(ids)]}", headers=headers)
        response = connection.getresponse()
        response.read()
        errors += response.status != 200
    out.put((began, time.perf_counter(), errors))
    connection.close()


def main() -> int:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with SimulatorProcess(api_key=API_KEY, speed=60, calls=CALLS, seed=SEED) as sim:
        port = sim.port
        ids = sim.get("/_simulator/calls")["call_ids"]
        start = multiprocessing.Event()
        results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        workers = [
            multiprocessing.Process(target=_client, args=(port, ids, REQUESTS_PER_CLIENT, start, results))
            for _ in range(CLIENTS)
        ]
        for worker in workers:
            worker.start()
        time.sleep(1.0)  # let every client finish its warm-up before the timed run
        start.set()
        spans = [results.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        stats = sim.get("/_simulator/stats")

    total = CLIENTS * REQUESTS_PER_CLIENT
    elapsed = max(end for _, end, _ in spans) - min(began for began, _, _ in spans)
    errors = sum(e for _, _, e in spans)
    rate = total / elapsed
    served = stats["by_endpoint"].get("GET /call/{id}", 0)
    print(
        f"simulator: {rate:,.0f} GET /call/{{id}} per second "
        f"({total} requests, {CLIENTS} keep-alive clients in separate processes, {elapsed:.2f} s, "
        f"{errors} errors, {served} counted by the server)"
    )
    figures: dict[str, object] = {
        "title": (
            f"GET /call/{{id}} served by the simulator (Starlette on uvicorn) to {CLIENTS} keep-alive "
            f"clients in separate processes, {total:,} requests over {CALLS} orders"
        ),
        "started_at": started_at,
        "seed": SEED,
        "gets_per_s": round(rate),
        "requests": total,
        "requests_counted_by_server": served,
        "clients": CLIENTS,
        "calls": CALLS,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "targets": {"gets_per_s": f">= {TARGET_GETS_PER_S:,}"},
    }
    figures["targets_met"] = evaluate(figures, figures["targets"])  # type: ignore[arg-type]
    merge_results("simulator", figures)
    return 0 if errors == 0 and served == total + CLIENTS * WARMUP else 1


if __name__ == "__main__":
    sys.exit(main())
