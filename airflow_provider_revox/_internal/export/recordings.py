"""Where a call attempt's recording goes in an export, and which file extension it gets.

Pure: no I/O. The export streams the bytes; this module only names the file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from airflow_provider_revox._internal.export.names import document_name

DEFAULT_RECORDING_EXTENSION = "wav"
#: Folder of the recordings under the export's destination.
RECORDINGS_DIR = "recordings"
_EXTENSION = re.compile(r"^[a-z0-9]{2,5}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# Leading bytes of the audio containers recordings come in, for URLs without a file extension.
_AUDIO_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"OggS", "ogg"),
    (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"),
    (0, b"\xff\xfb", "mp3"),
    (0, b"\xff\xf3", "mp3"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
    (4, b"ftyp", "m4a"),
)


def recording_extension(url: str, first_bytes: bytes = b"") -> str:
    """The file extension of a recording: from its URL path, else its first bytes, else ``wav``."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    if _EXTENSION.match(suffix):
        return suffix
    for offset, signature, extension in _AUDIO_SIGNATURES:
        if first_bytes[offset : offset + len(signature)] == signature:
            return extension
    return DEFAULT_RECORDING_EXTENSION


def safe_name(text: str) -> str:
    """``text`` as one file name: letters, digits, ``.``, ``_`` and ``-`` only, never hidden.

    A name that had to change gets a short hash of the original, so two ids that clean up to
    the same text (``att/1`` and ``att_1``) never share a file.
    """
    name = _UNSAFE_NAME.sub("_", text).lstrip(".") or "_"
    if name == text:
        return name
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name}-{digest}"


def recording_path(call_id: str, attempt_id: str, url: str, first_bytes: bytes = b"") -> str:
    """The relative path of an attempt's recording: ``recordings/<call_id>/<attempt_id>.<ext>``.

    The call's folder is its :func:`~airflow_provider_revox._internal.export.names.document_name`.
    """
    extension = recording_extension(url, first_bytes)
    return f"{RECORDINGS_DIR}/{document_name(call_id)}/{safe_name(attempt_id)}.{extension}"
