"""Recording file names in an export: extensions, and names that never collide."""

from __future__ import annotations

import pytest

from airflow_provider_revox._internal.export.recordings import recording_extension, recording_path, safe_name


def test_recording_extension_from_url_then_content_then_default() -> None:
    assert recording_extension("https://cdn.example/rec/a1.MP3?sig=x") == "mp3"
    assert recording_extension("https://cdn.example/rec/a1", b"OggS\x00\x02") == "ogg"
    assert recording_extension("https://cdn.example/rec/a1", b"\x00\x00\x00\x20ftypM4A ") == "m4a"
    assert recording_extension("https://cdn.example/rec/a1", b"") == "wav"


def test_attempt_ids_that_clean_up_alike_get_their_own_files() -> None:
    url = "https://cdn.example/rec/x.wav"
    ids = ["att/1", "att_1", "att:1", "att 1", ".att_1", "att_1-"]
    paths = [recording_path("call-1", attempt_id, url) for attempt_id in ids]
    assert len(set(paths)) == len(ids)
    assert paths[1] == "recordings/call-1/att_1.wav"  # a safe id keeps its name
    assert paths[0].startswith("recordings/call-1/att_1-") and paths[0].endswith(".wav")
    assert paths == [recording_path("call-1", attempt_id, url) for attempt_id in ids]  # stable across runs


@pytest.mark.parametrize("text", ["", ".", "..", "../x", "a/b", "é", "\x00"])
def test_safe_names_are_one_plain_visible_file_name(text: str) -> None:
    name = safe_name(text)
    assert name and "/" not in name and not name.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
