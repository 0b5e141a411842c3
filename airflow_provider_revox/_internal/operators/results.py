"""The operator that fetches one call order's results into XCom."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.redact import redact, redact_text
from airflow_provider_revox._internal.export.fetch import Sleep, fetch_call
from airflow_provider_revox._internal.export.tables import check_transcript_source, transcript_turns
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.operators.lineage import Lineage, call_read, openlineage_facets
from airflow_provider_revox._internal.sensors.links import RevoxCallLink
from airflow_provider_revox._internal.waiting.ids import holds_template, one_call_id
from airflow_provider_revox._internal.waiting.outcome import describe_end

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


class RevoxCallResultsOperator(BaseOperator):
    """Fetch one call order's results into XCom: transcript, structured output and a summary.

    Pushes the XCom keys ``transcript`` (a list of turns with ``attempt_id``, ``turn_index``,
    ``role``, ``content``, ``tool_name``, ``tool_arguments``, ``tool_is_error``; oldest attempt
    first) and ``structured_output`` (a mapping), and returns a summary with ``call_id``,
    ``status``, ``outcome``, ``structured_output`` and ``turns`` (the number of turns).
    Everything is redacted: credentials in the call never reach XCom. Stores the "Revox call"
    extra link.

    Args:
        call_id: the call order (templated): an id, or what an upstream task hands over (a
            placement's or sensor's summary with ``call_id``, a list of one, an XComArg).
        revox_conn_id: the ``revox`` connection.
        transcript_source: ``"best"`` (each attempt's post-call transcript when present, else
            its live one), ``"live"`` or ``"post_call"``.
        require_completed: fail (without retries) when the order's status is not ``completed``.
        sleep: how to pause between fetch rounds after transient failures (tests pass a no-op).
        **kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    """

    template_fields: Sequence[str] = ("call_id", "revox_conn_id")
    operator_extra_links = (RevoxCallLink(),)
    ui_color = "#e8f1fe"

    def __init__(
        self,
        *,
        call_id: Any,
        revox_conn_id: str = RevoxHook.default_conn_name,
        transcript_source: str = "best",
        require_completed: bool = True,
        sleep: Sleep = time.sleep,
        **kwargs: Any,
    ) -> None:
        """Check the arguments that are known before templates render."""
        super().__init__(**kwargs)
        if not holds_template(call_id):
            one_call_id(call_id)  # a literal id (or summary): report a bad one when the DAG is parsed
        self.call_id = call_id
        self.revox_conn_id = revox_conn_id
        self.transcript_source = check_transcript_source(transcript_source)
        self.require_completed = require_completed
        self.sleep = sleep

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch the call, push ``transcript`` and ``structured_output``, return the summary."""
        call_id = one_call_id(self.call_id)
        with RevoxHook(self.revox_conn_id) as hook:
            secrets = hook.known_secrets()
            RevoxCallLink.persist(context, call_id=call_id, base_url=hook.base_url)
            self.revox_lineage = Lineage(inputs=(call_read(hook.base_url, call_id),))
            call = fetch_call(hook, call_id, sleep=self.sleep)
        # What the API sent may echo the connection's key or other credentials: every text
        # that leaves here (messages, XCom) goes through the one redaction.
        if self.require_completed and call.status != statuses.COMPLETED:
            message = (
                f"Revox call {call_id!r} is not completed (status {call.status!r}): {describe_end(call)}"
            )
            raise AirflowFailException(redact_text(message, secrets))
        turns = transcript_turns(call, self.transcript_source, secrets)
        output: dict[str, Any] = redact(call.result_structured_output, secrets)
        summary: dict[str, Any] = redact(
            {"call_id": call_id, "status": call.status, "outcome": call.outcome, "turns": len(turns)}, secrets
        )
        ti = context["ti"]
        ti.xcom_push(key="transcript", value=turns)
        ti.xcom_push(key="structured_output", value=output)
        self.log.info(
            "Revox call %s is %s: %d transcript turn(s), %d structured output field(s)",
            call_id,
            summary["status"],
            len(turns),
            len(output),
        )
        return {**summary, "structured_output": output}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        """OpenLineage's view of the run: the call read as input; no outputs (XCom is no dataset).

        None without the OpenLineage provider.
        """
        return openlineage_facets(getattr(self, "revox_lineage", None))
