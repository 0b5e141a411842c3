"""The contacts read of ``RevoxCreateCampaignOperator`` (``gate.read_contacts``): its memory.

A campaign's contacts all go in one ``POST /campaigns`` body, so the read keeps every contact it
accepts: that part grows with the file by design, and so does the index of the numbers seen (for
duplicates, about 40 bytes a row while the read runs). Nothing else may: the file is read a line
at a time, never whole, and its rows are never kept beside the contacts. Peaks are measured with
``tracemalloc`` (allocations, not the process's resident size), on files of two sizes.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.core import contacts as reading
from airflow_provider_revox._internal.operators import gate
from airflow_provider_revox.testing import SimulatorHandle

T = TypeVar("T")

#: A note long enough that a file held whole, or its rows kept, would show beside the contacts.
NOTE = "call after 6pm; prefers French; renewal due next month (plan gold)"
#: Bytes per row the read may hold beyond the contacts it keeps: the index of the numbers seen
#: (for duplicates) is about 40 while the read runs. A file held whole costs its size again.
BEYOND_PER_ROW = 64


def contacts_file(path: Path, rows: int) -> Path:
    """A CSV of ``rows`` valid, distinct contacts, each row over 100 bytes."""
    with path.open("w") as out:
        out.write("to_phone_number,first_name,plan,note\n")
        for row in range(rows):
            out.write(f"+336{10_000_000 + row},Name{row % 977},gold,{NOTE}\n")
    return path


def measured(work: Callable[[], T]) -> tuple[T, int, int]:
    """``work()``'s result, the bytes it still holds after, and its peak, both above the start."""
    gc.collect()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        result = work()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    return result, held - start, peak - start


@pytest.fixture
def files(tmp_path: Path) -> Callable[[int], Path]:
    """Contacts files by their number of rows, each written once."""
    made: dict[int, Path] = {}

    def make(rows: int) -> Path:
        if rows not in made:
            made[rows] = contacts_file(tmp_path / f"contacts-{rows}.csv", rows)
        return made[rows]

    return make


def test_the_file_is_streamed_in_the_same_memory_whatever_its_size(files: Callable[[int], Path]) -> None:
    warm = ObjectStoragePath(files(100).as_uri())
    measured(lambda: sum(1 for _ in reading.read_rows(warm, "csv")))  # first use: imports, caches
    peaks = {}
    for rows in (20_000, 100_000):
        source = ObjectStoragePath(files(rows).as_uri())
        count, _, peaks[rows] = measured(lambda: sum(1 for _ in reading.read_rows(source, "csv")))  # noqa: B023
        assert count == rows
    # The larger file is 9 MB: read whole, it would show here as its size.
    assert peaks[100_000] < 1.5 * peaks[20_000]
    assert peaks[100_000] < 1_000_000


def test_a_campaign_read_holds_its_contacts_and_little_more(
    revox_simulator: SimulatorHandle, files: Callable[[int], Path]
) -> None:
    from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator

    for rows in (5_000, 25_000):
        source = files(rows)
        op = RevoxCreateCampaignOperator(
            task_id=f"create_{rows}",
            name="Reminders",
            assistant_id="asst_demo",
            contacts_path=source.as_uri(),
        )
        op.hook.known_secrets()  # the connection's lookup, once per task whatever the file
        (result, target), held, peak = measured(lambda: gate.read_contacts(op, {}))  # noqa: B023
        assert (len(result.contacts), len(result.rejects), result.rows) == (rows, 0, rows)
        assert result.contacts[-1] == {
            "to_phone_number": f"+336{10_000_000 + rows - 1}",
            "prompt_variables": {"first_name": f"Name{(rows - 1) % 977}", "plan": "gold", "note": NOTE},
        }
        assert str(target) == str(source.as_uri()) + ".rejects.jsonl"
        beyond = peak - held
        assert beyond < BEYOND_PER_ROW * rows, (rows, held, peak)
        del result
