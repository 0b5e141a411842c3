"""What keeps a placement durable across task retries: an idempotency key and the task state store.

Revox has no idempotency key of its own, so a task that places an order or creates a campaign
writes its key into the order's ``metadata`` (or the campaign's name) and, on Airflow 3.3+,
stores the id it got back in the task state store (AIP-103) before doing anything else. A retry
reads the id back and reattaches; where the store is absent, or the worker died between the
request and storing the id, the retry finds the order by its key instead of placing another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from airflow_provider_revox._internal.core import compat

#: The ``metadata`` entry (and campaign name suffix) carrying a placement's idempotency key.
METADATA_KEY = "airflow_idempotency_key"

#: The ``metadata`` entry carrying the identity (``"<dag_id>/<task_id>"``) of the task that placed an order.
OWNER_KEY = "airflow_task"

#: Longest idempotency key accepted from a user; derived keys are shorter.
MAX_KEY_LENGTH = 128

#: A key identifies a placement of one task of one DAG (the default).
SCOPE_TASK = "task"
#: A key identifies a placement across every DAG of the Revox organisation (an explicit opt-in).
SCOPE_SHARED = "shared"
SCOPES = (SCOPE_TASK, SCOPE_SHARED)


def check_scope(scope: Any) -> str:
    """Return ``scope`` when it is ``"task"`` or ``"shared"``.

    Raises:
        ValueError: any other value.
    """
    if scope not in SCOPES:
        raise ValueError(f"idempotency_scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return str(scope)


def task_identity(context: Mapping[str, Any]) -> str:
    """``"<dag_id>/<task_id>"`` of the running task: what its placements carry to be told apart.

    Neither a dag id nor a task id may contain ``/``, so the pair reads back unambiguously.
    """
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.task_id}"


def matches(metadata: Mapping[str, Any], key: str, identity: str, scope: str) -> bool:
    """Whether an order's ``metadata`` marks it as the placement of ``key`` for this task.

    In the ``task`` scope the order must also carry this task's identity: another DAG's order
    under the same key is a stranger's. In the ``shared`` scope the key alone decides.
    """
    if metadata.get(METADATA_KEY) != key:
        return False
    return scope == SCOPE_SHARED or metadata.get(OWNER_KEY) == identity


def idempotency_key(context: Mapping[str, Any], override: str | None = None) -> str:
    """The key naming one task instance's placement, the same on every try of it.

    Derived from the dag id, task id, run id and map index (hashed, so it is short and shows no
    run configuration); ``override`` replaces it, for a key that must be stable across runs.

    Raises:
        ValueError: an ``override`` that is not a non-empty string of at most 128 characters.
    """
    if override is not None:
        if not isinstance(override, str) or not override.strip() or len(override) > MAX_KEY_LENGTH:
            raise ValueError(
                f"idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} characters, "
                f"not {override!r}"
            )
        return override
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    if map_index is None:
        map_index = -1
    identity = f"{ti.dag_id}\x1f{ti.task_id}\x1f{context['run_id']}\x1f{map_index}"
    return "af-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def scoped_key(base: str, scope: str) -> str:
    """The task state store key ``base`` for one idempotency key (or campaign): ``"<base>:<digest>"``.

    What a try stores belongs to the key in effect: a task cleared with a new ``idempotency_key``
    finds nothing under the new one, so it never reattaches to what the old key placed, on every
    Airflow version whether or not the clear kept the task's state.
    """
    return f"{base}:{hashlib.sha256(scope.encode()).hexdigest()[:24]}"


def lag_until(uncertain: str | None, now: datetime, lag: timedelta) -> datetime | None:
    """Until when a search that finds no order proves nothing, or None once it proves absence.

    ``uncertain`` is when (ISO 8601) an earlier try's POST failed after it may have placed the
    order: a search may lag a placement by up to ``lag``, so until ``uncertain + lag`` not
    finding the order does not show that it was never placed. None also when nothing was
    uncertain (or the stored time is unreadable: it is then ignored rather than block forever).
    """
    if not uncertain:
        return None
    try:
        at = datetime.fromisoformat(uncertain)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    until = at + lag
    return until if now < until else None


class _Log(Protocol):
    """What :meth:`TaskState.note_missing` needs of a task's logger."""

    def warning(self, message: str, /, *args: Any) -> Any:
        """Log a warning."""


class TaskState:
    """The task state store of one task instance, or a note of why there is none.

    Airflow 3.3 injects ``task_state_store`` into the context; older versions do not, and then
    :attr:`available` is False, every read finds nothing and every write is dropped, so callers
    fall back to searching (and say so with :meth:`note_missing`).

    Args:
        context: the task's context.
    """

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._store: Any = compat.task_state_store(context)

    @property
    def available(self) -> bool:
        """Whether this Airflow keeps task state across retries (3.3 and later)."""
        return self._store is not None

    def note_missing(self, log: _Log, instead: str) -> None:
        """Warn, where there is no store, that a retry cannot reattach by id and what it does instead."""
        if self._store is None:
            log.warning("%s; %s", compat.needs_airflow_3_3("The task state store"), instead)

    def get(self, key: str) -> str | None:
        """The value stored under ``key`` by an earlier try, if any."""
        if self._store is None:
            return None
        value = self._store.get(key)
        return value if isinstance(value, str) and value else None

    def set(self, key: str, value: str) -> None:
        """Store ``value`` for every later try of this task instance (never expires)."""
        if self._store is None:
            return
        from airflow.sdk.execution_time.context import NEVER_EXPIRE

        self._store.set(key, value, retention=NEVER_EXPIRE)
