"""Run every benchmark in bench/ one after the other (``make bench``), as one run.

Every script gets the same ``BENCH_RUN_ID`` and ``BENCH_RUN_STARTED``, which
:func:`bench.results.merge_results` stamps into the section it writes; afterwards the benchmark
table in docs/guides/production.md is generated from bench/results.json (scripts/bench-table),
where a section another run wrote is marked stale.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.results import RUN_ID_VARIABLE, RUN_STARTED_VARIABLE, new_run_id  # noqa: E402

SKIP = {"run_all.py", "results.py", "__init__.py"}
TABLE = HERE.parent / "scripts" / "bench-table"


def main() -> int:
    started = datetime.now(timezone.utc)
    env = {
        **os.environ,
        RUN_ID_VARIABLE: new_run_id(started),
        RUN_STARTED_VARIABLE: started.isoformat(timespec="seconds"),
    }
    print(f"bench run {env[RUN_ID_VARIABLE]}", flush=True)
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP and not p.name.startswith("_"))
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent, env=env).returncode != 0:
            failed.append(script.name)
    table = subprocess.run([sys.executable, str(TABLE), "--write"], cwd=HERE.parent, env=env)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return table.returncode


if __name__ == "__main__":
    sys.exit(main())
