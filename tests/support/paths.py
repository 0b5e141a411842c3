"""Where the tests find the repository and their fixture files, wherever a test file lives."""

from __future__ import annotations

from pathlib import Path

#: The tests folder.
TESTS = Path(__file__).resolve().parent.parent
#: The repository.
ROOT = TESTS.parent
#: Recorded API answers.
FIXTURES = TESTS / "fixtures"
