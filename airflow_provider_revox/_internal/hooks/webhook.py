"""The hook's webhook half: the URL Revox calls, setting it on an assistant, and reading what a webhook named.

A webhook only hints that calls ended (Revox signs nothing): :meth:`WebhookEndpoints.resolve_announced`
reads the named calls from the API by id, a search of up to 100 ids per request, and keeps the
ones the API says ended, dated by the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from typing_extensions import Unpack

from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.webhook import new_token
from airflow_provider_revox._internal.hooks.call import CallEndpoints, CallFilters
from airflow_provider_revox.exceptions import RevoxApiError, RevoxConfigError

if TYPE_CHECKING:
    from airflow_provider_revox._internal.client.settings import RevoxSettings

#: Ids per search when reading announced calls (the search's page size).
IDS_PER_SEARCH = 100
#: Where the provider's Airflow plugin serves webhooks on the api-server.
WEBHOOK_PATH = "/revox/webhooks"


def announced_entry(call: Call, filters: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The consumer's entry for a call a webhook named, as the API gives it.

    None while it has not ended, or when it visibly fails the watcher's ``statuses`` or
    ``assistant_ids``: the search applied the filters, but an API that ignored one must not make a
    webhook export an order the watcher's poll would never name.
    """
    if not statuses.is_terminal(call.status) or call.ended_at is None:
        return None
    wanted = (filters or {}).get("statuses")
    if wanted and call.status not in wanted:
        return None
    assistants = (filters or {}).get("assistant_ids")
    assistant = call.assistant.id if call.assistant is not None else None
    if assistants and assistant is not None and assistant not in assistants:
        return None
    return {"id": call.id, "status": call.status, "ended_at": call.ended_at.isoformat(), "announced": True}


def _chunks(call_ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(str(call_id) for call_id in call_ids))
    for call_id in unique:
        validate_call_id(call_id)
    return [unique[start : start + IDS_PER_SEARCH] for start in range(0, len(unique), IDS_PER_SEARCH)]


class WebhookEndpoints(CallEndpoints):
    """Webhooks: their URL and token, the assistant's ``webhook_url``, and the calls they name."""

    if TYPE_CHECKING:

        def connection_settings(self) -> RevoxSettings: ...

    @staticmethod
    def new_webhook_token() -> str:
        """A fresh random webhook token (43 URL-safe characters), for the extra ``webhook_token``.

        Shown once: store it in the connection and do not log it. To rotate, move the current one
        to ``webhook_previous_token``, store a new one, update the ``webhook_url`` set on Revox
        (:meth:`set_assistant_webhook`), then empty ``webhook_previous_token``.
        """
        return new_token()

    def webhook_url(self) -> str:
        """The URL Revox calls: the extra ``webhook_base_url``, the plugin's path and ``?token=``.

        It holds the token: treat it as a secret. The token is in the query, not the path: a
        reverse proxy's access log is more often told to drop query strings than paths.

        Raises:
            RevoxConfigError: the connection has no ``webhook_base_url`` or no ``webhook_token``.
        """
        settings = self.connection_settings()
        if not settings.webhook_base_url or not settings.webhook_tokens:
            raise RevoxConfigError(
                f"Revox connection {settings.conn_id!r}: set the extras 'webhook_base_url' (the https URL "
                "of the Airflow api-server) and 'webhook_token' (RevoxHook.new_webhook_token()) first"
            )
        return f"{settings.webhook_base_url}{WEBHOOK_PATH}?{urlencode({'token': settings.webhook_tokens[0]})}"

    def set_assistant_webhook(self, assistant_id: str, url: str | None = None) -> None:
        """Set an assistant's ``webhook_url`` (``PATCH /assistants/{id}``); by default :meth:`webhook_url`.

        Every call of the assistant then notifies Airflow when it completes. (Revox's campaigns
        take no ``webhook_url`` of their own: set it on the campaign's assistant.)

        Raises:
            RevoxConfigError: an empty assistant id, or no URL to set.
            RevoxApiError: Revox refused the update.
        """
        if not isinstance(assistant_id, str) or not assistant_id.strip():
            raise RevoxConfigError(f"assistant_id must be a non-empty string, not {assistant_id!r}")
        target = url if url is not None else self.webhook_url()
        if not target.startswith(("https://", "http://")):
            raise RevoxConfigError("the webhook URL must be an http(s) URL")
        response = self._request(
            "PATCH", f"/assistants/{quote(assistant_id.strip(), safe='')}", json={"webhook_url": target}
        )
        self._check(response)
        body = responses.decode_json(response, self._secrets)
        if isinstance(body, dict) and body.get("success") is False:
            raise RevoxApiError(
                f"Revox refused to set the webhook of assistant {assistant_id!r}",
                status_code=response.status_code,
            )

    def resolve_announced(
        self, calls: Sequence[Mapping[str, Any]], **filters: Unpack[CallFilters]
    ) -> list[dict[str, Any]]:
        """Call event entries with each webhook's hint replaced by what the API says, for ``first_named``.

        ``calls`` are the triggering events' entries, in order. An entry marked ``"announced":
        true`` (a webhook named the call) becomes ``{"id", "status", "ended_at", "announced":
        true}`` with ``ended_at`` read from the API, or is dropped when the API does not know the
        id, the call has not ended (the poll names it when it ends) or it does not match
        ``filters``. Other entries are kept as they are. One search per 100 announced ids; none
        when no entry is announced.

        A webhook URL set on an assistant announces every call of that assistant, whatever the
        watcher filters: pass the watcher's filters (``RevoxCallEventTrigger(...).filters``) so a
        webhook names only the orders its poll would.

        Raises:
            RevoxInvalidCallIdError: an unusable announced id (nothing is sent).
            RevoxConfigError: an unusable filter (nothing is sent).
        """
        read: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(_announced_ids(calls)):
            page = self.search_calls(chunk, page_size=len(chunk), **filters)
            read.update(_entries(page.calls, filters))
        return _replaced(calls, read)

    async def aresolve_announced(
        self, calls: Sequence[Mapping[str, Any]], **filters: Unpack[CallFilters]
    ) -> list[dict[str, Any]]:
        """Async twin of :meth:`resolve_announced`."""
        read: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(_announced_ids(calls)):
            page = await self.asearch_calls(chunk, page_size=len(chunk), **filters)
            read.update(_entries(page.calls, filters))
        return _replaced(calls, read)


def _announced_ids(calls: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(call["id"]) for call in calls if call.get("announced")]


def _entries(found: Sequence[Call], filters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    entries = (announced_entry(call, filters) for call in found)
    return {entry["id"]: entry for entry in entries if entry is not None}


def _replaced(calls: Sequence[Mapping[str, Any]], read: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for call in calls:
        if not call.get("announced"):
            out.append(dict(call))
        elif str(call["id"]) in read:
            out.append(read[str(call["id"])])
    return out
