"""``python -m airflow_provider_revox.testing``: run a Revox API simulator on loopback.

The first line on stdout gives the base URL; the second the API key when it was
generated. The key comes from ``--api-key``, else from the ``REVOX_API_KEY`` environment
variable, else it is generated. Prefer the variable: a key on the command line shows in
``ps`` to every user of the machine. Stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from airflow_provider_revox._simulator.clock import Clock, RealClock, ScaledClock
from airflow_provider_revox._simulator.engine import SimulatorEngine
from airflow_provider_revox._simulator.faults import Faults
from airflow_provider_revox._simulator.harness import generate_api_key
from airflow_provider_revox._simulator.population import seed_population
from airflow_provider_revox._simulator.scenario import ScenarioError, apply_scenario, load_scenario
from airflow_provider_revox._simulator.server import SimulatorServer
from airflow_provider_revox._simulator.transport import is_loopback
from airflow_provider_revox._simulator.webhooks import WebhookSender


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_revox.testing",
        description="Serve a simulated Revox API on loopback for offline DAG development and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="TCP port; 0 picks a free one (default 8089)")
    parser.add_argument(
        "--api-key",
        help="bearer token to accept (default: $REVOX_API_KEY, else a generated one, printed); "
        "a key given here shows in ps, so prefer the environment variable",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1; 3600 = 1 h/s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--calls", type=int, default=0, help="place N random orders at start-up")
    parser.add_argument("--scenario", help="JSON or YAML file of scripted calls to place at start-up")
    parser.add_argument(
        "--faults",
        help="fault rates, e.g. 429=0.05,503=0.02,drop=0.01,drop_after_commit=0.1,slow=0.05:2.0,"
        "repeat_page=0.1 (a call search answers page 0 whatever page it asks for); a scenario's "
        "shift_pages and far_future keys move search results under a reader and report times in 2199",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        help="requests per second the whole account may send (every client together); beyond it, "
        "429 with Retry-After (default: no limit)",
    )
    parser.add_argument(
        "--refuse-sort", action="store_true", help="answer 422 to a call search that asks for a sort"
    )
    parser.add_argument(
        "--strict-search",
        action="store_true",
        help="answer 422 to a call search missing a field the API spec marks required (default: take "
        "its default and name it in the x-revox-simulator-defaulted header)",
    )
    parser.add_argument(
        "--withhold-next-call-at",
        action="store_true",
        help="report next_call_at as null on every order (clients schedule their polls on their own)",
    )
    parser.add_argument(
        "--webhook-url",
        help="send a webhook when each order ends: to the order's or its assistant's webhook_url, "
        "else to this URL",
    )
    parser.add_argument(
        "--webhook-faults",
        help="the webhook sender's faults, e.g. drop=0.05,duplicate=0.05,delay=2,reorder=0.02,"
        "retries=3,retry_wait=5 (given alone, webhooks go only to the orders' own URLs)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    return parser


def _build(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[SimulatorServer, str | None]:
    if not args.speed > 0:
        raise ValueError(f"--speed must be a positive number, not {args.speed}")
    if args.calls < 0:
        raise ValueError(f"--calls must not be negative, not {args.calls}")
    if not args.allow_remote and not is_loopback(args.host):
        raise ValueError(f"refusing to bind {args.host}: pass --allow-remote to listen beyond loopback")
    clock: Clock = RealClock() if args.speed == 1 else ScaledClock(args.speed)
    engine = SimulatorEngine(
        seed=args.seed,
        clock=clock,
        refuse_sort=args.refuse_sort,
        strict_search=args.strict_search,
        withhold_next_call_at=args.withhold_next_call_at,
    )
    if args.rate_limit is not None and not args.rate_limit > 0:
        raise ValueError(f"--rate-limit must be a positive number, not {args.rate_limit}")
    faults = Faults(args.faults, seed=args.seed, rate_limit_per_second=args.rate_limit)
    given = args.api_key or environ.get("REVOX_API_KEY", "").strip()
    generated = None if given else generate_api_key()
    key = str(given or generated)
    server = SimulatorServer(
        engine,
        api_key=key,
        faults=faults,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
    )
    if args.scenario:
        apply_scenario(load_scenario(args.scenario), engine, faults)
    if args.calls:
        seed_population(engine, args.calls)
    return server, generated


def _serve(server: SimulatorServer, generated_key: str | None, sender: WebhookSender | None = None) -> None:
    sock = server.bind()
    print(f"Revox simulator listening on {server.base_url}", flush=True)
    if generated_key:
        print(f"API key: {generated_key}", flush=True)
    print(f"{len(server.engine.call_ids())} calls loaded; Ctrl-C to stop", flush=True)
    # uvicorn handles SIGINT and SIGTERM (stops accepting, finishes answers in progress), then
    # raises the signal again for the handler it found: a no-op one, so the process exits with 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    if sender is not None:
        sender.start()  # its own thread: off the request path
    try:
        server.uvicorn_server().run(sockets=[sock])
    finally:
        if sender is not None:
            sender.stop()
    print("Revox simulator stopped", flush=True)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of ``python -m airflow_provider_revox.testing``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        server, generated = _build(args, os.environ if environ is None else environ)
        sender = None
        if args.webhook_url or args.webhook_faults:
            sender = WebhookSender(server.engine, args.webhook_faults, url=args.webhook_url, seed=args.seed)
    except (ValueError, ScenarioError) as error:
        parser.error(str(error))
    try:
        _serve(server, generated, sender)
    except OSError as error:
        print(f"revox simulator: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
