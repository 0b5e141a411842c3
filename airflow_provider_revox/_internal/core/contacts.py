"""Reading a campaign's contacts from a list or a file, and sorting good rows from bad ones.

A row becomes a contact ``{to_phone_number, prompt_variables}``. A row that already has
``prompt_variables`` keeps them; a flat row (a CSV line, a Parquet or JSON Lines record without
that key) takes its prompt variables from ``prompt_variable_columns``, or from every column
except ``to_phone_number`` when none are named; empty and null cells are left out. A row whose
number is not a valid E.164 number, whose variables are not all strings, or whose number an
earlier row already has, is rejected with the reason.

A file is streamed, never read whole, and checked where a person would look first: a CSV or
Parquet file without a ``to_phone_number`` column is one error listing the columns it has, a
CSV line with more or fewer fields than the header is rejected as such, and a byte that is not
UTF-8 is an error naming its row and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.core.campaign import validate_contact
from airflow_provider_revox._internal.core.redact import redact
from airflow_provider_revox.exceptions import RevoxConfigError

#: File formats read from object storage, by the name's ending.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PHONE_COLUMN = "to_phone_number"
#: Rows between two progress reports of a long read.
PROGRESS_EVERY = 100_000
#: Rows a Parquet file hands over at a time: the file is never read whole.
PARQUET_BATCH_ROWS = 10_000


@dataclass
class Sorted:
    """The contacts that passed and the rows that did not, with why."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    #: The input row (1-based) of each contact, in the same order.
    contact_rows: list[int] = field(default_factory=list)
    #: Rows read so far.
    rows: int = 0
    #: True when the read stopped at ``max_rejected`` rejects, before the end of the input.
    stopped_early: bool = False


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


def _header_error(path: ObjectStoragePath, columns: Sequence[str]) -> RevoxConfigError:
    found = ", ".join(repr(c) for c in columns) if columns else "none"
    return RevoxConfigError(
        f"contacts file {path} has no {PHONE_COLUMN!r} column (columns found: {found}); "
        f"name the phone number column {PHONE_COLUMN!r}"
    )


def _lines(path: ObjectStoragePath, handle: Any, first_row: Callable[[], int]) -> Iterator[str]:
    """The file's text, decoded line by line so a bad byte is reported with the row that holds it."""
    for number, raw in enumerate(handle, start=1):
        try:
            line: str = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise RevoxConfigError(
                f"contacts file {path} is not UTF-8 text: row {first_row()} (line {number}) holds "
                f"byte 0x{raw[error.start]:02x} at position {error.start + 1}; save the file as UTF-8"
            ) from None
        yield line


def read_rows(path: ObjectStoragePath, fmt: str) -> Iterator[Any]:
    """The rows of a contacts file, streamed: one dict each, or a :class:`RowProblem` for a row
    that cannot be read (a broken JSON line, a CSV line with the wrong number of fields).

    Raises:
        RevoxConfigError: before the first row when a CSV or Parquet file has no
            ``to_phone_number`` column (one error listing the columns found); at the row that holds
            them when the file has bytes that are not UTF-8.
    """
    if fmt == "parquet":
        yield from _parquet_rows(path)
        return
    rows = 0
    with _open(path, "rb") as handle:
        lines = _lines(path, handle, lambda: rows + 1)
        if fmt == "csv":
            reader = csv.reader(lines)
            header = next(reader, None)
            if header is None:
                return
            if PHONE_COLUMN not in header:
                raise _header_error(path, header)
            for fields in reader:
                if not fields:
                    continue
                rows += 1
                if len(fields) != len(header):
                    yield RowProblem(
                        f"row {rows} (line {reader.line_num}) has {len(fields)} fields, "
                        f"the header has {len(header)}"
                    )
                else:
                    yield dict(zip(header, fields, strict=True))
            return
        for line in lines:
            if not line.strip():
                continue
            rows += 1
            try:
                yield json.loads(line)
            except ValueError as error:
                yield RowProblem(f"not JSON ({error})")


def _parquet_rows(path: ObjectStoragePath) -> Iterator[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the [parquet] extra
        raise RevoxConfigError(
            "reading Parquet contacts needs pyarrow: pip install 'airflow-provider-revox[parquet]'"
        ) from None
    with _open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if PHONE_COLUMN not in parquet.schema_arrow.names:
            raise _header_error(path, parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


class RowProblem(ValueError):
    """A row that could not be read as a row; it is rejected with this reason."""


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
    rows: Iterable[Any],
    variable_columns: Sequence[str] | None,
    secrets: Sequence[str] = (),
    *,
    max_rejected: int | None = None,
    progress: Callable[[Sorted], None] | None = None,
) -> Sorted:
    """Split rows into contacts and rejects, reading them one at a time.

    A reject keeps its 1-based row number, the row (redacted) and the reason. A number already
    taken by an earlier row of the same input is rejected as a duplicate: the first row wins.
    Past ``max_rejected`` rejects the read stops (``stopped_early``): the rows left would not
    change the verdict. ``progress`` is called every :data:`PROGRESS_EVERY` rows.
    """
    result = Sorted()
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        result.rows = number
        try:
            contact = to_contact(row, variable_columns)
            earlier = first_row.setdefault(contact["to_phone_number"], number)
            if earlier != number:
                raise RevoxConfigError(f"duplicate: the same number as row {earlier}")
            result.contacts.append(contact)
            result.contact_rows.append(number)
        except RevoxConfigError as error:
            shown = row if isinstance(row, Mapping) else repr(row)[:200]
            result.rejects.append({"row": number, "input": redact(shown, secrets), "reason": str(error)})
            if max_rejected is not None and len(result.rejects) > max_rejected:
                result.stopped_early = True
                break
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(result)
    return result


def write_rejects(path: ObjectStoragePath, rejects: Sequence[Mapping[str, Any]]) -> None:
    """Write the rejected rows as JSON Lines (``row``, ``input``, ``reason``)."""
    with _open(path, "w") as handle:
        for reject in rejects:
            handle.write(json.dumps(reject, default=str, ensure_ascii=False) + "\n")


def rejects_beside(path: ObjectStoragePath) -> ObjectStoragePath:
    """Where the rejects of a contacts file go by default: ``<name>.rejects.jsonl`` beside it."""
    return ObjectStoragePath(str(path) + ".rejects.jsonl")
