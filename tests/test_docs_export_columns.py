"""docs/guides/export-columns.md documents every column of every export table, with its type,
in the schemas' order: the document is checked against the schemas, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_revox._internal.export.run import ALL_TABLES
from airflow_provider_revox._internal.export.tables import (
    COLUMN_TYPES,
    STRUCTURED_OUTPUT_BASE,
    TRANSCRIPT_SCHEMA,
    VALIDATION_ERRORS,
    Schema,
)
from airflow_provider_revox._internal.export.warehouse import ATTEMPTS_SCHEMA, CALLS_SCHEMA

DOC = Path(__file__).resolve().parents[1] / "docs" / "guides" / "export-columns.md"
#: The row standing for the structured-output fields, whose columns each export decides.
FIELD_ROW = "*field*"
SCHEMAS: dict[str, Schema] = {
    "transcripts": TRANSCRIPT_SCHEMA,
    "structured_output": (*STRUCTURED_OUTPUT_BASE, VALIDATION_ERRORS),
    "calls": CALLS_SCHEMA,
    "attempts": ATTEMPTS_SCHEMA,
}
_CELL = re.compile(r"^`([^`]+)`$")


def documented_tables(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """Each ``## <table>`` section's first markdown table, as (column, type, meaning) rows."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        rows = [line for line in body.splitlines() if line.startswith("|")]
        if len(rows) < 2:
            continue
        found = []
        for line in rows[2:]:  # after the header and the |---| line
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert len(cells) == 3, f"{heading}: a row needs column | type | meaning: {line!r}"
            found.append((cells[0], cells[1], cells[2]))
        tables[heading.strip()] = found
    return tables


def test_every_table_is_documented_and_nothing_else_is() -> None:
    tables = documented_tables(DOC.read_text())
    assert set(SCHEMAS) == set(ALL_TABLES)
    assert set(ALL_TABLES) <= set(tables)


@pytest.mark.parametrize("table", ALL_TABLES)
def test_the_document_lists_each_column_with_its_type_in_order(table: str) -> None:
    rows = documented_tables(DOC.read_text())[table]
    documented = []
    for column, column_type, meaning in rows:
        assert meaning, f"{table}.{column}: no meaning"
        if column == FIELD_ROW:
            assert table == "structured_output", f"{table}: only structured_output has per-field columns"
            continue
        name, kind = _CELL.match(column), _CELL.match(column_type)
        assert name and kind, f"{table}: write column and type in backticks: {column!r} {column_type!r}"
        assert kind.group(1) in COLUMN_TYPES, f"{table}.{name.group(1)}: unknown type {kind.group(1)!r}"
        documented.append((name.group(1), kind.group(1)))
    assert documented == [(column.name, column.type) for column in SCHEMAS[table]]


def test_the_types_section_names_every_column_type() -> None:
    section = DOC.read_text().split("## Types", 1)[1].split("\n## ", 1)[0]
    named = {match.group(1) for match in re.finditer(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)}
    assert named == set(COLUMN_TYPES)
