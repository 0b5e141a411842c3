"""The one way a test says it needs a feature of Airflow 3.3.

``make test-matrix`` runs the suites on Airflow 3.2 too. A test of what only 3.3 can do (a
retry reattaching through the task state store, a watermark in the asset state store) carries
one of these markers and is skipped there with the reason; what the provider does instead on
3.2 has tests of its own, which run on every version (on 3.3 through the ``without_*``
fixtures of ``tests/conftest.py``, on 3.2 for real).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from airflow_provider_revox._internal.core import compat


def _needs(available: Callable[[], bool], feature: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not available(), reason=compat.needs_airflow_3_3(feature))


#: For tests of a retry reattaching through the task state store.
needs_task_state_store = _needs(compat.has_task_state_store, "The task state store")
#: For tests of a watermark or cursor kept in the asset state store.
needs_asset_state_store = _needs(compat.has_asset_state_store, "The asset state store")


def _parks_awaiting_input() -> bool:
    from airflow.utils.state import TaskInstanceState

    return hasattr(TaskInstanceState, "AWAITING_INPUT")


#: For ``dag.test()`` runs of a human-in-the-loop task. From 3.3 such a task waits in
#: ``awaiting_input`` for an answer recorded in the database; 3.2 defers it, and ``dag.test()``
#: runs its trigger in-process, where the trigger's read of the answer is an unhandled request.
needs_awaiting_input = _needs(_parks_awaiting_input, "A human-in-the-loop task under dag.test()")

__all__ = ["needs_asset_state_store", "needs_awaiting_input", "needs_task_state_store"]
