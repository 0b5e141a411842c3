"""Merge one benchmark's figures into bench/results.json without touching other sections.

Every section is stamped with the run it came from: ``make bench`` (bench/run_all.py) sets
``BENCH_RUN_ID`` and ``BENCH_RUN_STARTED`` for every script it starts, so scripts/bench-table
can tell a section of this run from one left over by an earlier run (it marks those stale).
A script run on its own gets a run id of its own. The section's own start and load average
default to the moment this module was imported (the start of the bench script), so every
section carries them even when its script does not measure them itself.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")

#: The environment variables bench/run_all.py sets for the scripts of one ``make bench``.
RUN_ID_VARIABLE = "BENCH_RUN_ID"
RUN_STARTED_VARIABLE = "BENCH_RUN_STARTED"

_IMPORTED_AT = datetime.now(timezone.utc)
_LOAD_AT_IMPORT = [round(x, 2) for x in os.getloadavg()]


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(moment: datetime | None = None) -> str:
    """A run id made of the UTC start of the run (sortable, readable)."""
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


_TARGET = re.compile(r"^\s*(<=|>=|==|<|>|=)?\s*(-?[\d_,]*\.?\d+(?:[eE]-?\d+)?)\s*$")


def target_met(value: Any, target: str) -> bool:
    """Whether ``value`` satisfies ``target`` (``"<= 0.02"``, ``">= 2,000"``, ``"== 0"``, ``"0"``).

    Raises:
        ValueError: when the target is not a comparison with a number, or the value is not a number.
    """
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"target {target!r} is not '<op> <number>'")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"figure {value!r} is not a number (target {target!r})")
    operator, bound = match.group(1) or "==", float(match.group(2).replace(",", "").replace("_", ""))
    return {
        "<=": value <= bound,
        ">=": value >= bound,
        "<": value < bound,
        ">": value > bound,
        "==": value == bound,
        "=": value == bound,
    }[operator]


def evaluate(figures: dict[str, Any], targets: dict[str, str]) -> dict[str, bool]:
    """``targets_met``: each target compared with the figure of the same name in ``figures``."""
    return {name: target_met(figures[name], target) for name, target in targets.items()}


def merge_results(section: str, figures: dict[str, Any]) -> None:
    """Replace ``section`` in bench/results.json with ``figures``; keep every other section.

    Adds the run's id and start, and (unless the figures have them) the section's start and
    the load averages at its start and end.
    """
    run_id = os.environ.get(RUN_ID_VARIABLE) or f"standalone-{new_run_id(_IMPORTED_AT)}"
    stamped = {
        "run_id": run_id,
        "run_started_at": os.environ.get(RUN_STARTED_VARIABLE) or _IMPORTED_AT.isoformat(timespec="seconds"),
        "started_at": _IMPORTED_AT.isoformat(timespec="seconds"),
        "load_average_at_start": _LOAD_AT_IMPORT,
        "load_average_at_end": load_average(),
    }
    stamped.update(figures)
    stamped["run_id"] = run_id
    current: dict[str, Any] = {}
    if RESULTS.exists():
        current = json.loads(RESULTS.read_text() or "{}")
    current[section] = stamped
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
