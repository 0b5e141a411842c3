"""`make demo`: the main job end to end, on the embedded Revox simulator.

It starts the simulator in the background at 600x real time, places a few call orders,
runs both example DAGs with ``airflow dags test`` against it, prints what came out and
stops the simulator. Everything lives under ``.demo/`` and the script can run again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorProcess, connection_json

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
AIRFLOW_HOME = DEMO / "airflow"
EXPORT = DEMO / "export"
LOGS = DEMO / "logs"
BIN = Path(sys.executable).parent
SPEED = 600

ASSISTANT = {
    "id": "asst_demo",
    "name": "Appointment confirmation",
    "max_call_duration_secs": 300,
    "structured_output_config": [
        {"name": "confirmed", "type": "boolean", "required": True},
        {"name": "preferred_date", "type": "date", "required": False},
        {
            "name": "callback_reason",
            "type": "enum",
            "required": False,
            "enum_options": ["busy", "wrong_person", "needs_info"],
        },
        {"name": "notes", "type": "string", "required": False},
    ],
    # Open every day so the demo runs whatever the weekday; retries ten simulated minutes apart.
    "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
}
RECIPIENTS = ["+33612345678", "+12125550123", "+442071838750", "+81312345678"]


def airflow_env(base_url: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        AIRFLOW_CONN_REVOX_DEFAULT=connection_json(base_url, api_key),
    )
    return env


def run(step: str, args: list[str], env: dict[str, str]) -> None:
    """Run one command, its output to .demo/logs; show the tail only when it fails."""
    log = LOGS / f"{step.replace(' ', '_')}.log"
    started = time.monotonic()
    with log.open("w") as handle:
        code = subprocess.run(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    print(f"  {step:<28} {'ok' if code == 0 else 'FAILED'} in {time.monotonic() - started:5.1f} s  ({log})")
    if code != 0:
        print("".join(log.read_text().splitlines(keepends=True)[-40:]))
        raise SystemExit(f"demo step {step!r} failed (exit {code})")


def place_calls(base_url: str, api_key: str) -> list[str]:
    os.environ["AIRFLOW_CONN_REVOX_DEFAULT"] = connection_json(base_url, api_key)
    from airflow_provider_revox.hooks.revox import RevoxHook

    with RevoxHook() as hook:
        return [
            hook.place_call(
                phone_number=number, assistant=ASSISTANT, metadata={"customer_id": f"cust-{i}"}
            ).id
            for i, number in enumerate(RECIPIENTS)
        ]


def report(call_ids: list[str], export_dir: Path | None) -> list[dict[str, Any]]:
    from airflow_provider_revox.hooks.revox import RevoxHook

    rows = []
    with RevoxHook() as hook:
        for call_id in call_ids:
            call = hook.get_call(call_id)
            rows.append(
                {
                    "call id": call.id,
                    "status": call.status,
                    "outcome": call.outcome or "-",
                    "attempts": call.attempts_made,
                    "turns": sum(1 for _ in call.iter_turns("best")),
                    "call file": f"calls/{call.id}.json" if export_dir else "-",
                }
            )
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    print()
    print("  ".join(h.ljust(widths[h]) for h in headers))
    print("  ".join("-" * widths[h] for h in headers))
    for row in rows:
        print("  ".join(str(row[h]).ljust(widths[h]) for h in headers))
    if export_dir is not None:
        print(f"\nFiles written under {export_dir}:")
        for path in sorted(p for p in export_dir.rglob("*") if p.is_file()):
            print(f"  {path.relative_to(export_dir)}  ({path.stat().st_size:,} bytes)")
    return rows


def main() -> int:
    started = time.monotonic()
    for folder in (AIRFLOW_HOME, LOGS):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(EXPORT, ignore_errors=True)
    shutil.rmtree(DEMO / "campaign_export", ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)  # the in-process hook reads Airflow's config too
    api_key = "sk_demo_" + secrets.token_hex(12)
    print("Revox provider demo")
    with SimulatorProcess(api_key=api_key, speed=SPEED, seed=42) as simulator:
        base_url = simulator.base_url
        print(f"  simulator at {base_url} ({SPEED}x real time)")
        env = airflow_env(base_url, api_key)
        run("airflow db migrate", [str(BIN / "airflow"), "db", "migrate"], env)
        call_ids = place_calls(base_url, api_key)
        print(f"  placed {len(call_ids)} call orders")
        run(
            "revox_call_completion",
            [
                str(BIN / "airflow"),
                "dags",
                "test",
                "revox_call_completion",
                "--conf",
                json.dumps({"call_id": call_ids[0]}),
            ],
            env,
        )
        run(
            "revox_campaign_export",
            [
                str(BIN / "airflow"),
                "dags",
                "test",
                "revox_campaign_export",
                "--conf",
                json.dumps({"call_ids": call_ids, "destination": EXPORT.as_uri()}),
            ],
            env,
        )
        contacts = DEMO / "contacts.csv"
        contacts.write_text(
            "to_phone_number,first_name,appointment\n"
            + "".join(f"{number},Guest {i},Friday {10 + i}:00\n" for i, number in enumerate(RECIPIENTS))
            + "0612345678,No country code,Friday 9:00\n"
        )
        run(
            "revox_campaign_from_table",
            [
                str(BIN / "airflow"),
                "dags",
                "test",
                "revox_campaign_from_table",
                "--conf",
                json.dumps(
                    {
                        "contacts_path": contacts.as_uri(),
                        "assistant_id": "asst_demo",
                        "destination": (DEMO / "campaign_export").as_uri(),
                    }
                ),
            ],
            env,
        )
        print(f"  campaign created from {contacts.name}; 1 bad row in {contacts.name}.rejects.jsonl")
        runs = sorted(p for p in EXPORT.iterdir() if p.is_dir()) if EXPORT.exists() else []
        report(call_ids, runs[-1] if runs else None)
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s; simulator stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
