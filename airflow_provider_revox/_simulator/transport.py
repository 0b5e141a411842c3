"""The connection under the simulated API: loopback checks and closing a connection unanswered."""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The key under which the connection's transport reaches the app, so a "drop" fault can close it.
TRANSPORT = "revox.transport"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, handing the transport to the app (for the ``drop`` fault)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[TRANSPORT] = self.transport  # type: ignore[literal-required]


async def drop(request: Request) -> Response:
    """Close the connection without an answer, as a crashed proxy would."""
    transport = request.scope.get(TRANSPORT)
    if transport is None:
        raise HTTPException(500, "cannot drop this connection")
    transport.close()
    # Let the transport report the disconnection before uvicorn looks at the request again.
    for _ in range(3):
        await asyncio.sleep(0)
    return Response(b"", 500)
