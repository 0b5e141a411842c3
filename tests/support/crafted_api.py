"""A small loopback HTTP server whose answers a test writes by hand: wrong ids, trickled bytes,
huge or deeply nested bodies, odd headers. For what the simulator, being well behaved, never does."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tests.support.paths import FIXTURES

FIXTURE_CALL = FIXTURES / "current_spec_call.json"


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        """The bearer token sent, or ''."""
        return self.headers.get("authorization", "").removeprefix("Bearer ")


Route = Callable[[Request, BinaryIO], None]


def answer(out: BinaryIO, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
    """Write a whole response with a Content-Length (the connection stays open)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(data)}", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    out.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    out.flush()


def trickle(out: BinaryIO, data: bytes, every: float) -> None:
    """Write ``data`` one byte at a time, ``every`` seconds apart."""
    for index in range(len(data)):
        out.write(data[index : index + 1])
        out.flush()
        time.sleep(every)


def call_body(call_id: str, **changes: Any) -> dict[str, Any]:
    """The fixture order (in its ``{"call": ...}`` envelope) under ``call_id``."""
    call: dict[str, Any] = json.loads(FIXTURE_CALL.read_text())["call"]
    return {"call": {**call, "id": call_id, **changes}}


CALL_PATH = "/api/call/"


def orders(request: Request, out: BinaryIO) -> None:
    """A well-behaved ``GET /call/{id}``: the fixture order under the id asked for."""
    answer(out, 200, call_body(request.path.removeprefix(CALL_PATH)))


@dataclass
class CraftedApi:
    """What :func:`crafted_api` yields: the base URL and what the server saw."""

    base_url: str
    requests: list[Request] = field(default_factory=list)
    connections: list[int] = field(default_factory=lambda: [0])
    #: The paths of requests whose client hung up before the answer was fully written.
    abandoned: list[str] = field(default_factory=list)

    @property
    def connection_count(self) -> int:
        """How many TCP connections were accepted."""
        return self.connections[0]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, route: Route, seen: CraftedApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route
        self.seen = seen


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.seen.connections[0] += 1
        while True:
            line = self.rfile.readline(65536)
            if not line.strip():
                return
            method, path = line.decode("latin-1").split(" ")[:2]
            headers: dict[str, str] = {}
            while (header := self.rfile.readline(65536)).strip():
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            request = Request(method, path, headers, body)
            self.server.seen.requests.append(request)
            try:
                self.server.route(request, self.wfile)
            except OSError:
                self.server.seen.abandoned.append(request.path)
                return


@contextmanager
def crafted_api(route: Route) -> Iterator[CraftedApi]:
    """Serve ``route`` on 127.0.0.1 until the block ends."""
    seen = CraftedApi(base_url="")
    server = _Server(route, seen)
    seen.base_url = f"http://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def conn_json(base_url: str, key: str, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_...`` value for a Revox connection."""
    body: dict[str, Any] = {"conn_type": "revox", "host": base_url, "password": key}
    if extra:
        body["extra"] = extra
    return json.dumps(body)
