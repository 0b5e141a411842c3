"""Campaign export at scale: 10,000 calls to Parquet and JSON Lines over a 50 ms API.

The simulator runs as its own process with every request delayed by 50 ms
(``--faults slow=1.0:0.05``), serving 10,000 scripted orders that are all finished
(a missed dial, then a person; a transcript and a structured output each). Every export
is ``RevoxCallsToStorageOperator.execute`` in a fresh Python process writing to a local
``file://`` directory, so the figures of one run never leak into another:

* ``speedup_concurrency16_vs_1``: calls/s with ``max_concurrency=16`` over 10,000 calls,
  divided by calls/s with ``max_concurrency=1`` over the first 300 (target >= 12);
* ``rss_ratio_10k_vs_1k``: peak RSS of the process exporting 10,000 calls over that of one
  exporting 1,000 (target <= 1.3: rows stream to disk). Read from ``VmHWM``, the process's
  own high-water mark: ``ru_maxrss`` carries the parent's peak across fork and exec.

Those two measure the one-GET-per-call path (``call_ids`` read one GET each). The search path,
in the same run against the same 50 ms API, JSON Lines:

* ``requests_per_call``: API requests per exported call of an export by search of 10,000 calls
  (``search={"assistant_ids": [...]}``, pages of 100; target <= 0.02); ``requests_per_call_ids``
  the same for ``call_ids`` read in searches of 100 ids;
* ``speedup_search_vs_get``: calls/s of the export by search over calls/s of the GET path at
  ``max_concurrency=16`` (target >= 2);
* ``profile_search``: where the search path's time goes per call (cProfile over 2,000 calls:
  HTTP and decoding, validation into models, redaction, row building and writing).

Each export is checked: one structured row per call, all ``completed``, and the transcript
row count the first export found. Figures go to bench/results.json under ``export``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorProcess, write_scenario
from bench.results import merge_results

API_KEY = "bench-export-key"
CALLS = int(os.environ.get("REVOX_BENCH_EXPORT_CALLS", "10000"))
SMALL = 1_000
SERIAL_SAMPLE = 300
CONCURRENCY = 16
LATENCY = "slow=1.0:0.05"
SPEED = 100_000.0
FORMATS = ("parquet", "jsonl")
SPEEDUP_TARGET = 12.0
RSS_RATIO_TARGET = 1.3
REQUESTS_PER_CALL_TARGET = 0.02
SEARCH_SPEEDUP_TARGET = 2.0
PROFILE_CALLS = min(2_000, CALLS)
ASSISTANT = {
    "id": "asst_bench_export",
    "structured_output_config": [
        {"name": "confirmed", "type": "boolean", "required": True},
        {"name": "contact_name", "type": "string"},
        {"name": "interest_level", "type": "enum", "enum_options": ["high", "medium", "low"]},
        {"name": "party_size", "type": "number"},
    ],
}
OUTPUT = {"confirmed": True, "contact_name": "Ann", "interest_level": "high", "party_size": 2}


def call_ids(count: int) -> list[str]:
    """The ids of the scripted orders, in export order."""
    return [f"bench-export-{i:05d}" for i in range(count)]


def scenario_calls(count: int) -> list[dict[str, Any]]:
    """Orders that finish within minutes of simulated time: no answer, then a person."""
    return [
        {
            "id": call_id,
            "phone_number": "+33612345678",
            "assistant": ASSISTANT,
            "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
            "attempts": [{"dial_error": "no_answer"}, {"result": "human", "duration": 90}],
            "post_processing_seconds": 30,
            "outcome": "interested",
            "structured_output": OUTPUT,
        }
        for call_id in call_ids(count)
    ]


# -- the measured process ---------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Export ``spec["count"]`` calls in this (fresh) process; return time, peak RSS and row counts."""
    home = Path(spec["home"])
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"

    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    destination = Path(spec["destination"])
    path = spec.get("path", "get")
    ids = call_ids(spec["count"])
    if path == "search":
        operator = RevoxCallsToStorageOperator(
            task_id="bench_export",
            search={"assistant_ids": [ASSISTANT["id"]]},
            destination=destination.as_uri(),
            file_format=spec["format"],
        )
    elif path == "ids":
        operator = RevoxCallsToStorageOperator(
            task_id="bench_export", call_ids=ids, destination=destination.as_uri(), file_format=spec["format"]
        )
    started = time.perf_counter()
    if path == "get":  # one GET per call, in a pool: the path before the search
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_revox._internal.export.run import ExportOptions, export_calls
        from airflow_provider_revox.hooks.revox import RevoxHook

        options = ExportOptions(
            file_format=spec["format"], max_concurrency=spec["concurrency"], ids_by_search=False
        )
        with RevoxHook() as hook:
            manifest = export_calls(hook, ids, ObjectStoragePath(destination.as_uri()), options)
        written = {"files": len(manifest["files"])}
    elif spec.get("profile"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        written = profiler.runcall(operator.execute, {})
        stats = pstats.Stats(profiler)
        seconds = time.perf_counter() - started
        return {"profile": profile_breakdown(stats, spec["count"]), "seconds": seconds}
    else:
        written = operator.execute({})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    peak_rss_kib = own_peak_rss_kib()
    structured, transcript_rows = read_back(destination, spec["format"])
    return {
        "seconds": seconds,
        "peak_rss_kib": peak_rss_kib,
        "files": written["files"],
        "structured_rows": len(structured),
        "completed": sum(1 for status in structured if status == "completed"),
        "transcript_rows": transcript_rows,
    }


#: Where the search path's time goes: (label, function names whose cumulative time it is).
PROFILE_PARTS = (
    ("http_requests", ("_request",)),
    ("json_decoding", ("decode_json",)),
    ("validation_into_models", ("from_response",)),
    ("redaction", ("redact", "redact_text")),
    ("call_documents", ("call_document",)),
    ("transcript_rows", ("transcript_rows",)),
    ("structured_output_rows", ("structured_output_record",)),
    ("writing_rows", ("write",)),
)


def profile_breakdown(stats: Any, count: int) -> dict[str, float]:
    """Microseconds per call spent under each part of :data:`PROFILE_PARTS` (cumulative, so the
    parts overlap: redaction happens inside row building)."""
    found: dict[str, float] = {}
    for label, names in PROFILE_PARTS:
        total = 0.0
        for (filename, _, name), row in stats.stats.items():
            if name in names and "airflow_provider_revox" in filename:
                total += row[3]
        found[label] = round(total / count * 1e6, 1)
    found["total"] = round(stats.total_tt / count * 1e6, 1)
    return found


def own_peak_rss_kib() -> int:
    """Peak RSS of this process, in KiB.

    ``ru_maxrss`` keeps the parent's peak across fork and exec on Linux, so a worker started
    by a big driver would report the driver's figure: ``VmHWM`` is this process's own.
    """
    import resource

    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def read_back(destination: Path, file_format: str) -> tuple[list[str], int]:
    """The structured rows' statuses and the number of transcript rows."""
    if file_format == "parquet":
        import pyarrow.parquet as pq

        statuses = pq.read_table(destination / "structured_output.parquet", columns=["status"])
        rows = pq.ParquetFile(destination / "transcripts.parquet").metadata.num_rows
        return [str(s) for s in statuses.column("status").to_pylist()], int(rows)
    with (destination / "structured_output.jsonl").open(encoding="utf-8") as file:
        statuses_list = [json.loads(line)["status"] for line in file]
    with (destination / "transcripts.jsonl").open(encoding="utf-8") as file:
        rows = sum(1 for _ in file)
    return statuses_list, rows


# -- the driver ---------------------------------------------------------------------------------


def run_worker(sim: SimulatorProcess, work: Path, **spec: Any) -> dict[str, Any]:
    """Run one export in a fresh interpreter and return its figures."""
    name = f"{spec['format']}-{spec['count']}-c{spec['concurrency']}-{spec.get('path', 'get')}"
    name += "-profile" if spec.get("profile") else ""
    spec = {**spec, "home": str(work / f"home-{name}"), "destination": str(work / name)}
    Path(spec["home"]).mkdir()
    env = {**os.environ, **sim.connection_env()}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"export {name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if spec.get("profile"):
        return result
    if result["structured_rows"] != spec["count"] or result["completed"] != spec["count"]:
        raise RuntimeError(f"export {name}: {result['completed']}/{spec['count']} completed rows")
    if result["files"] != spec["count"] + 2:
        raise RuntimeError(f"export {name}: {result['files']} files for {spec['count']} calls")
    return result


def wait_until_finished(sim: SimulatorProcess, ids: list[str]) -> None:
    """Read every order once (warming the simulator's caches); wait until all are terminal."""
    deadline = time.monotonic() + 120
    pending = list(ids)
    with ThreadPoolExecutor(max_workers=64) as pool:
        while pending:
            done = list(pool.map(lambda i: (sim.get_call(i) or {}).get("status") == "completed", pending))
            pending = [i for i, ok in zip(pending, done, strict=True) if not ok]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} orders still not completed, e.g. {pending[:3]}")


def api_requests(sim: SimulatorProcess) -> int:
    """Requests the simulator served so far (its own routes aside)."""
    stats = sim.get("/_simulator/stats")
    return int(sum(count for name, count in stats["by_endpoint"].items() if "_simulator" not in name))


def search_figures(sim: SimulatorProcess, work: Path, get_calls_per_s: float) -> dict[str, Any]:
    """The search path against the same API: requests per call, speed against the GET path, profile."""
    before = api_requests(sim)
    by_search = run_worker(sim, work, format="jsonl", count=CALLS, concurrency=CONCURRENCY, path="search")
    search_requests = api_requests(sim) - before
    before = api_requests(sim)
    by_ids = run_worker(sim, work, format="jsonl", count=CALLS, concurrency=CONCURRENCY, path="ids")
    ids_requests = api_requests(sim) - before
    profiled = run_worker(
        sim, work, format="jsonl", count=PROFILE_CALLS, concurrency=CONCURRENCY, path="search", profile=True
    )
    search_rate = CALLS / by_search["seconds"]
    found = {
        "requests_per_call": round(search_requests / CALLS, 4),
        "requests_per_call_ids": round(ids_requests / CALLS, 4),
        "search_calls_per_s": round(search_rate, 1),
        "ids_by_search_calls_per_s": round(CALLS / by_ids["seconds"], 1),
        "get_calls_per_s_concurrency16": get_calls_per_s,
        "speedup_search_vs_get": round(search_rate / get_calls_per_s, 2),
        "profile_search_us_per_call": profiled["profile"],
        "profile_note": (
            "cProfile of the main thread, microseconds per call with the profiler's overhead; "
            "parts overlap (redaction runs inside call_documents and transcript_rows); HTTP, "
            "JSON decoding and validation run in the prefetch thread, so they read 0 here"
        ),
    }
    print(f"search: {found}", flush=True)
    return found


def main() -> int:
    figures: dict[str, Any] = {
        "calls": CALLS,
        "small_calls": SMALL,
        "serial_sample_calls": SERIAL_SAMPLE,
        "max_concurrency": CONCURRENCY,
        "api_latency_ms": 50,
    }
    with tempfile.TemporaryDirectory(prefix="revox-bench-export-") as tmp:
        work = Path(tmp)
        scenario = write_scenario(work / "scenario.json", scenario_calls(CALLS))
        with SimulatorProcess(api_key=API_KEY, speed=SPEED, scenario=scenario, faults=LATENCY) as sim:
            wait_until_finished(sim, call_ids(CALLS))
            for file_format in FORMATS:
                large = run_worker(sim, work, format=file_format, count=CALLS, concurrency=CONCURRENCY)
                small = run_worker(sim, work, format=file_format, count=SMALL, concurrency=CONCURRENCY)
                serial = run_worker(sim, work, format=file_format, count=SERIAL_SAMPLE, concurrency=1)
                per_call_rows = large["transcript_rows"] / CALLS
                for run in (small, serial):
                    if run["transcript_rows"] != per_call_rows * (SMALL if run is small else SERIAL_SAMPLE):
                        raise RuntimeError(f"{file_format}: transcript rows differ between runs")
                fast = CALLS / large["seconds"]
                slow = SERIAL_SAMPLE / serial["seconds"]
                figures[file_format] = {
                    "calls_per_s_concurrency16": round(fast, 1),
                    "calls_per_s_concurrency1": round(slow, 1),
                    "speedup_concurrency16_vs_1": round(fast / slow, 2),
                    "peak_rss_mib_10k": round(large["peak_rss_kib"] / 1024, 1),
                    "peak_rss_mib_1k": round(small["peak_rss_kib"] / 1024, 1),
                    "rss_ratio_10k_vs_1k": round(large["peak_rss_kib"] / small["peak_rss_kib"], 3),
                    "transcript_rows_10k": large["transcript_rows"],
                    "seconds_10k": round(large["seconds"], 2),
                }
                print(f"{file_format}: {figures[file_format]}", flush=True)
            figures.update(search_figures(sim, work, figures["jsonl"]["calls_per_s_concurrency16"]))
    figures["speedup_concurrency16_vs_1"] = min(figures[f]["speedup_concurrency16_vs_1"] for f in FORMATS)
    figures["rss_ratio_10k_vs_1k"] = max(figures[f]["rss_ratio_10k_vs_1k"] for f in FORMATS)
    figures["targets"] = {
        "speedup_concurrency16_vs_1": f">= {SPEEDUP_TARGET:g}",
        "rss_ratio_10k_vs_1k": f"<= {RSS_RATIO_TARGET:g}",
        "requests_per_call": f"<= {REQUESTS_PER_CALL_TARGET:g}",
        "speedup_search_vs_get": f">= {SEARCH_SPEEDUP_TARGET:g}",
    }
    met = (
        figures["speedup_concurrency16_vs_1"] >= SPEEDUP_TARGET
        and figures["rss_ratio_10k_vs_1k"] <= RSS_RATIO_TARGET
        and figures["requests_per_call"] <= REQUESTS_PER_CALL_TARGET
        and figures["speedup_search_vs_get"] >= SEARCH_SPEEDUP_TARGET
    )
    figures["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    figures["targets_met"] = met
    merge_results("export", figures)
    print(
        f"export: speedup x{figures['speedup_concurrency16_vs_1']} (target >= {SPEEDUP_TARGET:g}), "
        f"RSS 10k/1k {figures['rss_ratio_10k_vs_1k']} (target <= {RSS_RATIO_TARGET:g}), "
        f"{figures['requests_per_call']} requests per call (target <= {REQUESTS_PER_CALL_TARGET:g}), "
        f"search x{figures['speedup_search_vs_get']} vs GET (target >= {SEARCH_SPEEDUP_TARGET:g})"
    )
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
