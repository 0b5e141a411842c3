"""RevoxCreateCampaignOperator never reattaches to another DAG's campaign, and never takes a
listing that may be truncated as proof that its campaign does not exist.

Through a real Airflow (dag.test) and real HTTP against the simulator, whose ``GET /campaigns``
can be capped to the newest campaigns (``CampaignBook.list_limit``) as some APIs do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_revox.testing import SimulatorHandle

DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator


class OthersCreateMeanwhile(RevoxCreateCampaignOperator):
    '''Before its second try, 20 other campaigns are created: the listing's newest are theirs.'''

    def execute(self, context):
        if context["ti"].try_number == 2:
            for n in range(20):
                self.hook.create_campaign(
                    name=f"Other {{n}}", assistant_id="asst_other",
                    contacts=[{{"to_phone_number": "+33612345609", "prompt_variables": {{}}}}],
                )
        return super().execute(context)


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    {operator}(
        task_id="create", name="Reminders", assistant_id="asst_demo",
        retries={retries}, retry_delay=timedelta(seconds=0), **{kwargs}
    )

build()
"""


def create(
    run_dag: Callable[..., Any],
    dag_id: str,
    operator: str = "RevoxCreateCampaignOperator",
    retries: int = 0,
    **kwargs: Any,
) -> Any:
    source = DAG.format(dag_id=dag_id, operator=operator, retries=retries, kwargs=kwargs)
    (ti,) = run_dag(source, dag_id).get_task_instances()
    return ti


def contacts(*numbers: str) -> list[dict[str, Any]]:
    return [{"to_phone_number": number, "prompt_variables": {}} for number in numbers]


def numbers_of(sim: SimulatorHandle, campaign_id: str) -> list[str]:
    campaign = sim.engine.campaigns.campaign(campaign_id)
    return sorted(sim.get_call(call_id)["to_phone_number"] for call_id in campaign.call_ids)


def test_another_dag_with_the_same_name_and_key_creates_its_own_campaign(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    a = create(run_dag, "campaign_a", contacts=contacts("+33612345601"), idempotency_key="spring")
    b = create(run_dag, "campaign_b", contacts=contacts("+33612345602"), idempotency_key="spring")
    first, second = a.xcom_pull(task_ids="create"), b.xcom_pull(task_ids="create")
    assert (first["reattached"], second["reattached"]) == (False, False)
    assert first["campaign_id"] != second["campaign_id"]
    assert second["name"] == "Reminders [spring @ campaign_b/create]"
    # dag_b's own contacts are in its own campaign, ready to be launched.
    assert numbers_of(revox_simulator, second["campaign_id"]) == ["+33612345602"]
    assert revox_simulator.stats()["campaigns"] == 2


def test_the_shared_scope_reattaches_across_dags(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    shared = {
        "contacts": contacts("+33612345601"),
        "idempotency_key": "spring",
        "idempotency_scope": "shared",
    }
    first = create(run_dag, "shared_a", **shared).xcom_pull(task_ids="create")
    second = create(run_dag, "shared_b", **shared).xcom_pull(task_ids="create")
    assert first["campaign_id"] == second["campaign_id"] and second["reattached"] is True
    assert first["name"] == "Reminders [spring]"
    assert revox_simulator.stats()["campaigns"] == 1


def test_a_listing_that_may_be_truncated_creates_nothing_and_the_next_run_finds_it(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # The first POST is stored and its answer lost; 20 other campaigns are created before the
    # retry, and the API lists only the 20 newest: the retry cannot see its campaign.
    revox_simulator.engine.campaigns.list_limit = 20
    revox_simulator.faults.script("POST /campaigns", ["drop_after_commit"])
    arguments = {"contacts": contacts("+33612345601"), "idempotency_key": "spring"}
    ti = create(run_dag, "campaign_truncated", operator="OthersCreateMeanwhile", retries=1, **arguments)
    assert ti.state == "failed" and ti.try_number == 2
    stats = revox_simulator.stats()
    assert stats["campaigns"] == 21 and stats["by_endpoint"]["POST /campaigns"] == 21  # ours once, 20 others
    logged = capsys.readouterr().out
    assert "RevoxPlacementUnknownError" in logged
    assert (
        "Cannot tell whether campaign 'Reminders [spring @ campaign_truncated/create]' exists already: "
        "GET /campaigns returned 20 campaigns (list_limit=20)"
    ) in logged
    # Once the listing shows it, the next run reattaches to that campaign and creates nothing.
    revox_simulator.engine.campaigns.list_limit = None
    again = create(run_dag, "campaign_truncated", **arguments)
    result = again.xcom_pull(task_ids="create")
    assert again.state == "success" and result["reattached"] is True
    assert numbers_of(revox_simulator, result["campaign_id"]) == ["+33612345601"]
    assert revox_simulator.stats()["campaigns"] == 21


def test_a_first_try_with_a_derived_key_creates_even_when_the_listing_is_full(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    # Nothing can exist under a key derived from this run before its first try: a full listing
    # proves nothing either way, and nothing needs proving.
    revox_simulator.engine.campaigns.list_limit = 2
    for n in range(2):
        revox_simulator.engine.campaigns.create(
            name=f"Other {n}", assistant_id="a", contacts=contacts("+33612345609")
        )
    ti = create(run_dag, "campaign_full_listing", contacts=contacts("+33612345601"), list_limit=2)
    assert ti.state == "success" and ti.xcom_pull(task_ids="create")["reattached"] is False
    assert revox_simulator.stats()["campaigns"] == 3


def test_list_limit_is_checked() -> None:
    from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator

    for bad in (0, -1, True, "20"):
        with pytest.raises(ValueError, match="list_limit"):
            RevoxCreateCampaignOperator(task_id="c", name="n", assistant_id="a", contacts=[], list_limit=bad)
