"""What the endpoint mixins need from :class:`~airflow_provider_revox._internal.hooks.revox.RevoxHook`.

Declared once here for the type checker; ``RevoxHook`` provides the real methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class HookCore:
    """The sending and checking half of ``RevoxHook`` that every endpoint mixin builds on."""

    if TYPE_CHECKING:
        _secrets: tuple[str, ...]

        def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...
        async def _arequest(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...
        def _check(self, response: httpx.Response, call_id: str | None = None) -> None: ...
