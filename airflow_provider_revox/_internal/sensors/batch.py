"""The sensor that waits for a batch of Revox call orders (re-exported by ``sensors.revox``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from airflow.sdk import Context, ObjectStoragePath, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.redact import redact, redact_message, redact_text
from airflow_provider_revox._internal.export.ids_file import (
    DEFAULT_MAX_IDS_IN_XCOM,
    check_capacity,
    ids_go_to_file,
    ids_target,
    validate_max_ids,
    write_ids_file,
)
from airflow_provider_revox._internal.hooks.poller import CallPoller
from airflow_provider_revox._internal.sensors.base import RevoxWaitSensor
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.batch import (
    Fleet,
    settled_from_codes,
    validate_concurrency,
    validate_ratio,
)
from airflow_provider_revox._internal.waiting.ids import batch_call_ids, is_templated
from airflow_provider_revox._internal.waiting.outcome import (
    describe_fetch_errors,
    describe_success,
    describe_timeout,
    fail_or_skip,
    read_event,
)

_T = TypeVar("_T")


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # asyncio.run refuses to nest: give the coroutine its own loop on a short-lived thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class RevoxCallsSensor(RevoxWaitSensor):
    """Wait until every call order of a batch is settled, with enough of them completed.

    Each order is polled on its own schedule (calling windows, retry delay, the next planned
    attempt) from one heap of due times, so an order waiting for tomorrow's calling window costs nothing
    while others ring now; due orders are fetched a hundred per ``POST /call/search``, at most
    ``max_concurrency`` requests at a time.
    An order in ``fail_on_statuses`` is *failed*: it counts against the completed ratio but does
    not end the wait, unless ``min_completed_ratio`` can no longer be met: then the task fails
    at once, without retries, naming the failed ids (``soft_fail=True`` skips it instead). The
    wait succeeds when every order is settled and ``completed / total``
    meets ``min_completed_ratio``, and returns a result that
    :class:`~airflow_provider_revox.operators.revox.RevoxCallsToStorageOperator` takes as is::

        {"total": 3, "counts": {"completed": 2, "errored": 1}, "completed": ["c1", "c2"],
         "failed": ["c3"], "completed_ratio": 0.667}

    A wait on more than ``max_ids_in_xcom`` orders writes those id lists to one JSON file at
    ``ids_path`` instead, and returns counts, the first failed ids and the file's URI and
    sha256; the export reads the ids from
    there. Without ``ids_path`` such a wait is refused before any request.

    With ``timeout=None`` the wait gives up at the latest deadline
    (the latest time an order can plausibly end under its retry policy, plus one hour) among
    the pending orders,
    recomputed as they progress, or an hour after the task first started while none has
    answered. An order whose fetch fails transiently (the hook's retries spent) is tried again
    later, the pause doubling while failures go on; an unknown id or a rejected key fails the
    task, naming the ids. One order whose values defeat the schedule is polled every
    ``poke_interval`` and never ends the others' wait.

    Poke and reschedule modes run the same async poll round as the trigger, on a short event
    loop per poke (one code path for both, and no thread-safety questions about the hook);
    reschedule mode starts each poke from scratch, so it re-fetches every order: prefer
    ``deferrable=True`` for large batches.

    Args:
        call_ids: the orders (templated): an id, a list of ids, or an XComArg resolving to a
            list of ids or of mappings with ``call_id`` (placement or sensor summaries); the text
            of a list is refused with how to pass the list itself. Repeated ids are waited on once.
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to the triggerer instead of holding a worker slot.
        poke_interval: seconds between polls while an order can change at any moment.
        timeout: an explicit limit (seconds or timedelta) that overrides the derived deadline.
        fail_on_statuses: statuses that make an order failed.
        min_completed_ratio: share of orders (0 to 1) that must be ``completed``.
        max_concurrency: most requests in flight at once.
        ids_path: where the id lists go when there are more than ``max_ids_in_xcom`` orders
            (templated): a file URI (``s3://bucket/revox/{{ run_id }}/ids.json``, ``file:///...``)
            or an :class:`~airflow.sdk.ObjectStoragePath`. Written whole, ids and counts only.
        max_ids_in_xcom: most orders whose ids the result lists in XCom (default 1,000);
            None for no limit.
        **kwargs: the shared settings above and :class:`~airflow.sdk.BaseSensorOperator`'s.
    """

    template_fields: Sequence[str] = ("call_ids", "revox_conn_id", "ids_path")
    ui_color = "#ffd6e7"

    def __init__(
        self,
        *,
        call_ids: Any,
        min_completed_ratio: float = 1.0,
        max_concurrency: int = 16,
        ids_path: str | ObjectStoragePath | None = None,
        max_ids_in_xcom: int | None = DEFAULT_MAX_IDS_IN_XCOM,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.call_ids = call_ids
        self.min_completed_ratio = validate_ratio(min_completed_ratio)
        self.max_concurrency = validate_concurrency(max_concurrency)
        self.ids_path = ids_path
        self.max_ids_in_xcom = validate_max_ids(max_ids_in_xcom)
        literal = [call_ids] if isinstance(call_ids, str) else call_ids
        if isinstance(literal, list | tuple) and not any(is_templated(item) for item in literal):
            # A literal list: report a bad id, or too many without ids_path, when the DAG is parsed.
            check_capacity(len(batch_call_ids(call_ids)), self.max_ids_in_xcom, ids_path is not None)
            if not ids_go_to_file(len(batch_call_ids(call_ids)), self.max_ids_in_xcom):
                # Ids known now and a result that fits in XCom: the trigger can end the task.
                self._start_in_triggerer(
                    "airflow_provider_revox.triggers.revox.RevoxCallsTrigger",
                    call_ids=batch_call_ids(call_ids),
                    min_completed_ratio=self.min_completed_ratio,
                    max_concurrency=self.max_concurrency,
                )
        self._round: rounds.BatchRound | None = None

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or poll once and defer."""
        ids = batch_call_ids(self.call_ids)
        if ids_go_to_file(len(ids), self.max_ids_in_xcom):
            self._ids_target()  # before any request: a wait that could not deliver never starts
        self._begin(context)
        try:
            if not self.deferrable:
                try:
                    return super().execute(context)
                except AirflowSensorTimeout as exc:
                    if not self.explicit_timeout or self._round is None:
                        raise
                    raise AirflowSensorTimeout(f"{exc} {self._round.fleet.describe_pending()}") from exc
            fleet = self._poll(ids)
            done = self._check(fleet)
            if done is not None:
                return done
            # The trigger module is needed only when the wait is handed to the triggerer.
            from airflow_provider_revox._internal.triggers.call import RevoxCallsTrigger

            self._defer_to(
                RevoxCallsTrigger,
                self._limit(fleet),
                call_ids=ids,
                min_completed_ratio=self.min_completed_ratio,
                max_concurrency=self.max_concurrency,
                settled=fleet.settled_by_status(),
                # A result whose id lists go to a file is written on the worker, on resume.
                **({} if ids_go_to_file(len(ids), self.max_ids_in_xcom) else self._ends_in_triggerer()),
            )
        finally:
            self.hook.close()

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the due orders once and decide: done, failed, or keep waiting."""
        fleet = self._poll(batch_call_ids(self.call_ids))
        done = self._check(fleet)
        if done is not None:
            return PokeReturnValue(is_done=True, xcom_value=done)
        if not self.explicit_timeout:
            limit = self._limit(fleet)
            if self.hook.server_clock.now() >= limit:
                raise AirflowSensorTimeout(describe_timeout(fleet, limit))
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event, fail-closed: a missing, unknown or inconsistent event fails the task."""
        ids = batch_call_ids(self.call_ids)
        payload = read_event(
            event,
            trigger="RevoxCallsTrigger",
            what=f"{len(ids)} call orders",
            payload_key="result",
            payload_ok=lambda result: self._event_result(result, ids) is not None,
            soft_fail=self.soft_fail,
        )
        self.log.info("%s", redact_message(str((event or {}).get("message") or ""), self._secrets()))
        return self._deliver(cast(dict[str, Any], self._event_result(payload, ids)))

    def _event_result(self, result: Any, ids: list[str]) -> dict[str, Any] | None:
        """The full result of a success event, or None when it does not check out."""
        if not (isinstance(result, dict) and "codes" in result):
            # An event of a trigger from before compact results carried the id lists.
            return result if self._result_ok(result, ids) else None
        try:
            settled = settled_from_codes(ids, result)
            ratio = self.min_completed_ratio
            fleet = Fleet(ids, fail_on=self.fail_on_statuses, min_completed_ratio=ratio, settled=settled)
        except ValueError:
            return None
        return fleet.result() if fleet.verdict() == statuses.SUCCESS else None

    def _result_ok(self, result: Any, ids: list[str]) -> bool:
        """A success result with id lists must cover exactly these orders and meet the ratio."""
        if not isinstance(result, dict) or result.get("total") != len(ids):
            return False
        completed, failed, counts = result.get("completed"), result.get("failed"), result.get("counts")
        if not (isinstance(completed, list) and isinstance(failed, list) and isinstance(counts, dict)):
            return False
        known = set(ids)
        if not known.issuperset(completed) or not known.issuperset(failed):
            return False
        if sum(n for n in counts.values() if isinstance(n, int)) != len(ids):
            return False
        return len(completed) >= Fleet(ids, min_completed_ratio=self.min_completed_ratio).needed

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the heap says when the next order is due.
        state = self._round
        due = state.fleet.next_due() if state is not None else None
        if state is None or due is None:
            return super()._get_next_poke_interval(started_at, run_duration, poke_count)
        fleet = state.fleet
        now = self.hook.server_clock.now()
        wake = datetime.fromtimestamp(due, timezone.utc)
        limit = self._limit(fleet)
        interval = self._interval(now, wake, limit, run_duration())
        self.log.info(
            "%d of %d call orders settled (%s); next check in %.0f s, when the next order is due; "
            "gives up at %s%s",
            fleet.total - fleet.pending,
            fleet.total,
            fleet.counts(),
            interval,
            rounds.utc_text(limit),
            rounds.clock_note(self.hook.server_clock.speed),
        )
        return interval

    def _poll(self, ids: list[str]) -> Fleet:
        """One poll round over the due orders; the fleet lives as long as this task instance."""
        if self._round is None or self._round.fleet.call_ids != tuple(ids):
            fleet = Fleet(ids, fail_on=self.fail_on_statuses, min_completed_ratio=self.min_completed_ratio)
            self._round = rounds.BatchRound(fleet, poke_interval=self.poke_interval, log=self.log)
        state = self._round
        hook = self.hook

        async def one_round() -> list[str]:
            poller = CallPoller(hook)
            try:
                return await rounds.poll_due(poller, state, max_concurrency=self.max_concurrency)
            finally:
                # The async client belongs to this round's event loop, which ends with it.
                await poller.aclose()

        state.secrets = state.secrets or self._secrets()
        errors = _run_async(one_round)
        if errors:
            raise AirflowException(describe_fetch_errors(errors, state.secrets))
        return state.fleet

    def _check(self, fleet: Fleet) -> dict[str, Any] | None:
        """The result when the wait is over, None to keep waiting; raises when it cannot succeed."""
        verdict = fleet.verdict()
        if verdict == statuses.FAILED:
            fail_or_skip(self.soft_fail, fleet.describe_unreachable())
        if verdict == statuses.SUCCESS:
            self.log.info("%s", describe_success(fleet))
            return self._deliver(fleet.result())
        return None

    def _ids_target(self) -> ObjectStoragePath:
        """Where the id lists go; refuses a wait above ``max_ids_in_xcom`` without ``ids_path``.

        Raises:
            RevoxConfigError: naming the problem, before any request.
        """
        return ids_target(self.ids_path, len(batch_call_ids(self.call_ids)), self.max_ids_in_xcom)

    def _deliver(self, result: dict[str, Any]) -> dict[str, Any]:
        """The XCom value: the redacted result, or a small one whose id lists went to ``ids_path``."""
        cleaned = cast(dict[str, Any], redact(result, self._secrets()))
        if not ids_go_to_file(cleaned["total"], self.max_ids_in_xcom):
            return cleaned
        path = self._ids_target()
        small = write_ids_file(path, cleaned)
        shown = redact_text(str(path))
        self.log.info("Wrote the completed and failed ids of %d call orders to %s", cleaned["total"], shown)
        return small

    def _limit(self, fleet: Fleet) -> datetime:
        """The derived deadline (server time); an hour after the task first started while no order answers."""
        limit = rounds.fleet_limit(fleet, self._unread_limit(), fixed=False)
        return limit if limit is not None else self._unread_limit()
