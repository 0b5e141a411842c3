"""The organisation's phone history (``GET /calls/phone-history``), read as a stream.

The endpoint takes no parameters and answers one JSON object for the whole organisation,
``{"phone_history": {"<E.164 number>": {count, do_not_contact, hot, reached_human,
last_called_at, last_outcome, campaigns: [{id, name}]}, ...}}`` (vendor SDK 0.5.0). It grows
with every number ever called, so it is never held whole: :class:`HistoryScanner` is fed the
body's text as it arrives, decodes one entry at a time, keeps only the entries of the numbers
a task dials, and holds at most one entry plus one chunk of text. It proves the body complete
(the closing braces were seen) or says it is not: a history read in part cannot clear a number.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from airflow_provider_revox._internal.core.call import RevoxModel

HISTORY_FIELD = "phone_history"
_SPACE = re.compile(r"[ \t\n\r]*")
#: Text an entry may take before the scanner calls the body malformed (an entry is ~200 bytes).
MAX_ENTRY_CHARS = 1 << 20
_DECODER = json.JSONDecoder()
#: Characters that may follow a whole number or literal (``1`` of ``1.5`` is not whole yet).
_ENDS = frozenset(",}] \t\n\r")


def _flag(value: Any) -> Any:
    """A boolean as sent, or read from its usual spellings; unknown values read as True.

    A ``do_not_contact`` of an unexpected type must not clear a number: True is the safe side.
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", ""):
        return False
    return not (isinstance(value, int | float) and value == 0)


def _moment(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _count(value: Any) -> Any:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _campaigns(value: Any) -> Any:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


Flag = Annotated[bool, BeforeValidator(_flag)]


class HistoryCampaign(RevoxModel):
    """A campaign that called a number: its id and name."""

    id: Annotated[str, BeforeValidator(lambda v: "" if v is None else str(v))] = ""
    name: Annotated[str, BeforeValidator(lambda v: "" if v is None else str(v))] = ""


class PhoneHistoryEntry(RevoxModel):
    """What the organisation's history says of one number; unknown fields are kept.

    ``last_called_at`` is a timezone-aware datetime, or None when absent or unreadable
    (``last_called_at_text`` keeps what was sent).
    """

    count: Annotated[int, BeforeValidator(_count)] = 0
    do_not_contact: Flag = False
    hot: Flag = False
    reached_human: Flag = False
    last_called_at: Annotated[datetime | None, BeforeValidator(_moment)] = None
    last_outcome: str | None = None
    campaigns: Annotated[list[HistoryCampaign], BeforeValidator(_campaigns)] = Field(default_factory=list)


class PhoneHistory(RevoxModel):
    """The history of the numbers asked about, and what reading the whole history took.

    Attributes:
        entries: number -> its entry, only for asked numbers the history holds (a number it does
            not hold has never been called).
        numbers_scanned: entries in the whole history (each decoded, then kept or dropped).
        chunks_read: pieces of the body read from the network.
        bytes_read: bytes of the body.
        max_buffered_chars: the most text held at once while reading (bounded memory).
    """

    entries: dict[str, PhoneHistoryEntry] = Field(default_factory=dict)
    numbers_scanned: int = 0
    chunks_read: int = 0
    bytes_read: int = 0
    max_buffered_chars: int = 0


class HistoryFormatError(ValueError):
    """The body is not a phone history, or ended before its last closing brace."""


@dataclass
class HistoryScanner:
    """Decode a phone-history body fed in pieces, keeping the entries of ``wanted`` numbers.

    ``feed`` each piece of text, then ``finish``; both raise :class:`HistoryFormatError`.
    """

    wanted: Collection[str]
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    scanned: int = 0
    chunks: int = 0
    max_buffered: int = 0
    _text: str = ""
    _at: int = 0
    # "start": before "{"; "keys": top-level members; "map": inside phone_history; "done".
    _where: str = "start"
    _seen_history: bool = False

    def feed(self, piece: str) -> None:
        """Take the next piece of the body and decode every whole member it completes."""
        self.chunks += 1
        self._text = self._text[self._at :] + piece
        self._at = 0
        self.max_buffered = max(self.max_buffered, len(self._text))
        self._advance(final=False)
        if len(self._text) - self._at > MAX_ENTRY_CHARS:
            raise HistoryFormatError(f"an entry of the history is longer than {MAX_ENTRY_CHARS:,} characters")

    def finish(self) -> dict[str, dict[str, Any]]:
        """The entries kept, once the body has ended; raises when it ended early or is not a history."""
        self._advance(final=True)
        if self._where != "done":
            raise HistoryFormatError("the body ended before the history did (cut off)")
        if not self._seen_history:
            raise HistoryFormatError(f"the body has no {HISTORY_FIELD!r} object")
        if self._text[self._at :].strip():
            raise HistoryFormatError("the body has text after the history")
        return self.found

    # -- the walk -------------------------------------------------------------------------

    def _skip_space(self) -> None:
        self._at = _SPACE.match(self._text, self._at).end()  # type: ignore[union-attr]

    def _next_char(self) -> str:
        self._skip_space()
        return self._text[self._at] if self._at < len(self._text) else ""

    def _value(self, final: bool) -> tuple[bool, Any]:
        """Decode the JSON value at the cursor: ``(True, value)``, or ``(False, None)`` for more text."""
        self._skip_space()
        try:
            value, end = _DECODER.raw_decode(self._text, self._at)
        except json.JSONDecodeError as error:
            if final:
                raise HistoryFormatError(f"not a phone history: {error.msg} at {error.pos}") from None
            return False, None
        # A number or a literal may go on in the next piece; only a following character proves its end.
        if not final and self._text[self._at] not in '{["' and self._text[end : end + 1] not in _ENDS:
            return False, None
        self._at = end
        return True, value

    def _member_key(self, final: bool) -> tuple[bool, str]:
        """Decode ``"key":`` at the cursor."""
        start = self._at
        done, key = self._value(final)
        if not done:
            return False, ""
        if not isinstance(key, str):
            raise HistoryFormatError(f"not a phone history: a key is {type(key).__name__}")
        colon = self._next_char()
        if colon == "":
            if final:
                raise HistoryFormatError("the body ended inside the history (cut off)")
            self._at = start
            return False, ""
        if colon != ":":
            raise HistoryFormatError(f"not a phone history: expected ':' after {key[:40]!r}")
        self._at += 1
        return True, key

    def _separator(self, final: bool) -> bool:
        """Step over ``,`` or ``}`` after a member; True when the object closed."""
        char = self._next_char()
        if char == ",":
            self._at += 1
            return False
        if char == "}":
            self._at += 1
            return True
        if char == "" and not final:
            raise _NeedMore
        raise HistoryFormatError("the body ended inside the history (cut off)" if char == "" else
                                 f"not a phone history: unexpected {char!r}")  # fmt: skip

    def _advance(self, final: bool) -> None:
        try:
            while self._where != "done":
                if not self._step(final):
                    return
        except _NeedMore:
            return

    def _step(self, final: bool) -> bool:
        """Decode one member; False when more text is needed."""
        if self._where == "start":
            char = self._next_char()
            if char == "":
                return False
            if char != "{":
                raise HistoryFormatError(f"not a phone history: the body starts with {char!r}")
            self._at += 1
            self._where = "keys"
            return True
        if self._where == "keys":
            return self._top_member(final)
        return self._history_member(final)

    def _top_member(self, final: bool) -> bool:
        char = self._next_char()
        if char == "":
            return False
        if char == "}":
            self._at += 1
            self._where = "done"
            return True
        if char == ",":
            self._at += 1
            return True
        mark = self._at
        done, key = self._member_key(final)
        if not done:
            return False
        if key == HISTORY_FIELD:
            if self._next_char() == "":
                self._at = mark
                return False
            if self._next_char() != "{":
                raise HistoryFormatError(f"not a phone history: {HISTORY_FIELD!r} is not an object")
            self._at += 1
            self._where, self._seen_history = "map", True
            if self._next_char() == "}":
                self._at += 1
                self._where = "keys"
            return True
        done, _ = self._value(final)  # another member: tolerated, not kept
        if not done:
            self._at = mark
        return done

    def _history_member(self, final: bool) -> bool:
        mark = self._at
        done, number = self._member_key(final)
        if not done:
            return False
        done, entry = self._value(final)
        if not done:
            self._at = mark
            return False
        try:
            closed = self._separator(final)
        except _NeedMore:
            self._at = mark
            raise
        self.scanned += 1
        if number in self.wanted:
            self.found[number] = entry if isinstance(entry, dict) else {"do_not_contact": True}
        if closed:
            self._where = "keys"
        return True


class _NeedMore(Exception):
    """More text is needed to finish the member at the cursor."""


def history_from(scanner: HistoryScanner, bytes_read: int) -> PhoneHistory:
    """The :class:`PhoneHistory` of a finished scan."""
    return PhoneHistory(
        entries={number: PhoneHistoryEntry.model_validate(entry) for number, entry in scanner.found.items()},
        numbers_scanned=scanner.scanned,
        chunks_read=scanner.chunks,
        bytes_read=bytes_read,
        max_buffered_chars=scanner.max_buffered,
    )
