"""Place one call order from a DAG, never twice, then wait for it as ``RevoxCallSensor`` does."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Context, PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferralTimeout,
)
from airflow.triggers.base import BaseTrigger

from airflow_provider_revox._internal.client.requests import place_call_body
from airflow_provider_revox._internal.core import compat, durable
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.operators import gate
from airflow_provider_revox._internal.operators.placed import (
    KILL_LOCK,
    ambiguous,
    cancel_owned,
    check_search_lag,
    find_by_key,
    find_in_flight,
    gave_up,
)
from airflow_provider_revox._internal.sensors.base import RevoxWaitSensor
from airflow_provider_revox._internal.sensors.call import CallWait
from airflow_provider_revox._internal.sensors.links import RevoxCallLink
from airflow_provider_revox._internal.waiting.ids import is_templated
from airflow_provider_revox.exceptions import (
    RevoxError,
    RevoxInvalidRequestError,
    RevoxPlacementUnknownError,
)

#: Where the placed order's id is kept in the task state store (Airflow 3.3+), per idempotency key.
STATE_KEY = "revox_call_id"
#: When (UTC, ISO 8601) a POST that may have placed the order failed, kept per idempotency key.
UNCERTAIN_KEY = "revox_uncertain_post_at"
#: How long a search may lag a placement, on the API's clock: until then, not finding the order
#: proves nothing.
SEARCH_LAG = timedelta(minutes=15)


def _now(hook: RevoxHook) -> datetime:  # replaced by tests: the clock the search lag is measured on
    # The API's clock (as its responses report it, else the local one): the lag is the API's.
    return hook.server_clock.now()


class RevoxPlaceCallOperator(RevoxWaitSensor):
    """Place one Revox call order, then (by default) wait for it exactly as ``RevoxCallSensor``.

    The wait is the one :class:`~airflow_provider_revox.sensors.revox.RevoxCallSensor` runs,
    composed into this operator rather than inherited: the same poke, reschedule and deferrable
    modes (Airflow's sensor base gives the reschedule mode), the same trigger, the same summary.

    **Never twice, never the wrong order.** Each placement carries an idempotency key in its
    ``metadata`` (under ``airflow_idempotency_key``; derived from the dag id, task id, run id and
    map index, or ``idempotency_key``) and the identity of the task that placed it (under
    ``airflow_task``: ``"<dag_id>/<task_id>"``). A key identifies a placement within its task:
    an order of another DAG under the same key is never reattached to, unless
    ``idempotency_scope="shared"`` says the key is meant to be shared across DAGs. On Airflow
    3.3+ the placed order's id goes into the task state store
    before any wait, and a retry (or a reschedule poke) reattaches to it. Where there is no store
    (Airflow 3.2), where the worker died between the ``POST`` and storing the id, or where the
    ``POST`` failed after it may have reached Revox, the operator first searches the orders to
    the same number (and assistant) for its key. If that search cannot be done, it fails with
    :class:`~airflow_provider_revox.exceptions.RevoxPlacementUnknownError` rather than risk
    calling the person twice.

    **Cancelled on kill and on timeout.** With ``cancel_on_kill`` (the default) a killed task
    cancels the order it placed, in the worker (``on_kill``) and, when deferred, in the triggerer
    (Airflow 3.3); a kill while the ``POST`` is unanswered looks for the order by its key, and
    cancels it when the answer arrives after all. With ``cancel_on_timeout`` (the default) a wait
    that gives up (``timeout``, the derived deadline, the deferral's timeout) or a task that runs
    past its ``execution_timeout`` cancels the order before the task fails, so no one is dialled
    for a task that no longer waits; ``cancel_on_timeout=False`` leaves the order to ring, also on
    ``execution_timeout``. Only an order carrying this task's identity is ever cancelled.

    **Do-not-contact gate.** Before placing, the task reads the organisation's phone history once
    (``GET /calls/phone-history``, streamed). A number marked ``do_not_contact`` is never dialled
    unless ``dial_do_not_contact=True`` (a warning is logged); ``skip_reached_human_within_days``
    and ``skip_called_within_hours`` skip numbers reached or called recently. A skipped number
    places no order and the task ends as **skipped** (``AirflowSkipException``, the reason in its
    message): downstream tasks skip too under the default trigger rule. A history that cannot be
    read whole fails the task with
    :class:`~airflow_provider_revox.exceptions.RevoxPhoneHistoryError` and places nothing.

    Every argument is checked before any request (a named
    :class:`~airflow_provider_revox.exceptions.RevoxInvalidRequestError`); literal values are
    checked when the DAG is parsed.

    Args:
        phone_number: the recipient, a valid E.164 number such as ``+33612345678`` (templated).
        assistant_id: the assistant; exactly one of it and ``assistant`` (templated).
        assistant: an inline assistant configuration (templated).
        metadata: strings kept with the order (templated); the idempotency key is added.
        prompt_variables: strings interpolated into the prompt (templated).
        scheduled_at: when to start: a timezone-aware datetime or ISO 8601 string (templated).
        from_phone_number: the caller id, E.164 (templated).
        skip_calling_window: dial outside the calling window (templated; a bool).
        concurrency_key: orders sharing it share a server-side concurrency limit (templated).
        idempotency_key: replaces the derived key, e.g. to keep one order across dag runs
            (templated).
        idempotency_scope: ``"task"`` (default): the key identifies a placement of this task of
            this DAG; ``"shared"``: any DAG placing under the same key, number and assistant
            reattaches to the same order.
        wait_for_completion: wait for the order to end (default); False returns its id at once.
        cancel_on_kill: cancel the order when the task is killed.
        cancel_on_timeout: cancel the order when the wait gives up or ``execution_timeout`` ends
            the task.
        dial_do_not_contact: dial the number even when it is marked do-not-contact.
        skip_reached_human_within_days: skip a number a person answered within this many days.
        skip_called_within_hours: skip a number called within this many hours.
        **kwargs: what ``RevoxCallSensor`` takes besides ``call_id`` (``revox_conn_id``,
            ``deferrable``, ``poke_interval``, ``timeout``, ``fail_on_statuses``, ``mode``, ...).
    """

    template_fields: Sequence[str] = (
        "phone_number",
        "assistant_id",
        "assistant",
        "metadata",
        "prompt_variables",
        "scheduled_at",
        "from_phone_number",
        "skip_calling_window",
        "concurrency_key",
        "idempotency_key",
        "revox_conn_id",
    )
    template_fields_renderers = {"assistant": "json", "metadata": "json", "prompt_variables": "json"}
    ui_color = "#ffc2d9"
    operator_extra_links = (RevoxCallLink(),)

    def __init__(
        self,
        *,
        phone_number: str,
        assistant_id: str | None = None,
        assistant: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        prompt_variables: Mapping[str, str] | None = None,
        scheduled_at: datetime | str | None = None,
        from_phone_number: str | None = None,
        skip_calling_window: bool | None = None,
        concurrency_key: str | None = None,
        idempotency_key: str | None = None,
        idempotency_scope: str = durable.SCOPE_TASK,
        wait_for_completion: bool = True,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        dial_do_not_contact: bool = False,
        skip_reached_human_within_days: float | None = None,
        skip_called_within_hours: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.contact_policy = gate.policy(
            dial_do_not_contact=dial_do_not_contact,
            skip_reached_human_within_days=skip_reached_human_within_days,
            skip_called_within_hours=skip_called_within_hours,
            task_id=self.task_id,
        )
        #: The order's id, once placed (or found) by this task instance.
        self.call_id = ""
        self.idempotency_scope = durable.check_scope(idempotency_scope)
        self.cancel_on_timeout = cancel_on_timeout
        # "<dag_id>/<task_id>" of the running task, read from its context.
        self._identity = ""
        # False for an order of another task reattached to under the shared scope: never cancelled.
        self._owned = True
        self._waiting: CallWait | None = None
        self._state_key = STATE_KEY
        # The arguments of a POST /call sent and not yet answered (its id unknown).
        self._in_flight: Mapping[str, Any] | None = None
        # Killed; a cancel for the kill claimed (once); ended by execution_timeout (see on_kill).
        self._killed = self._kill_cancel_claimed = self._timed_out = False
        self.phone_number = phone_number
        self.assistant_id = assistant_id
        self.assistant = assistant
        self.metadata = metadata
        self.prompt_variables = prompt_variables
        self.scheduled_at = scheduled_at
        self.from_phone_number = from_phone_number
        self.skip_calling_window = skip_calling_window
        self.concurrency_key = concurrency_key
        self.idempotency_key = idempotency_key
        self.wait_for_completion = wait_for_completion
        self.cancel_on_kill = cancel_on_kill
        fields = (phone_number, assistant_id, assistant, metadata, prompt_variables, scheduled_at,
                  from_phone_number, skip_calling_window, concurrency_key)  # fmt: skip
        if not any(is_templated(value) for value in fields):
            self._request(None)  # literal values: report a bad one when the DAG is parsed

    # -- the request --------------------------------------------------------------------------

    def _request(self, key: str | None) -> dict[str, Any]:
        """The ``place_call`` arguments, checked; ``key`` goes into the metadata."""
        metadata = dict(self.metadata) if isinstance(self.metadata, Mapping) else self.metadata
        if isinstance(metadata, dict) and durable.METADATA_KEY in metadata:
            raise RevoxInvalidRequestError(
                f"metadata[{durable.METADATA_KEY!r}] is reserved for the idempotency key; "
                "pass idempotency_key= to choose it",
                field="metadata",
            )
        if isinstance(metadata, dict) and durable.OWNER_KEY in metadata:
            raise RevoxInvalidRequestError(
                f"metadata[{durable.OWNER_KEY!r}] is reserved for the identity of the placing task",
                field="metadata",
            )
        if key is not None:
            metadata = {**(metadata or {}), durable.METADATA_KEY: key, durable.OWNER_KEY: self._identity}
        arguments = {
            "phone_number": self.phone_number,
            "assistant_id": self.assistant_id,
            "assistant": self.assistant,
            "metadata": metadata,
            "prompt_variables": self.prompt_variables,
            "scheduled_at": self.scheduled_at,
            "from_phone_number": self.from_phone_number,
            "skip_calling_window": self.skip_calling_window,
            "concurrency_key": self.concurrency_key,
        }
        place_call_body(**arguments)
        return arguments

    # -- run ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Make sure the order is placed (once), then wait for it, or return its id."""
        try:
            return self._execute(context)
        except AirflowTaskTimeout:
            self._ran_out()
            raise

    def _execute(self, context: Context) -> Any:
        self._identity = durable.task_identity(context)
        arguments = self._request(durable.idempotency_key(context, self.idempotency_key))
        try:
            self.call_id = self._placed(context, arguments)
        except BaseException:
            self.hook.close()
            raise
        if self.wait_for_completion:
            try:
                return self._wait().execute(
                    context,
                    cancel_on_kill=self.cancel_on_kill and self._owned,
                    # A wait that gives up resumes here, where cancel_on_timeout cancels the order.
                    resume_on_timeout=self.cancel_on_timeout,
                )
            except (AirflowSensorTimeout, TaskDeferralTimeout, AirflowSkipException) as error:
                if gave_up(error):
                    self._cancel_on_timeout()
                raise
        try:
            RevoxCallLink.persist(context, call_id=self.call_id, base_url=self.hook.base_url)
        finally:
            self.hook.close()
        return self.call_id

    def _placed(self, context: Context, arguments: dict[str, Any]) -> str:
        """The id of this task instance's order: stored, found by its key, or placed now."""
        key = arguments["metadata"][durable.METADATA_KEY]
        state = durable.TaskState(context)
        state.note_missing(
            self.log,
            "each try first searches the orders to the same number for this task's idempotency key "
            f"{key}, and reattaches to the order it finds",
        )
        # Scoped by the key: a clear with a new idempotency_key never reattaches to the old order.
        self._state_key = durable.scoped_key(STATE_KEY, key)
        stored = state.get(self._state_key)
        if stored:
            self.log.info("Reattaching to call %s, placed by an earlier try of this task", stored)
            return stored
        if not state.available or context["ti"].try_number > 1:
            found = self._find(arguments)
            if found is not None:
                return self._keep(state, found, "found by its idempotency key: reattaching to it")
            # An earlier try's POST may have placed the order, and a search may lag a placement.
            uncertain = state.get(durable.scoped_key(UNCERTAIN_KEY, key))
            check_search_lag(uncertain, _now(self.hook), SEARCH_LAG, key)
        self._gate(arguments["phone_number"])
        self._in_flight = arguments  # a kill before the answer finds the order by its key
        try:
            call = self.hook.place_call(**arguments)
        except RevoxError as error:
            if not ambiguous(error):
                raise
            self.log.warning("Placing the call may have reached Revox (%s); looking for it", error)
            found = self._find(arguments)
            if found is not None:
                return self._keep(state, found, "placed after all: reattaching to it")
            state.set(durable.scoped_key(UNCERTAIN_KEY, key), _now(self.hook).isoformat())
            raise RevoxPlacementUnknownError(
                f"Placing the call failed after it may have reached Revox ({error}) and no order "
                f"with idempotency key {key} is visible yet. None is placed again now; the "
                "task's next try searches again before placing anything."
            ) from error
        return self._keep(state, call.id, "placed")

    def _gate(self, number: str) -> None:
        """Skip the task, placing nothing, when the do-not-contact gate skips ``number``."""
        contact = {"to_phone_number": number}
        screened = gate.run(self.hook, self.log, [contact], self.contact_policy)
        for _, _, verdict in screened.skipped:
            raise AirflowSkipException(f"No call placed to {number}: {verdict.reason} ({verdict.detail})")

    def _keep(self, state: durable.TaskState, call_id: str, how: str) -> str:
        # Stored before any wait, so every later try (or reschedule poke) reattaches to it.
        state.set(self._state_key, call_id)
        self.log.info("Call %s %s (idempotency key kept in its metadata)", call_id, how)
        with KILL_LOCK:
            self.call_id, self._in_flight, killed = call_id, None, self._killed
        if killed:  # the kill came while the POST was unanswered: its id is known only now
            self._cancel_for_kill(call_id, "the task was killed while the order was being placed")
        return call_id

    def _find(self, arguments: Mapping[str, Any]) -> str | None:
        """The order already placed under this task's key (see ``find_by_key``), or None."""
        found = find_by_key(self.hook, arguments, self._identity, self.idempotency_scope, self.log)
        if found is None:
            return None
        self._owned = found.owned
        return found.call_id

    # -- the wait -----------------------------------------------------------------------------

    def _wait(self) -> CallWait:
        """The wait for the placed order, kept across the pokes of one run."""
        if self._waiting is None or self._waiting.call_id != self.call_id:
            self._waiting = CallWait(self, self.call_id)
        return self._waiting

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the placed order once and decide: done, failed, or keep waiting."""
        return self._wait().poke()

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the call tells us when it can next change.
        return self._wait().next_poke_interval(run_duration)

    def _defer_to(self, trigger: type[BaseTrigger], derived_deadline: datetime, **own: Any) -> None:
        # The trigger is told to cancel on kill (it placed the order); say so when it cannot.
        if own.get("cancel_on_kill") and not compat.has_trigger_on_kill():
            self.log.warning(
                "%s; while this task is deferred, killing it does not cancel call %s (cancel "
                "it with RevoxHook.cancel_call)",
                compat.needs_airflow_3_3("Cancelling on kill in the triggerer"),
                self.call_id,
            )
        super()._defer_to(trigger, derived_deadline, **own)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event for the order this task placed (its id read back first)."""
        self._resumed(context, event)
        return self._wait().complete(event)

    def _resumed(self, context: Context, event: dict[str, Any] | None) -> None:
        # A fresh operator resumes the task: the id is in the store, else in the event.
        self._identity = durable.task_identity(context)
        if not self.call_id:
            key = durable.idempotency_key(context, self.idempotency_key)
            stored = durable.TaskState(context).get(durable.scoped_key(STATE_KEY, key))
            self.call_id = stored or str((event or {}).get("call_id") or "")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the deferral; a wait that timed out (event or deferral timeout) cancels first."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except (AirflowSensorTimeout, TaskDeferralTimeout, AirflowSkipException) as error:
            if not gave_up(error):
                raise
            # Airflow's own deferral timeout arrives here without an event and skips the
            # trigger's on_kill: this is the last place that can stop the order ringing.
            self._resumed(context, (next_kwargs or {}).get("event"))
            if not self.call_id and self.cancel_on_timeout:
                self.call_id = self._find_own(context)
            self._cancel_on_timeout()
            raise

    def _find_own(self, context: Context) -> str:
        """This task's order found by its key (no store, no event); "" when the search cannot tell."""
        try:
            arguments = self._request(durable.idempotency_key(context, self.idempotency_key))
            return self._find(arguments) or ""
        except RevoxError as error:
            self.log.warning("The order of this task could not be looked up to cancel it: %s", error)
            return ""
        finally:
            self.hook.close()

    def _ran_out(self) -> None:
        """``execution_timeout`` ended the task: cancel its order under ``cancel_on_timeout``."""
        with KILL_LOCK:
            self._timed_out = True
            in_flight = self._in_flight if not self.call_id else None
        if in_flight is not None and self.cancel_on_timeout:  # the POST cut short: search by key
            self.call_id = find_in_flight(self.revox_conn_id, in_flight, self._identity, self.log)
        self._cancel_on_timeout("the task ran past its execution_timeout (cancel_on_timeout)")

    def _cancel_on_timeout(self, why: str = "the wait for it gave up (cancel_on_timeout)") -> None:
        if not self.cancel_on_timeout:
            self.log.warning(
                "The wait for call %s gave up; the order is left as it is (cancel_on_timeout=False)",
                self.call_id or "(unknown)",
            )
            return
        if not self.call_id:
            self.log.warning("The wait gave up, but the id of the order is unknown: nothing cancelled")
            return
        cancel_owned(self.revox_conn_id, self.call_id, self._identity, why, self.log)

    def _cancel_for_kill(self, call_id: str, why: str) -> None:
        # Once: the kill and the POST's late answer may both learn the id.
        with KILL_LOCK:
            claimed = self.cancel_on_kill and not self._kill_cancel_claimed
            self._kill_cancel_claimed = self._kill_cancel_claimed or claimed
        if claimed:  # only an order carrying this task's identity; a failure is only logged
            cancel_owned(self.revox_conn_id, call_id, self._identity, why, self.log)

    def on_kill(self) -> None:
        """Cancel the order this task placed (with ``cancel_on_kill``); a failure is only logged.

        After ``execution_timeout`` (Airflow then calls this) ``cancel_on_timeout`` has decided.
        A kill while the ``POST`` is unanswered finds the order by its key, or cancels on the answer.
        """
        with KILL_LOCK:
            self._killed = True
            call_id, in_flight = self.call_id, self._in_flight
        if not self.cancel_on_kill or self._timed_out:
            return
        if not call_id and in_flight is not None:
            found = find_in_flight(self.revox_conn_id, in_flight, self._identity, self.log)
            with KILL_LOCK:
                self.call_id = call_id = self.call_id or found
        if call_id:
            self._cancel_for_kill(call_id, "the task was killed")
