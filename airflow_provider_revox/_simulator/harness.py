"""Run the simulator inside a test (or any Python program) on a background thread.

::

    from airflow_provider_revox._simulator.harness import running_simulator

    with running_simulator(seed=7) as sim:
        call = sim.place_call(phone_number="+33612345678", assistant_id="asst_demo")
        sim.clock.advance(3600)                     # a manual clock by default
        httpx.get(f"{sim.base_url}/call/{call['id']}", headers={"Authorization": f"Bearer {sim.api_key}"})
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_provider_revox._simulator.clock import Clock, ScaledClock, VirtualClock
from airflow_provider_revox._simulator.engine import SimulatorEngine
from airflow_provider_revox._simulator.faults import Faults
from airflow_provider_revox._simulator.population import seed_population
from airflow_provider_revox._simulator.quota import AccountLimit
from airflow_provider_revox._simulator.scenario import apply_scenario, load_scenario, parse_scenario
from airflow_provider_revox._simulator.server import SimulatorServer
from airflow_provider_revox._simulator.webhooks import WebhookFaults, WebhookSender


def connection_json(base_url: str, api_key: str, **extra: Any) -> str:
    """A ``revox`` connection as JSON, for an ``AIRFLOW_CONN_<ID>`` variable.

    Args:
        base_url: the API base URL, such as a simulator's ``http://127.0.0.1:PORT/api``.
        api_key: the key the connection sends.
        **extra: connection extras, such as ``max_retries=1``.
    """
    conn: dict[str, Any] = {"conn_type": "revox", "host": base_url, "password": api_key}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def generate_api_key() -> str:
    """A fresh random API key for a simulator run."""
    return "sk_sim_" + secrets.token_urlsafe(24)


class ServerThread:
    """A :class:`SimulatorServer` served by uvicorn on its own event loop in a daemon thread.

    Start-up binds the socket first (so the port is known at once) and returns when uvicorn
    accepts connections; stopping closes the listener and every connection without uvicorn's
    fixed shutdown pauses, because tests start and stop many simulators.
    """

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self._uvicorn = server.uvicorn_server()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="revox-simulator", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start serving; return once uvicorn accepts connections.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: uvicorn did not start within ``timeout`` seconds.
        """
        self._socket = self.server.bind()
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            self.stop()
            raise RuntimeError("the simulator's HTTP server did not start") from self._failure

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._startup())
        except BaseException as error:  # reported to start(), which raises it
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _startup(self) -> None:
        config = self._uvicorn.config
        config.load()
        self._uvicorn.lifespan = config.lifespan_class(config)
        assert self._socket is not None
        await self._uvicorn.startup(sockets=[self._socket])

    async def _shutdown(self, grace: float) -> None:
        state = self._uvicorn.server_state
        self.server.end_delays()
        for listener in self._uvicorn.servers:
            listener.close()
        for connection in list(state.connections):
            connection.shutdown()
        # uvicorn keeps no event for "every connection closed": look every few milliseconds.
        for _ in range(max(1, int(grace / 0.005))):
            if not state.connections:
                break
            await asyncio.sleep(0.005)
        for connection in list(state.connections):
            connection.transport.close()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.sleep(0)

    def stop(self, timeout: float = 10.0, grace: float = 1.0) -> None:
        """Stop accepting, let answers in progress finish (up to ``grace`` seconds), close the loop."""
        if self._thread.is_alive():
            try:
                if self._ready.is_set() and self._failure is None:
                    asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop).result(timeout)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        if self._socket is not None:
            self._socket.close()


#: A retry config for tests and demos: every day, all day, retries ten simulated minutes apart.
ALWAYS_OPEN_RETRY_CONFIG: dict[str, Any] = {
    "calling_windows": [
        {"calling_window_start_time": "00:00", "calling_window_end_time": "23:59", "retry_delay_seconds": 600}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 3,
}


class SimulatorHandle:
    """What :func:`running_simulator` yields.

    Attributes:
        base_url: the API base URL (``http://127.0.0.1:PORT/api``).
        api_key: the bearer token the simulator accepts (never shown in ``repr``).
        engine: the lifecycle engine.
        clock: the engine's clock (a :class:`VirtualClock` unless ``speed`` was given).
        faults: the fault plan (``handle.faults.script(call_id, ["429", "ok"])``).
        server: the HTTP server.
    """

    def __init__(self, server: SimulatorServer, api_key: str) -> None:
        self.server = server
        self.engine = server.engine
        self.clock: Clock = server.engine.clock
        self.faults = server.faults
        self.api_key = api_key
        self.webhooks: list[WebhookSender] = []

    def send_webhooks(
        self, faults: WebhookFaults | str | None = None, *, url: str | None = None, seed: int = 0
    ) -> WebhookSender:
        """Send a webhook when each order ends, from a background thread, until the simulator stops.

        ``faults`` is the sender's fault SPEC (``"drop=0.05,duplicate=0.05,delay=2"``: rates of
        webhooks dropped and sent twice, the longest delivery delay in seconds; also ``reorder``,
        ``retries``, ``retry_wait``); ``url`` receives the orders with no ``webhook_url`` of their
        own or their assistant's. The sender's ``counts`` say what happened.
        """
        sender = WebhookSender(self.engine, faults, url=url, seed=seed).start()
        self.webhooks.append(sender)
        return sender

    @property
    def base_url(self) -> str:
        """The API base URL."""
        return self.server.base_url

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self.server.host

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self.server.port

    def stats(self) -> dict[str, Any]:
        """Requests served per status code, call id and endpoint (as ``GET /_simulator/stats``)."""
        return self.server.stats()

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self.server.reset_stats()

    def place_call(self, **kwargs: Any) -> dict[str, Any]:
        """Place an order directly on the engine (see :meth:`SimulatorEngine.place_call`)."""
        return self.engine.place_call(**kwargs)

    def place_scripted(self, call_id: str, attempts: list[dict[str, Any]], **order: Any) -> str:
        """Place an order with a scripted lifecycle, as one entry of a scenario file; return its id.

        Args:
            call_id: the order's fixed id.
            attempts: the dials, e.g. ``[{"result": "voicemail"}, {"result": "human", "duration": 90}]``.
            **order: any other scenario key (``phone_number``, ``assistant``, ``call_retry_config``,
                ``final_status``, ``outcome``, ``faults``, ...); a French number, a default
                assistant and :data:`ALWAYS_OPEN_RETRY_CONFIG` unless given.
        """
        entry = {
            "id": call_id,
            "phone_number": "+33612345678",
            "assistant_id": "asst_test",
            "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
            "attempts": attempts,
            **order,
        }
        return apply_scenario(parse_scenario({"calls": [entry]}), self.engine, self.faults)[0]

    def connection_json(self, **extra: Any) -> str:
        """A ``revox`` connection to this simulator as JSON, for ``AIRFLOW_CONN_<ID>`` variables."""
        return connection_json(self.base_url, self.api_key, **extra)

    def get_call(self, call_id: str) -> dict[str, Any]:
        """The order as ``GET /call/{id}`` shows it now."""
        return self.engine.get_call(call_id)

    def advance(self, seconds: float) -> None:
        """Move a virtual clock forward.

        Raises:
            TypeError: when the simulator runs on a real or scaled clock.
        """
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("advance() needs the manual VirtualClock; this simulator runs on real time")
        self.clock.advance(seconds)

    def finish(self, *call_ids: str) -> None:
        """Move a manual clock one second past the end of these orders (default: every order).

        Raises:
            TypeError: when the simulator runs on a real or scaled clock.
            ValueError: when one of the orders has no planned end (paused, or not launched).
        """
        ids = call_ids or tuple(self.engine.call_ids())
        ends = [self.engine.terminal_at(call_id) for call_id in ids]
        if any(end is None for end in ends):
            unfinished = [call_id for call_id, end in zip(ids, ends, strict=True) if end is None]
            raise ValueError(f"orders with no planned end: {unfinished}")
        last = max(end for end in ends if end is not None)
        self.advance(max(0.0, (last - self.clock.now()).total_seconds()) + 1)

    def __repr__(self) -> str:
        return f"SimulatorHandle(base_url={self.base_url!r}, engine={self.engine!r})"


@contextmanager
def running_simulator(
    *,
    seed: int = 0,
    api_key: str | None = None,
    clock: Clock | None = None,
    speed: float | None = None,
    faults: Faults | str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    rate_limit_per_second: float | None = None,
    **engine_options: Any,
) -> Iterator[SimulatorHandle]:
    """Start a simulator on a background thread; stop it cleanly on exit.

    Args:
        seed: fixes every random choice of the engine and the faults.
        api_key: the accepted bearer token; a random one by default.
        clock: the time source; default a manual :class:`VirtualClock` (advance it yourself).
        speed: run on real time multiplied by ``speed`` instead (ignored when ``clock`` is given).
        faults: a :class:`Faults` or a SPEC string such as ``"429=0.1,drop=0.01"``.
        host: address to bind (loopback; pass ``allow_remote=True`` for anything else).
        port: TCP port, 0 for a free one.
        rate_limit_per_second: the account's limit, for every client together: beyond it the API
            answers 429 with a ``Retry-After`` (None: no limit).
        **engine_options: ``profile``, ``refuse_sort`` (answer 422 to a search that asks
            for a sort) and ``strict_search`` (answer 422 to a search missing a field the spec
            marks required) and ``withhold_next_call_at`` (report ``next_call_at`` as null) for
            the engine; ``scenario`` (a file path) and ``calls``
            (a random population size) to pre-load orders; ``allow_remote`` for the server.

    Yields:
        A :class:`SimulatorHandle`.
    """
    scenario = engine_options.pop("scenario", None)
    calls = int(engine_options.pop("calls", 0) or 0)
    allow_remote = bool(engine_options.pop("allow_remote", False))
    if clock is None:
        clock = ScaledClock(speed) if speed is not None else VirtualClock()
    engine = SimulatorEngine(seed=seed, clock=clock, **engine_options)
    if isinstance(faults, Faults):
        fault_plan = faults
        if rate_limit_per_second:
            fault_plan.account = AccountLimit(rate_limit_per_second)
    else:
        fault_plan = Faults(faults, seed=seed, rate_limit_per_second=rate_limit_per_second)
    key = api_key or generate_api_key()
    server = SimulatorServer(
        engine, api_key=key, faults=fault_plan, host=host, port=port, allow_remote=allow_remote
    )
    if scenario is not None:
        apply_scenario(load_scenario(Path(scenario)), engine, fault_plan)
    if calls:
        seed_population(engine, calls)
    thread = ServerThread(server)
    thread.start()
    handle = SimulatorHandle(server, key)
    try:
        yield handle
    finally:
        for sender in handle.webhooks:
            sender.stop()
        thread.stop()
