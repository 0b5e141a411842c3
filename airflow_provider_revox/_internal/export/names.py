"""File names for call orders inside an export: an id that is not a safe file name is encoded.

The API decides its ids; an export must not fail, nor write outside its destination, because
one holds ``/``, ``..``, a control character or is very long. An id that is a plain file name
is its own name. Any other is written under ``~`` and the base32 of its UTF-8 bytes (reversible
from the name alone), or, when that would be too long for a file system, ``~h`` and its sha256
(the ``calls`` table's ``document_file`` and the document itself give the id back). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

#: Starts every encoded name; a plain name never starts with it.
ENCODED_PREFIX = "~"
#: Starts the name of an id too long to encode: its sha256, not reversible from the name.
#: Base32 never holds "~", so the two kinds of names cannot be mistaken for each other.
HASHED_PREFIX = "~~"
#: Longest name written, in bytes: file systems allow 255, and an extension follows.
MAX_NAME_BYTES = 200
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def document_name(call_id: str) -> str:
    """The file name (without extension) of ``call_id``'s files: the id itself when safe, else encoded."""
    if len(call_id) <= MAX_NAME_BYTES and _PLAIN.fullmatch(call_id):
        return call_id
    raw = call_id.encode("utf-8", "surrogatepass")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) + len(ENCODED_PREFIX) <= MAX_NAME_BYTES:
        return ENCODED_PREFIX + encoded
    return HASHED_PREFIX + hashlib.sha256(raw).hexdigest()


def call_id_of(name: str) -> str | None:
    """The call id a :func:`document_name` stands for; None for a hashed name (see the table row)."""
    if not name.startswith(ENCODED_PREFIX):
        return name
    if name.startswith(HASHED_PREFIX):
        return None
    body = name[len(ENCODED_PREFIX) :]
    padded = body.upper() + "=" * (-len(body) % 8)
    try:
        return base64.b32decode(padded).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


#: Folder of the per-order documents under the export's destination.
CALLS_DIR = "calls"


def document_path(call_id: str) -> str:
    """The relative path of ``call_id``'s document: ``calls/<document_name>.json``."""
    return f"{CALLS_DIR}/{document_name(call_id)}.json"
