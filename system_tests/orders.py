"""The scripted call orders of the system test, written as a simulator scenario file.

Orders are dialled at a fixed real-time offset after the simulator starts (``scheduled_at`` on
the simulator's scaled clock), so each sensor defers while its order is still pending and the
order ends while the trigger waits in the triggerer.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ALL_DAY = {
    "calling_windows": [
        {"calling_window_start_time": "00:00", "calling_window_end_time": "23:59", "retry_delay_seconds": 60}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 3,
    "timezone": "UTC",
}


def scripted_order(call_id: str, at: datetime, final: str, **extra: Any) -> dict[str, Any]:
    """A scenario order dialled at ``at`` (any hour, any day): a person talks 60 s, it ends ``final``."""
    return {
        "id": call_id,
        "phone_number": "+33612345678",
        "scheduled_at": at.isoformat(),
        "call_retry_config": ALL_DAY,
        "attempts": [{"result": "human", "duration": 60}],
        "post_processing_seconds": 20,
        "final_status": final,
        **extra,
    }


#: What the call-events watcher of ``revox_on_calls_finished`` sees: one assistant, two statuses.
EVENT_ASSISTANT = "asst_events"
EVENT_STATUSES = ("completed", "errored")


@dataclass(frozen=True)
class EventOrder:
    """An order of the call-events check: when it ends, how, and whether the watcher's filters match it."""

    call_id: str
    batch: int
    at: float
    final: str
    watched_assistant: bool

    @property
    def matches(self) -> bool:
        """True when the watcher must name this order in exactly one asset event."""
        return self.watched_assistant and self.final in EVENT_STATUSES


@dataclass(frozen=True)
class Plan:
    """Which order ends how, and when (seconds of real time after the simulator starts)."""

    planted: str = field(default_factory=lambda: f"planted-{secrets.token_hex(8)}")
    # Late enough that every sensor has deferred first, even on a loaded machine: a trigger that
    # fires seconds after its task deferred meets an Airflow 3.3 scheduler race (the stale
    # success of the deferring try fails the task; apache/airflow#72716).
    basic_at: float = 75.0
    ha_at: float = 90.0
    kill_at: float = 130.0
    ha_calls: int = 8
    # Call events: the first batch ends once the watcher polls, the second while its triggerer is
    # down, the third one order at a time (a kill lands among them), the last after two restarts.
    events_at: tuple[float, ...] = (95.0, 112.0, 130.0, 168.0)
    events_spread: float = 1.5

    def watch(self) -> dict[str, Any]:
        """The call-events trigger's arguments (``REVOX_CALL_EVENTS_WATCH``): filters, a fast pace."""
        return {
            "assistant_ids": [EVENT_ASSISTANT],
            "statuses": list(EVENT_STATUSES),
            "poll_interval": 1,
            "max_poll_interval": 2,
            "batch_size": 3,
        }

    def event_orders(self) -> list[EventOrder]:
        """Per batch: completed and errored orders the watcher names, a cancelled one and one of
        another assistant that it does not; the third batch ends one order every ``events_spread`` s."""
        orders = []
        for batch, at in enumerate(self.events_at, start=1):
            finals = ["completed", "errored", "completed", "cancelled", "completed"]
            if batch == 3:
                finals += ["completed", "errored", "completed"]
            step = self.events_spread if batch == 3 else 0.0
            for i, final in enumerate(finals, start=1):
                orders.append(EventOrder(f"ev{batch}-{i}", batch, at + (i - 1) * step, final, True))
            orders.append(EventOrder(f"ev{batch}-other", batch, at, "completed", False))
        return orders

    def assistant(self, assistant_id: str = "asst_systest") -> dict[str, Any]:
        """An assistant whose response carries credentials that must never leave the hook."""
        return {
            "id": assistant_id,
            "name": "System test reminder",
            "prompt": "You call customers to confirm their upcoming appointment.",
            "llm_model": {
                "name": "in-house",
                "type": "custom",
                "api_key": f"{self.planted}-llm",
                "api_url": "https://llm.example.com/v1",
            },
            "custom_tools": [
                {
                    "name": "crm_lookup",
                    "url": "https://crm.example.com/lookup",
                    "headers": {"Authorization": f"Bearer {self.planted}-tool"},
                    "query_params": {"token": f"{self.planted}-query"},
                }
            ],
            "structured_output_config": [
                {"name": "confirmed", "type": "boolean", "required": True},
                {"name": "contact_name", "type": "string", "required": True},
            ],
        }

    def orders(self, speed: float, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every order of the run, ``scheduled_at`` computed for a simulator started at ``now``."""
        start = now or datetime.now(timezone.utc)

        def order(
            call_id: str, at: float, final: str = "completed", planted: bool = False, assistant: str = ""
        ) -> dict[str, Any]:
            entry = scripted_order(call_id, start + timedelta(seconds=at * speed), final)
            if final == "completed":
                entry["structured_output"] = {"confirmed": True, "contact_name": "Ada"}
            if assistant:
                entry["assistant"] = self.assistant(assistant)
            elif planted:
                entry["assistant"] = self.assistant()
            else:
                entry["assistant_id"] = "asst_plain"
            return entry

        never = 30 * 86400 / speed  # a month ahead: these orders outlast any timeout
        calls = [
            order("ok-1", self.basic_at, planted=True),
            order("err-1", self.basic_at, final="errored"),
            order("can-1", self.basic_at, final="cancelled"),
            order("db-1", self.basic_at),
            order("bok-1", self.basic_at),
            order("bok-2", self.basic_at + 2),
            order("berr-1", self.basic_at, final="errored"),
            order("bcan-1", self.basic_at, final="cancelled"),
            order("bcan-2", self.basic_at + 1, final="cancelled"),
            order("bok-3", self.basic_at + 3),
            order("exp-1", self.basic_at, planted=True),
            order("exp-2", self.basic_at + 1, planted=True),
            order("exp-3", self.basic_at + 2),
            order("kill-1", self.kill_at),
            order("never-1", never),
            order("never-2", never),
        ]
        calls += [order(f"ha-{i}", self.ha_at + i % 3) for i in range(1, self.ha_calls + 1)]
        calls += [
            order(e.call_id, e.at, e.final, assistant=EVENT_ASSISTANT if e.watched_assistant else "")
            for e in self.event_orders()
        ]
        return calls

    def write(self, path: Path, speed: float) -> Path:
        """Write the scenario file for a simulator about to start."""
        path.write_text(json.dumps({"calls": self.orders(speed)}, indent=1), encoding="utf-8")
        return path
