"""Reading a campaign's contacts from a list or a file, and sorting good rows from bad ones.

A row becomes a contact ``{to_phone_number, prompt_variables}``. A row that already has
``prompt_variables`` keeps them; a flat row (a CSV line, a Parquet or JSON Lines record without
that key) takes its prompt variables from ``prompt_variable_columns``, or from every column
except ``to_phone_number`` when none are named; empty and null cells are left out. A row whose
number is not a valid E.164 number, or whose variables are not all strings, is rejected with
the reason.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.core.campaign import validate_contact
from airflow_provider_revox._internal.core.redact import redact
from airflow_provider_revox.exceptions import RevoxConfigError

#: File formats read from object storage, by the name's ending.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PHONE_COLUMN = "to_phone_number"


@dataclass
class Sorted:
    """The contacts that passed and the rows that did not, with why."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)


def _open(path: ObjectStoragePath, mode: str) -> Any:
    # ObjectStoragePath.open is untyped in Airflow; one place carries the ignore.
    return path.open(mode)  # type: ignore[no-untyped-call]


def file_format(path: ObjectStoragePath, given: str | None = None) -> str:
    """The format of ``path``: ``given``, else from its name (``.csv``, ``.jsonl``, ``.parquet``).

    Raises:
        RevoxConfigError: an unknown format.
    """
    name = str(path).lower()
    fmt = given or next((f for suffix, f in FORMATS.items() if name.endswith(suffix)), None)
    if fmt not in set(FORMATS.values()):
        raise RevoxConfigError(
            f"cannot tell the format of contacts file {path}; name it .csv, .jsonl or .parquet, "
            "or pass contacts_format"
        )
    return fmt


def read_rows(path: ObjectStoragePath, fmt: str) -> Iterator[Any]:
    """The rows of a contacts file, one dict (or, for a broken JSON line, the error) each."""
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - the [parquet] extra
            raise RevoxConfigError(
                "reading Parquet contacts needs pyarrow: pip install 'airflow-provider-revox[parquet]'"
            ) from None
        with _open(path, "rb") as handle:
            table = pq.read_table(handle)
        yield from table.to_pylist()
        return
    with _open(path, "rb") as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        if fmt == "csv":
            yield from csv.DictReader(text)
            return
        for line in text:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as error:
                yield ValueError(f"not JSON ({error})")


def to_contact(row: Any, variable_columns: Sequence[str] | None) -> dict[str, Any]:
    """The checked contact of one row.

    Raises:
        RevoxConfigError: naming what is wrong with the row.
    """
    if isinstance(row, ValueError):
        raise RevoxConfigError(str(row))
    if not isinstance(row, Mapping):
        raise RevoxConfigError(f"a contact must be a map with {PHONE_COLUMN!r}, not {type(row).__name__}")
    if PHONE_COLUMN not in row:
        raise RevoxConfigError(f"no {PHONE_COLUMN!r}")
    if "prompt_variables" in row:
        variables = row["prompt_variables"]
    else:
        columns = variable_columns if variable_columns is not None else [k for k in row if k != PHONE_COLUMN]
        missing = [c for c in columns if c not in row]
        if missing:
            raise RevoxConfigError(f"no column {missing[0]!r}")
        variables = {c: row[c] for c in columns if row[c] is not None and row[c] != ""}
    number = row[PHONE_COLUMN]
    if isinstance(number, str):
        number = number.strip()
    return validate_contact({"to_phone_number": number, "prompt_variables": variables}, "contact")


def sort_rows(
    rows: Iterable[Any], variable_columns: Sequence[str] | None, secrets: Sequence[str] = ()
) -> Sorted:
    """Split rows into contacts and rejects.

    A reject keeps its 1-based row number, the row (redacted) and the reason.
    """
    result = Sorted()
    for number, row in enumerate(rows, start=1):
        try:
            result.contacts.append(to_contact(row, variable_columns))
        except RevoxConfigError as error:
            shown = row if isinstance(row, Mapping) else repr(row)[:200]
            result.rejects.append({"row": number, "input": redact(shown, secrets), "reason": str(error)})
    return result


def write_rejects(path: ObjectStoragePath, rejects: Sequence[Mapping[str, Any]]) -> None:
    """Write the rejected rows as JSON Lines (``row``, ``input``, ``reason``)."""
    with _open(path, "w") as handle:
        for reject in rejects:
            handle.write(json.dumps(reject, default=str, ensure_ascii=False) + "\n")


def rejects_beside(path: ObjectStoragePath) -> ObjectStoragePath:
    """Where the rejects of a contacts file go by default: ``<name>.rejects.jsonl`` beside it."""
    return ObjectStoragePath(str(path) + ".rejects.jsonl")
