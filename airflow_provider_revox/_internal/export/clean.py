"""One redaction pass per exported call: every table row and the call's document come from it.

Redacting each row, turn and map on its own walked a call about ten times. Here the call's whole
document is redacted once (:func:`~airflow_provider_revox._internal.core.redact.redact`) and read
back into a :class:`~airflow_provider_revox._internal.core.call.Call`; the row builders then take
that call with ``redacted=True`` and redact nothing again. Every value a row holds comes from the
redacted document, so a row holds nothing the document's redaction would have masked; the
redaction of a whole document is at least as strict as that of its parts (a value under a
secret-named key is masked wherever it is read from).

Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import ValidationError

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact

log = logging.getLogger(__name__)


def redacted_call(call: Call, secrets: tuple[str, ...]) -> Call | None:
    """``call`` rebuilt from its redacted document, under its own id; None when that document no
    longer reads as a call (a typed field masked whole): the caller then redacts row by row."""
    cleaned = redact(call.raw, secrets)
    try:
        clean = Call.from_response(cleaned)
    except ValidationError:
        log.warning("Revox call %s: its redacted document is not a call; redacting each row instead", call.id)
        return None
    # The id names files and rows as the API gave it (it was checked as a path-safe id).
    clean.id = call.id
    return clean


def recordings_of(call: Call, clean: Call, recordings: Mapping[str, str]) -> dict[str, str]:
    """``recordings`` (attempt id of ``call`` to a file) keyed by the attempt ids of ``clean``."""
    if not recordings:
        return {}
    pairs = zip(call.attempts_newest_first(), clean.attempts_newest_first(), strict=False)
    return {mine.id: recordings[theirs.id] for theirs, mine in pairs if theirs.id in recordings}
