"""The campaign endpoints of :class:`~airflow_provider_revox._internal.hooks.revox.RevoxHook`, sync and async.

Each request is checked before it leaves (:mod:`airflow_provider_revox._internal.core.campaign`), so bad input
fails with a named :class:`~airflow_provider_revox.exceptions.RevoxConfigError` and nothing is
sent. Creating and launching a campaign may have reached the server when a timeout or a dropped
connection hides the answer, so they are only resent when the request surely was not received
(connection refused, 429); cancel, pause and resume change nothing the second time and are
retried like a GET.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.core import campaign as shapes
from airflow_provider_revox._internal.core.call import RevoxModel
from airflow_provider_revox._internal.core.campaign import (
    Campaign,
    CampaignOptions,
    CampaignRow,
    CampaignStatistics,
    LaunchResult,
    validate_campaign_id,
)
from airflow_provider_revox._internal.hooks.base import HookCore
from airflow_provider_revox.exceptions import RevoxResponseError

if TYPE_CHECKING:  # annotations only: typing.Unpack needs Python 3.11
    from typing_extensions import Unpack

CAMPAIGNS_ENDPOINT = "campaigns"
CAMPAIGN_ENDPOINT = "campaigns/{campaign_id}"
CAMPAIGN_ROWS_ENDPOINT = "campaigns/{campaign_id}/rows"
CAMPAIGN_STATISTICS_ENDPOINT = "campaigns/{campaign_id}/statistics"
LAUNCH_CAMPAIGN_ENDPOINT = "campaigns/{campaign_id}/launch-calls"
CANCEL_CAMPAIGN_ENDPOINT = "campaigns/{campaign_id}/cancel"
PAUSE_CAMPAIGN_ENDPOINT = "campaigns/{campaign_id}/pause"
RESUME_CAMPAIGN_ENDPOINT = "campaigns/{campaign_id}/resume"

_Model = TypeVar("_Model", bound=RevoxModel)


def _url(endpoint: str, campaign_id: str) -> str:
    return endpoint.format(campaign_id=validate_campaign_id(campaign_id))


class CampaignEndpoints(HookCore):
    """Campaign endpoints, mixed into :class:`~airflow_provider_revox._internal.hooks.revox.RevoxHook`."""

    def _body(self, response: httpx.Response, what: str, read: Any) -> Any:
        """Check the status, decode the body and read it with ``read``; a bad body names ``what``."""
        self._check(response)
        payload = responses.decode_json(response, self._secrets)
        try:
            return read(payload)
        except ValueError as error:
            raise RevoxResponseError(
                f"Revox API answered HTTP {response.status_code} with a body that is not {what} "
                f"({error}): {responses.excerpt(response, self._secrets)}",
                status_code=response.status_code,
            ) from None

    def _one(self, response: httpx.Response, kind: type[_Model], key: str, what: str) -> _Model:
        model: _Model = self._body(response, what, lambda payload: shapes.parse(kind, payload, key))
        return model

    def _campaigns(self, response: httpx.Response) -> list[Campaign]:
        return list(
            self._body(response, "a list of campaigns", lambda p: shapes.parse_list(Campaign, p, "campaigns"))
        )

    def _rows(self, response: httpx.Response) -> list[CampaignRow]:
        return list(
            self._body(
                response, "a list of campaign rows", lambda p: shapes.parse_list(CampaignRow, p, "rows")
            )
        )

    def _success(self, response: httpx.Response) -> bool:
        return bool(
            self._body(
                response, "an acknowledgement", lambda p: isinstance(p, dict) and p.get("success") is True
            )
        )

    # -- create and launch: never resent once they may have arrived ----------------------------

    def create_campaign(
        self,
        *,
        name: str,
        assistant_id: str,
        contacts: Sequence[Mapping[str, Any]],
        **options: Unpack[CampaignOptions],
    ) -> Campaign:
        """Create a campaign (``POST /campaigns``): every contact becomes an order in ``not_launched``.

        Nothing is dialled until :meth:`launch_campaign`. ``options``: ``call_retry_config``,
        ``from_phone_number`` (E.164), ``max_concurrent_calls``.

        Raises:
            RevoxConfigError: an empty name or assistant id, no contacts, a contact whose
                ``to_phone_number`` is not a valid E.164 number or whose ``prompt_variables``
                is not a string map (named by index); nothing is sent.
            RevoxApiError: the API refused it; a timeout is not retried.
        """
        body = shapes.create_body(name=name, assistant_id=assistant_id, contacts=contacts, **options)
        response = self._request("POST", CAMPAIGNS_ENDPOINT, json=body, idempotent=False)
        return self._one(response, Campaign, "campaign", "a campaign")

    async def acreate_campaign(self, **kwargs: Any) -> Campaign:
        """Async twin of :meth:`create_campaign` (same keyword arguments)."""
        body = shapes.create_body(**kwargs)
        response = await self._arequest("POST", CAMPAIGNS_ENDPOINT, json=body, idempotent=False)
        return self._one(response, Campaign, "campaign", "a campaign")

    def launch_campaign(self, campaign_id: str, **selection: Any) -> LaunchResult:
        """Start dialling a campaign's orders (``POST /campaigns/{id}/launch-calls``).

        Args:
            campaign_id: the campaign.
            **selection: ``mode`` (``ai_first``, the default, or ``speed_dial``), ``filters``
                (``statuses``, ``outcomes``, ``results``, ``directions``, ``assignee_ids``,
                ``query``), ``call_ids`` with ``rows_mode`` (``only`` or ``all_except``, the
                default), ``scheduled_at`` (ISO 8601); by default every row.

        Raises:
            RevoxConfigError: a bad id, mode or filter; nothing is sent.
        """
        url = _url(LAUNCH_CAMPAIGN_ENDPOINT, campaign_id)
        body = shapes.launch_body(**selection)
        response = self._request("POST", url, json=body, idempotent=False)
        return self._one(response, LaunchResult, "launch", "a launch result")

    async def alaunch_campaign(self, campaign_id: str, **selection: Any) -> LaunchResult:
        """Async twin of :meth:`launch_campaign`."""
        url = _url(LAUNCH_CAMPAIGN_ENDPOINT, campaign_id)
        body = shapes.launch_body(**selection)
        response = await self._arequest("POST", url, json=body, idempotent=False)
        return self._one(response, LaunchResult, "launch", "a launch result")

    # -- reads ---------------------------------------------------------------------------------

    def get_campaign(self, campaign_id: str) -> Campaign:
        """Fetch a campaign with its row and funnel stats (``GET /campaigns/{id}``)."""
        response = self._request("GET", _url(CAMPAIGN_ENDPOINT, campaign_id))
        return self._one(response, Campaign, "campaign", "a campaign")

    async def aget_campaign(self, campaign_id: str) -> Campaign:
        """Async twin of :meth:`get_campaign`."""
        response = await self._arequest("GET", _url(CAMPAIGN_ENDPOINT, campaign_id))
        return self._one(response, Campaign, "campaign", "a campaign")

    def get_campaign_rows(self, campaign_id: str) -> list[CampaignRow]:
        """Every contact row of a campaign, each with its order (``GET /campaigns/{id}/rows``)."""
        return self._rows(self._request("GET", _url(CAMPAIGN_ROWS_ENDPOINT, campaign_id)))

    async def aget_campaign_rows(self, campaign_id: str) -> list[CampaignRow]:
        """Async twin of :meth:`get_campaign_rows`."""
        return self._rows(await self._arequest("GET", _url(CAMPAIGN_ROWS_ENDPOINT, campaign_id)))

    def get_campaign_statistics(self, campaign_id: str) -> CampaignStatistics:
        """A campaign's statistics report (``GET /campaigns/{id}/statistics``)."""
        response = self._request("GET", _url(CAMPAIGN_STATISTICS_ENDPOINT, campaign_id))
        return self._one(response, CampaignStatistics, "statistics", "campaign statistics")

    async def aget_campaign_statistics(self, campaign_id: str) -> CampaignStatistics:
        """Async twin of :meth:`get_campaign_statistics`."""
        response = await self._arequest("GET", _url(CAMPAIGN_STATISTICS_ENDPOINT, campaign_id))
        return self._one(response, CampaignStatistics, "statistics", "campaign statistics")

    def list_campaigns(self) -> list[Campaign]:
        """Every campaign of the organisation (``GET /campaigns``)."""
        return self._campaigns(self._request("GET", CAMPAIGNS_ENDPOINT))

    async def alist_campaigns(self) -> list[Campaign]:
        """Async twin of :meth:`list_campaigns`."""
        return self._campaigns(await self._arequest("GET", CAMPAIGNS_ENDPOINT))

    # -- cancel, pause, resume: the same effect when repeated, so retried ------------------------

    def cancel_campaign(self, campaign_id: str) -> bool:
        """Cancel a campaign (``POST /campaigns/{id}/cancel``); True when the API confirms it."""
        return self._success(self._request("POST", _url(CANCEL_CAMPAIGN_ENDPOINT, campaign_id)))

    async def acancel_campaign(self, campaign_id: str) -> bool:
        """Async twin of :meth:`cancel_campaign`."""
        return self._success(await self._arequest("POST", _url(CANCEL_CAMPAIGN_ENDPOINT, campaign_id)))

    def pause_campaign(self, campaign_id: str) -> bool:
        """Pause every order's retry loop (``POST /campaigns/{id}/pause``); True when confirmed."""
        return self._success(self._request("POST", _url(PAUSE_CAMPAIGN_ENDPOINT, campaign_id)))

    async def apause_campaign(self, campaign_id: str) -> bool:
        """Async twin of :meth:`pause_campaign`."""
        return self._success(await self._arequest("POST", _url(PAUSE_CAMPAIGN_ENDPOINT, campaign_id)))

    def resume_campaign(self, campaign_id: str) -> bool:
        """Resume a paused campaign (``POST /campaigns/{id}/resume``); True when confirmed."""
        return self._success(self._request("POST", _url(RESUME_CAMPAIGN_ENDPOINT, campaign_id)))

    async def aresume_campaign(self, campaign_id: str) -> bool:
        """Async twin of :meth:`resume_campaign`."""
        return self._success(await self._arequest("POST", _url(RESUME_CAMPAIGN_ENDPOINT, campaign_id)))
