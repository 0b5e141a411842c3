"""Merge one benchmark's figures into bench/results.json without touching other sections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def merge_results(section: str, figures: dict[str, Any]) -> None:
    """Replace ``section`` in bench/results.json with ``figures``; keep every other section."""
    current: dict[str, Any] = {}
    if RESULTS.exists():
        current = json.loads(RESULTS.read_text() or "{}")
    current[section] = figures
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
