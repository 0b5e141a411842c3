"""The "Revox call" extra link of sensors and operators: a task instance to its call in the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_provider_revox._internal.core.dashboard import (
    DEFAULT_DASHBOARD as DEFAULT_DASHBOARD,
)
from airflow_provider_revox._internal.core.dashboard import LINK_XCOM_KEY, RESOLVED_LINK_XCOM_KEY
from airflow_provider_revox._internal.core.dashboard import call_dashboard_url as call_dashboard_url
from airflow_provider_revox._internal.core.dashboard import dashboard_origin as dashboard_origin

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class RevoxCallLink(BaseOperatorLink):
    """Extra link "Revox call": opens the call order a task worked on in the Revox dashboard.

    The task stores the URL with :meth:`persist` while it runs; the link reads it back from XCom,
    so it works for mapped tasks and shows nothing for a task that never reached a call.
    """

    name: ClassVar[str] = "Revox call"
    key: ClassVar[str] = LINK_XCOM_KEY

    @property
    def xcom_key(self) -> str:
        """Where Airflow stores the resolved URL: pinned, as the triggers write it there too."""
        return RESOLVED_LINK_XCOM_KEY

    @classmethod
    def persist(cls, context: Context, *, call_id: str, base_url: str | None) -> str:
        """Store the dashboard URL of ``call_id`` for this task instance; return the URL.

        Args:
            context: the task's execution context.
            call_id: the call order's id.
            base_url: the API base URL of the Revox connection (``RevoxHook.base_url``).
        """
        url = call_dashboard_url(call_id, base_url)
        context["ti"].xcom_push(key=cls.key, value={"call_id": call_id, "url": url})
        return url

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The stored dashboard URL, or an empty string when the task stored none."""
        value: Any = XCom.get_value(ti_key=ti_key, key=self.key)
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            return str(value["url"])
        return ""
