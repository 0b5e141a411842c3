"""Campaign export at scale: 10,000 calls to Parquet and JSON Lines over a 50 ms API.

The simulator runs as its own process with every request delayed by 50 ms
(``--faults slow=1.0:0.05``), serving 10,000 scripted orders that are all finished
(a missed dial, then a person; a transcript and a structured output each; credentials planted
in each order's metadata and assistant). Every export is ``RevoxCallsToStorageOperator.execute``
in a fresh Python process writing to a local ``file://`` directory, so the figures of one run
never leak into another.

The default path, what users run (a ``search`` read by pages, or ``call_ids`` read in searches
of 100 ids), to Parquet:

* ``cpu_ratio_vs_baseline``: CPU per exported call of a plain export written in
  bench/export_baseline.py (httpx, msgspec, one redaction pass per call, dict/list rows,
  pyarrow) over the provider's, both reading the same search and writing the same files
  (target >= 0.5). The bench fails unless both outputs are equal file for file and hold none
  of the planted credentials nor the API key;
* ``memory_growth_mb_per_10k_calls``: the slope of peak RSS above the RSS the process had after
  its imports, between exports of 1,000 and of 10,000 calls (MiB per 10,000 calls; the median
  of three exports per size; the larger of the search and the ids path; target <= 10);
* ``speedup_default_vs_serial_get``: calls/s of the export by search over calls/s of one GET
  per call at ``max_concurrency=1`` (target >= 12);
* ``requests_per_call``: API requests per exported call of an export by search of 10,000
  calls (target <= 0.02); ``requests_per_call_ids`` the same for ``call_ids``;
* ``speedup_search_vs_get``: calls/s of the export by search over one GET per call at
  ``max_concurrency=16`` (target >= 2);
* ``profile_search``: where the search path's time goes per call (cProfile over 1,000 calls).

The one-GET-per-call path (``ids_by_search=False``) is kept as a baseline only, per format:
calls/s at ``max_concurrency`` 16 and 1 over 10,000 and 300 calls, and peak RSS at 10,000 and
1,000 calls. Figures go to bench/results.json under ``export``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorProcess, write_scenario
from bench.results import merge_results

API_KEY = "bench-export-key"
CALLS = int(os.environ.get("REVOX_BENCH_EXPORT_CALLS", "10000"))
SMALL = 1_000
#: Exports per size and path whose median peak the memory slope is taken from.
MEMORY_RUNS = 3
SERIAL_SAMPLE = 300
CONCURRENCY = 16
LATENCY = "slow=1.0:0.05"
SPEED = 100_000.0
FORMATS = ("parquet", "jsonl")
SEED = 20261207
SPEEDUP_TARGET = 12.0
CPU_RATIO_TARGET = 0.5
GROWTH_TARGET_MB = 10.0
REQUESTS_PER_CALL_TARGET = 0.02
SEARCH_SPEEDUP_TARGET = 2.0
PROFILE_CALLS = SMALL  # a search that matches exactly these calls
#: Credentials planted in every order: no output file may hold one.
PLANTED = {"password": "bench-planted-password-0001", "llm": "sk-bench-planted-llm-0002"}
ASSISTANT = {
    "id": "asst_bench_export",
    "llm_model": {"type": "custom", "api_key": PLANTED["llm"], "api_url": "https://llm.example/v1"},
    "structured_output_config": [
        {"name": "confirmed", "type": "boolean", "required": True},
        {"name": "contact_name", "type": "string"},
        {"name": "interest_level", "type": "enum", "enum_options": ["high", "medium", "low"]},
        {"name": "party_size", "type": "number"},
    ],
}
OUTPUT = {"confirmed": True, "contact_name": "Ann", "interest_level": "high", "party_size": 2}
#: The first SMALL orders use this assistant: a search of SMALL calls names it alone.
SMALL_ASSISTANT = {**ASSISTANT, "id": "asst_bench_export_small"}
SEARCH_ALL = {"assistant_ids": [ASSISTANT["id"], SMALL_ASSISTANT["id"]]}
SEARCH_SMALL = {"assistant_ids": [SMALL_ASSISTANT["id"]]}


def call_ids(count: int) -> list[str]:
    """The ids of the scripted orders, in export order."""
    return [f"bench-export-{i:05d}" for i in range(count)]


def scenario_calls(count: int) -> list[dict[str, Any]]:
    """Orders that finish within minutes of simulated time: no answer, then a person."""
    return [
        {
            "id": call_id,
            "phone_number": "+33612345678",
            "assistant": SMALL_ASSISTANT if index < SMALL else ASSISTANT,
            "metadata": {"crm": {"password": PLANTED["password"]}, "source": "bench"},
            "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
            "attempts": [{"dial_error": "no_answer"}, {"result": "human", "duration": 90}],
            "post_processing_seconds": 30,
            "outcome": "interested",
            "structured_output": OUTPUT,
        }
        for index, call_id in enumerate(call_ids(count))
    ]


# -- the measured process ---------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Export ``spec["count"]`` calls in this (fresh) process; return time, CPU, RSS and row counts."""
    home = Path(spec["home"])
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"

    import pyarrow.parquet  # noqa: F401  (imported by both exports: not part of the CPU measured)

    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    destination = Path(spec["destination"])
    path = spec.get("path", "get")
    ids = call_ids(spec["count"])
    search = SEARCH_SMALL if spec["count"] == SMALL else SEARCH_ALL
    if path == "search":
        operator = RevoxCallsToStorageOperator(
            task_id="bench_export",
            search=search,
            destination=destination.as_uri(),
            file_format=spec["format"],
        )
    elif path == "ids":
        operator = RevoxCallsToStorageOperator(
            task_id="bench_export", call_ids=ids, destination=destination.as_uri(), file_format=spec["format"]
        )
    imported_rss_kib = own_rss_kib()
    started, cpu_started = time.perf_counter(), time.process_time()
    if path == "baseline":
        from airflow_provider_revox._internal.export.search import SEARCH_PAGE_SIZE
        from bench import export_baseline

        count = export_baseline.export(spec["base_url"], API_KEY, search, SEARCH_PAGE_SIZE, destination)
        cpu = time.process_time() - cpu_started
        return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu, "calls": count}
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
    cpu = time.process_time() - cpu_started
    seconds = time.perf_counter() - started
    peak_rss_kib = own_peak_rss_kib()
    structured, transcript_rows = read_back(destination, spec["format"])
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "imported_rss_kib": imported_rss_kib,
        "peak_rss_kib": peak_rss_kib,
        "files": written["files"],
        "structured_rows": len(structured),
        "completed": sum(1 for status in structured if status == "completed"),
        "transcript_rows": transcript_rows,
    }


def own_rss_kib() -> int:
    """This process's resident memory now, in KiB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def published(destination: Path) -> Path:
    """Where an export's files are: its one load folder, or the destination itself."""
    loads = sorted(destination.glob("load=*"))
    if len(loads) > 1:
        raise RuntimeError(f"{destination}: {len(loads)} loads for one export")
    return loads[0] if loads else destination


def compare_with_baseline(ours: Path, baseline: Path) -> dict[str, int]:
    """Check the provider's files equal the baseline's and hold no credential; return counts."""
    import pyarrow.parquet as pq

    ours = published(ours)
    documents = sorted(p.name for p in (baseline / "calls").iterdir())
    if documents != sorted(p.name for p in (ours / "calls").iterdir()):
        raise RuntimeError("the provider and the baseline wrote different call documents")
    for name in documents:
        if (ours / "calls" / name).read_bytes() != (baseline / "calls" / name).read_bytes():
            raise RuntimeError(f"call document {name} differs from the baseline's")
    rows = {}
    for table in ("transcripts", "structured_output"):
        mine = pq.read_table(ours / f"{table}.parquet").to_pylist()
        theirs = pq.read_table(baseline / f"{table}.parquet").to_pylist()
        if mine != theirs:
            raise RuntimeError(f"{table}.parquet differs from the baseline's")
        rows[table] = len(mine)
    for folder in (ours, baseline):
        for file in folder.rglob("*"):
            data = file.read_bytes() if file.is_file() else b""
            for secret in (*PLANTED.values(), API_KEY):
                if secret.encode() in data:
                    raise RuntimeError(f"{file} holds a planted credential or the API key")
    planted_in_source = sum(1 for _ in documents)
    return {"documents": planted_in_source, **rows}


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
    destination = published(destination)
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
    spec = {
        **spec,
        "home": str(work / f"home-{name}"),
        "destination": str(work / name),
        "base_url": sim.base_url,
    }
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
    result["destination"] = spec["destination"]
    if spec.get("profile"):
        return result
    if spec.get("path") == "baseline":
        if result["calls"] != spec["count"]:
            raise RuntimeError(f"baseline: {result['calls']} calls for {spec['count']}")
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


def grown_kib(runs: list[dict[str, Any]]) -> float:
    """The median, over runs of one export, of its peak RSS above its after-import RSS (KiB).

    One run's peak moves by a few MiB from run to run (which thread's malloc arena grew when), as
    much as the growth measured between 1,000 and 10,000 calls: one pair of runs gave slopes of
    3.5 and 10.7 MiB per 10,000 calls for the same code. The median of three takes that out.
    """
    return float(statistics.median(run["peak_rss_kib"] - run["imported_rss_kib"] for run in runs))


def growth_slope_mb(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> float:
    """MiB of peak RSS above the after-import RSS gained per 10,000 calls, from 1,000 to 10,000."""
    return round((grown_kib(large) - grown_kib(small)) / (CALLS - SMALL) * 10_000 / 1024, 2)


def memory_runs(
    sim: SimulatorProcess, work: Path, count: int, path: str, done: int = 0
) -> list[dict[str, Any]]:
    """:data:`MEMORY_RUNS` exports of ``count`` calls by ``path`` to Parquet, ``done`` of them given."""
    for n in range(done, MEMORY_RUNS):
        (work / f"memory-{path}-{count}-{n}").mkdir()
    return [
        run_worker(
            sim,
            work / f"memory-{path}-{count}-{n}",
            format="parquet",
            count=count,
            concurrency=CONCURRENCY,
            path=path,
        )
        for n in range(done, MEMORY_RUNS)
    ]


def default_path_figures(sim: SimulatorProcess, work: Path) -> dict[str, Any]:
    """The default path to Parquet: CPU against the baseline, memory slope, throughput."""
    ours = run_worker(sim, work, format="parquet", count=CALLS, concurrency=CONCURRENCY, path="search")
    baseline = run_worker(sim, work, format="parquet", count=CALLS, concurrency=CONCURRENCY, path="baseline")
    checked = compare_with_baseline(Path(ours["destination"]), Path(baseline["destination"]))
    large = [ours, *memory_runs(sim, work, CALLS, "search", done=1)]
    small = memory_runs(sim, work, SMALL, "search")
    ids_large = memory_runs(sim, work, CALLS, "ids")
    ids_small = memory_runs(sim, work, SMALL, "ids")
    ours_cpu_ms = ours["cpu_seconds"] / CALLS * 1000
    baseline_cpu_ms = baseline["cpu_seconds"] / CALLS * 1000
    slopes = {"search": growth_slope_mb(small, large), "ids": growth_slope_mb(ids_small, ids_large)}
    found = {
        "cpu_ms_per_call": round(ours_cpu_ms, 4),
        "baseline_cpu_ms_per_call": round(baseline_cpu_ms, 4),
        "cpu_ratio_vs_baseline": round(baseline_cpu_ms / ours_cpu_ms, 3),
        "outputs_equal_to_baseline": checked,
        "memory_growth_mb_per_10k_calls": max(slopes.values()),
        "memory_growth_mb_per_10k_calls_by_path": slopes,
        "imported_rss_mib": round(ours["imported_rss_kib"] / 1024, 1),
        "peak_rss_mib_10k_search": round(ours["peak_rss_kib"] / 1024, 1),
        "peak_rss_mib_1k_search": round(small[0]["peak_rss_kib"] / 1024, 1),
        "peak_rss_mib_10k_ids": round(ids_large[0]["peak_rss_kib"] / 1024, 1),
        "memory_runs_per_size_and_path": MEMORY_RUNS,
        "default_calls_per_s_parquet": round(CALLS / ours["seconds"], 1),
        "ids_by_search_calls_per_s_parquet": round(CALLS / ids_large[0]["seconds"], 1),
        "baseline_calls_per_s_parquet": round(CALLS / baseline["seconds"], 1),
    }
    print(f"default path: {found}", flush=True)
    return found


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
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = round(os.getloadavg()[0], 2)
    figures: dict[str, Any] = {
        "title": (
            f"{CALLS:,} finished calls exported to Parquet and JSON Lines over a 50 ms API: the default "
            "path against a plain baseline, the one-GET-per-call path as a baseline"
        ),
        "started_at": started_at,
        "seed": SEED,
        "load_average_at_start": load_at_start,
        "calls": CALLS,
        "small_calls": SMALL,
        "serial_sample_calls": SERIAL_SAMPLE,
        "max_concurrency": CONCURRENCY,
        "api_latency_ms": 50,
    }
    get_path: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revox-bench-export-") as tmp:
        work = Path(tmp)
        scenario = write_scenario(work / "scenario.json", scenario_calls(CALLS))
        with SimulatorProcess(
            api_key=API_KEY, speed=SPEED, seed=SEED, scenario=scenario, faults=LATENCY
        ) as sim:
            wait_until_finished(sim, call_ids(CALLS))
            figures.update(default_path_figures(sim, work))
            for file_format in FORMATS:  # the one-GET-per-call path, a baseline only
                large = run_worker(sim, work, format=file_format, count=CALLS, concurrency=CONCURRENCY)
                small = run_worker(sim, work, format=file_format, count=SMALL, concurrency=CONCURRENCY)
                serial = run_worker(sim, work, format=file_format, count=SERIAL_SAMPLE, concurrency=1)
                per_call_rows = large["transcript_rows"] / CALLS
                for run in (small, serial):
                    if run["transcript_rows"] != per_call_rows * (SMALL if run is small else SERIAL_SAMPLE):
                        raise RuntimeError(f"{file_format}: transcript rows differ between runs")
                fast = CALLS / large["seconds"]
                slow = SERIAL_SAMPLE / serial["seconds"]
                get_path[file_format] = {
                    "calls_per_s_concurrency16": round(fast, 1),
                    "calls_per_s_concurrency1": round(slow, 1),
                    "speedup_concurrency16_vs_1": round(fast / slow, 2),
                    "peak_rss_mib_10k": round(large["peak_rss_kib"] / 1024, 1),
                    "peak_rss_mib_1k": round(small["peak_rss_kib"] / 1024, 1),
                    "transcript_rows_10k": large["transcript_rows"],
                    "seconds_10k": round(large["seconds"], 2),
                }
                print(f"GET path {file_format}: {get_path[file_format]}", flush=True)
            figures["get_path_baseline"] = get_path
            figures.update(search_figures(sim, work, get_path["jsonl"]["calls_per_s_concurrency16"]))
    serial_rate = min(get_path[f]["calls_per_s_concurrency1"] for f in FORMATS)
    figures["speedup_default_vs_serial_get"] = round(figures["default_calls_per_s_parquet"] / serial_rate, 2)
    targets = {
        "cpu_ratio_vs_baseline": (">=", CPU_RATIO_TARGET),
        "memory_growth_mb_per_10k_calls": ("<=", GROWTH_TARGET_MB),
        "speedup_default_vs_serial_get": (">=", SPEEDUP_TARGET),
        "requests_per_call": ("<=", REQUESTS_PER_CALL_TARGET),
        "speedup_search_vs_get": (">=", SEARCH_SPEEDUP_TARGET),
    }
    figures["targets"] = {name: f"{sign} {bound:g}" for name, (sign, bound) in targets.items()}
    figures["targets_met"] = {
        name: bool(figures[name] >= bound if sign == ">=" else figures[name] <= bound)
        for name, (sign, bound) in targets.items()
    }
    figures["load_average_at_end"] = round(os.getloadavg()[0], 2)
    merge_results("export", figures)
    print(
        "export: "
        + ", ".join(
            f"{name} {figures[name]} ({figures['targets'][name]}: {'met' if met else 'MISSED'})"
            for name, met in figures["targets_met"].items()
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
