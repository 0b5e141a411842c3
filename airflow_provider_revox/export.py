"""Reading what the provider exported, and the names an export is configured with.

* :data:`ALL_TABLES` and :data:`FILE_FORMATS`: the tables an export can write and their formats;
* :class:`CallSearch`: the filters of an export (or a wait) by search;
* :func:`read_published`: what a reader does before reading an export's folder (one load);
* :func:`read_loads`: the complete loads under an export's base, from ``_loads.jsonl``;
* :class:`Watermark` and :func:`first_named`: the consumer's mark for call events, so that an
  order named by two events is exported once;
* :func:`recording_extension`: the file extension a recording is stored under.
"""

from __future__ import annotations

from airflow_provider_revox._internal.export.loads import read_loads
from airflow_provider_revox._internal.export.recordings import recording_extension
from airflow_provider_revox._internal.export.run import ALL_TABLES
from airflow_provider_revox._internal.export.search import CallSearch
from airflow_provider_revox._internal.export.staging import read_published
from airflow_provider_revox._internal.export.writers import FILE_FORMATS
from airflow_provider_revox._internal.waiting.cursor import Watermark, first_named

__all__ = [
    "ALL_TABLES",
    "FILE_FORMATS",
    "CallSearch",
    "Watermark",
    "first_named",
    "read_loads",
    "read_published",
    "recording_extension",
]
