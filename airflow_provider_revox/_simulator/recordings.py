"""Deterministic WAV recordings served behind presigned URLs.

A recording is 8 kHz, 8-bit mono PCM: a soft two-tone pattern picked from the
attempt id, as long as the call (between :data:`MIN_SECONDS` and
:data:`MAX_SECONDS`), so bodies weigh tens to a couple of hundred KB.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator
from functools import lru_cache

SAMPLE_RATE = 8000
MIN_SECONDS = 4.0
MAX_SECONDS = 30.0
CHUNK_SIZE = 16 * 1024
HEADER_SIZE = 44


def recording_length(talk_seconds: float) -> int:
    """Total size in bytes (header included) of the recording of a call that lasted ``talk_seconds``."""
    seconds = min(max(talk_seconds, MIN_SECONDS), MAX_SECONDS)
    return HEADER_SIZE + int(seconds * SAMPLE_RATE)


def wav_header(data_size: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header for 8 kHz, 8-bit mono PCM."""
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_size),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8),
            b"data",
            struct.pack("<I", data_size),
        )
    )


@lru_cache(maxsize=64)
def _second_of_audio(tone: int) -> bytes:
    """One second of samples; every recording repeats one of a few such blocks."""
    low, high = 300 + 40 * tone, 450 + 55 * tone
    return bytes(
        int(
            128
            + 30 * math.sin(2 * math.pi * low * i / SAMPLE_RATE)
            + 20 * math.sin(2 * math.pi * high * i / SAMPLE_RATE)
        )
        for i in range(SAMPLE_RATE)
    )


def recording_chunks(attempt_id: str, talk_seconds: float, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the WAV body of an attempt's recording in chunks of at most ``chunk_size`` bytes."""
    total = recording_length(talk_seconds)
    data_size = total - HEADER_SIZE
    tone = hashlib.sha256(attempt_id.encode()).digest()[0] % 8
    block = _second_of_audio(tone)
    yield wav_header(data_size)
    sent = 0
    while sent < data_size:
        size = min(chunk_size, data_size - sent)
        start = sent % len(block)
        yield (block * (size // len(block) + 2))[start : start + size]
        sent += size
