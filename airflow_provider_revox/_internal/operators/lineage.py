"""OpenLineage datasets of the operators: the Revox calls they read and the files an export writes.

Names follow OpenLineage's naming conventions. A file on an object store is namespace
``<scheme>://<bucket>`` and name its key (``s3://bucket`` + ``exports/transcripts.jsonl``); a
local file is namespace ``file`` and name its absolute path. The spec names no scheme for an
HTTP API, so, as for other services addressed by host (Kafka: ``kafka://host:port``), the
namespace is ``revox://<host[:port]>`` of the connection's base URL and the name says what
was read:

* ``calls/<call_id>``: one call order;
* ``calls?ids_sha256=<digest>``: a list of call orders (the same set in any order, any
  repetition, gives the same name; the ids themselves would make names of any length);
* ``calls?campaign_ids=c1,c2&statuses=completed``: a search, filters sorted by name, values
  sorted; phone numbers and free text are replaced by their digest, so lineage backends get
  no numbers or names.

Building the datasets is pure and needs no OpenLineage package. Only
:func:`openlineage_facets` imports the OpenLineage provider, and returns None without it, so
the operators work the same where it is not installed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow_provider_revox._internal.export import tables
from airflow_provider_revox._internal.export.tables import Schema

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The scheme of the namespaces of Revox datasets.
REVOX_SCHEME = "revox"
#: Search filters whose values may be personal (phone numbers, free text): named by their digest only.
PERSONAL_FILTERS = frozenset({"from_phone_numbers", "to_phone_number", "to_phone_numbers", "query"})
#: Export folders that hold one file per call or attempt: one dataset each, not one per file.
FILE_FOLDERS = ("calls", "recordings")

# The export's column types as the schema facet shows them.
_FACET_TYPES = {
    tables.STRING: "string",
    tables.INTEGER: "integer",
    tables.NUMBER: "number",
    tables.BOOLEAN: "boolean",
    tables.DATE: "date",
    tables.DATETIME: "timestamp",
    tables.STRING_LIST: "array<string>",
}


@dataclass(frozen=True)
class LineageDataset:
    """One dataset as OpenLineage names it, with the columns of a table file (empty otherwise).

    Attributes:
        namespace: ``revox://host``, ``file``, ``s3://bucket``, ...
        name: what inside the namespace: ``calls?...``, a path or a key.
        columns: the table's typed columns, for the schema facet.
    """

    namespace: str
    name: str
    columns: Schema = ()


@dataclass(frozen=True)
class Lineage:
    """What one run of an operator read and wrote."""

    inputs: tuple[LineageDataset, ...] = ()
    outputs: tuple[LineageDataset, ...] = ()


def revox_namespace(base_url: str) -> str:
    """``revox://<host[:port]>`` of the connection's base URL (no credentials, path or scheme).

    Raises:
        ValueError: when the URL has no host.
    """
    parts = urlsplit(base_url)
    if not parts.hostname:
        raise ValueError(f"the Revox base URL has no host: {base_url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{REVOX_SCHEME}://{host}" + (f":{parts.port}" if parts.port is not None else "")


def _digest(values: Iterable[str]) -> str:
    joined = "\n".join(sorted(set(values)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]


def call_read(base_url: str, call_id: str) -> LineageDataset:
    """The dataset of one call order read from the connection at ``base_url``."""
    return LineageDataset(revox_namespace(base_url), f"calls/{quote(call_id, safe='')}")


def calls_read(
    base_url: str, call_ids: Sequence[str] = (), search: Mapping[str, Any] | None = None
) -> LineageDataset:
    """The dataset of the call orders read: by their ids, or by a search when ``search`` is given."""
    namespace = revox_namespace(base_url)
    if search is None:
        return LineageDataset(namespace, f"calls?ids_sha256={_digest(call_ids)}")
    pairs = []
    for key in sorted(search):
        raw = search[key]
        values = [raw] if isinstance(raw, str) or not isinstance(raw, Iterable) else list(raw)
        texts = sorted({str(value) for value in values if value is not None and value != ""})
        if not texts:
            continue  # an empty filter does not filter
        shown = f"sha256:{_digest(texts)}" if key in PERSONAL_FILTERS else ",".join(texts)
        pairs.append(f"{quote(key, safe='')}={quote(shown, safe=',:+@')}")
    return LineageDataset(namespace, "calls?" + "&".join(pairs) if pairs else "calls")


def file_dataset(uri: str, columns: Schema = ()) -> LineageDataset:
    """The dataset of a file or folder at ``uri`` (``file:///...``, a plain path, ``s3://...``)."""
    parts = urlsplit(uri)
    path = parts.path.rstrip("/") or "/"
    if parts.scheme in ("", "file"):
        return LineageDataset("file", path if path.startswith("/") else f"/{path}", columns)
    bucket = parts.netloc.rpartition("@")[2]  # never a user or password that slipped into the URI
    namespace = f"{parts.scheme}://{bucket}" if bucket else parts.scheme
    return LineageDataset(namespace, path.lstrip("/"), columns)


def export_lineage(
    base_url: str,
    call_ids: Sequence[str],
    destination_uri: str,
    manifest: Mapping[str, Any],
    search: Mapping[str, Any] | None = None,
) -> Lineage:
    """What an export read and wrote, from the manifest :func:`export_calls` returned.

    Outputs are each table file with its columns (the manifest's ``schemas``), then one
    dataset per folder of per-call files that the export wrote (``calls``, ``recordings``).
    """
    base = destination_uri.rstrip("/")
    schemas: Mapping[str, Schema] = manifest.get("schemas", {})
    paths = [entry["path"] for entry in manifest.get("files", [])]
    outputs = [file_dataset(f"{base}/{path}", tuple(schemas[path])) for path in schemas if path in paths]
    outputs += [
        file_dataset(f"{base}/{folder}")
        for folder in FILE_FOLDERS
        if any(path.startswith(f"{folder}/") for path in paths)
    ]
    return Lineage((calls_read(base_url, call_ids, search),), tuple(outputs))


def openlineage_facets(lineage: Lineage | None) -> OperatorLineage[Any, Any] | None:
    """The OpenLineage provider's ``OperatorLineage`` for ``lineage``.

    None when the OpenLineage provider is not installed; an empty ``OperatorLineage`` when
    the operator recorded nothing (it did not get as far as reading).
    """
    try:
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    def build(dataset: LineageDataset) -> Dataset:
        if not dataset.columns:
            return Dataset(namespace=dataset.namespace, name=dataset.name)
        fields = [SchemaDatasetFacetFields(name=c.name, type=_FACET_TYPES[c.type]) for c in dataset.columns]
        schema = SchemaDatasetFacet(fields=fields)
        return Dataset(namespace=dataset.namespace, name=dataset.name, facets={"schema": schema})

    if lineage is None:
        return OperatorLineage()
    return OperatorLineage(
        inputs=[build(d) for d in lineage.inputs], outputs=[build(d) for d in lineage.outputs]
    )
