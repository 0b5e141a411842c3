"""Storage export: throughput and peak Python memory as the number of calls grows.

Places N completed orders on the simulator (a missed dial, then a person; about ten
transcript turns and a structured output each), then runs
``RevoxCallsToStorageOperator.execute`` against it over loopback HTTP to a local
directory, in JSON Lines and in Parquet, with ``max_concurrency=8``. Peak memory is
the tracemalloc peak of the Python heap during the export (Arrow buffers are not
counted; the in-process simulator is warmed first so its caches do not count); the
claim under test is that it does not grow with N.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_HOME = Path(tempfile.mkdtemp(prefix="revox-bench-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"

from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator  # noqa: E402
from airflow_provider_revox.simulator.profile import AttemptDraw  # noqa: E402
from airflow_provider_revox.simulator.testing import running_simulator  # noqa: E402
from airflow_provider_revox.simulator.timeline import OrderScript  # noqa: E402
from bench.results import merge_results  # noqa: E402

SIZES = (50, 400)
FORMATS = ("jsonl", "parquet")
OUTPUT = {"confirmed": True, "contact_name": "Ann", "interest_level": "high", "party_size": 2}


def place_orders(sim: Any, count: int) -> list[str]:
    script = OrderScript(
        attempts=(AttemptDraw(kind="no_answer"), AttemptDraw(kind="human", talk_seconds=60)),
        structured_output=OUTPUT,
        outcome="interested",
    )
    ids = [
        str(sim.place_call(phone_number="+33612345678", assistant_id="asst_bench", script=script)["id"])
        for _ in range(count)
    ]
    end = max(sim.engine.terminal_at(c) for c in ids)
    sim.advance((end - sim.clock.now()).total_seconds() + 1)
    return ids


def export(ids: list[str], file_format: str, destination: Path) -> dict[str, float]:
    """Export twice: once timed, once under tracemalloc (which slows Python down)."""
    operator = RevoxCallsToStorageOperator(
        task_id="bench", call_ids=ids, destination=str(destination), file_format=file_format
    )
    started = time.perf_counter()
    written = operator.execute({})  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert len(written) == len(ids) + 2
    tracemalloc.start()
    operator.execute({})  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": round(elapsed, 3),
        "calls_per_second": round(len(ids) / elapsed, 1),
        "peak_python_heap_mib": round(peak / 2**20, 2),
    }


def main() -> None:
    figures: dict[str, Any] = {"max_concurrency": 8, "sizes": list(SIZES)}
    with running_simulator(seed=11) as sim, tempfile.TemporaryDirectory() as tmp:
        os.environ["AIRFLOW_CONN_REVOX_DEFAULT"] = json.dumps(
            {"conn_type": "revox", "host": sim.base_url, "password": sim.api_key}
        )
        ids = place_orders(sim, max(SIZES))
        # The simulator shares this process and caches each call on its first GET: warm it
        # with every call so its own memory does not count against the export.
        export(ids, "jsonl", Path(tmp) / "warmup")
        export(ids[:10], "parquet", Path(tmp) / "warmup")  # imports pyarrow
        for file_format in FORMATS:
            for size in SIZES:
                result = export(ids[:size], file_format, Path(tmp) / f"{file_format}-{size}")
                figures[f"{file_format}_{size}"] = result
                print(f"{file_format:8} {size:5} calls: {result}", flush=True)
    for file_format in FORMATS:
        small, large = (figures[f"{file_format}_{n}"]["peak_python_heap_mib"] for n in SIZES)
        figures[f"{file_format}_peak_growth_ratio"] = round(large / small, 2)
    merge_results("storage_export", figures)


if __name__ == "__main__":
    main()
