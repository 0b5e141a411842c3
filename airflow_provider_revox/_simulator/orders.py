"""What an order placed on the simulated API may hold: each input checked, with the field named."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import phonenumbers
from pydantic import ValidationError

from airflow_provider_revox._simulator.assistant import TIMESTAMP, AssistantShape
from airflow_provider_revox._simulator.dialing import DialRules, InvalidRules, dial_rules
from airflow_provider_revox._simulator.errors import InvalidOrder

#: What a ``POST /call`` body may set; other keys are ignored, as the API ignores unknown fields.
ORDER_FIELDS = (
    "phone_number",
    "assistant",
    "assistant_id",
    "scheduled_at",
    "metadata",
    "prompt_variables",
    "call_retry_config",
    "from_phone_number",
    "skip_calling_window",
    "concurrency",
)
#: A campaign's contacts name the recipient ``to_phone_number``; an order names it ``phone_number``.
ORDER_HINTS = {"phone_number": "the recipient, E.164; to_phone_number is the field of a campaign's contacts"}


#: The default assistant's analysis: one field of every type (name, type, required).
_OUTPUT_FIELDS = (
    ("confirmed", "boolean", True),
    ("contact_name", "string", True),
    ("email", "string", False),
    ("party_size", "number", False),
    ("interest_level", "enum", True),
    ("new_date", "date", False),
    ("callback_at", "datetime", False),
)
LEVELS = ("low", "medium", "high")


def default_assistant(assistant_id: str) -> dict[str, Any]:
    """The assistant an order placed with only ``assistant_id`` gets: a realistic reminder agent."""
    return {
        "id": assistant_id,
        "name": "Appointment reminder",
        "organization_id": "org_simulator",
        "prompt": "You call customers to confirm their upcoming appointment.",
        "first_sentence": "Hello, this is Revox calling about your appointment.",
        "first_sentence_mode": "static",
        "first_sentence_delay_ms": 400,
        "end_of_call_sentence": "Thank you, goodbye.",
        "voicemail_message": "Hello, this is Revox about your appointment. Please call us back.",
        "background_sound": "audio/office.ogg",
        "background_sound_volume": 0.3,
        "thinking_sound": None,
        "thinking_sound_volume": 0.5,
        "thinking_sound_probability": 0.3,
        "ivr_navigation_enabled": False,
        "sms_enabled": False,
        "stt_model": "stt-rt-v5",
        "type": "standalone",
        "max_call_duration_secs": 600,
        "llm_model": {"name": "gpt-4.1", "type": "dedicated-instance"},
        "voice": {"id": "sim-voice-1", "provider": "cartesia", "speed": 1.0},
        "call_retry_config": None,
        "structured_output_config": [
            {
                "name": name,
                "type": kind,
                "required": required,
                **({"enum_options": list(LEVELS)} if kind == "enum" else {}),
            }
            for name, kind, required in _OUTPUT_FIELDS
        ],
        "created_at": "2025-01-06T09:00:00.000Z",
        "updated_at": "2025-01-06T09:00:00.000Z",
    }


def valid_phone(value: Any, name: str = "phone_number") -> str:
    """A phone number (the recipient by default) as E.164 text.

    Raises:
        InvalidOrder: missing, unreadable or not a valid number.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidOrder(f"{name} is required: an E.164 number such as +33612345678")
    text = value.strip()
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as error:
        raise InvalidOrder(f"{name} {text!r} is not an E.164 number: {error}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidOrder(f"{name} {text!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def valid_assistant(assistant: Any, assistant_id: Any) -> dict[str, Any]:
    """The order's assistant as the API echoes it: the fields given over the defaults' complete set.

    Raises:
        InvalidOrder: neither an assistant nor an id, or an assistant the API would refuse.
    """
    if assistant is None:
        if not isinstance(assistant_id, str) or not assistant_id.strip():
            raise InvalidOrder("either assistant (an object) or assistant_id (a string) is required")
        return default_assistant(assistant_id.strip())
    if not isinstance(assistant, dict):
        raise InvalidOrder(f"assistant must be an object, not {type(assistant).__name__}")
    try:
        AssistantShape.model_validate(assistant)
    except ValidationError as error:
        raise InvalidOrder(f"assistant is invalid: {_first_error(error)}") from None
    echoed = {**default_assistant("asst_inline"), **assistant}
    if not assistant.get("id"):
        echoed["id"] = assistant_id if isinstance(assistant_id, str) and assistant_id else "asst_inline"
    config = assistant.get("call_retry_config")
    if config is not None:
        echoed["call_retry_config"] = retry_rules(config, "assistant.call_retry_config")[1]
    return echoed


def valid_time(value: Any) -> datetime | None:
    """``scheduled_at`` as an aware datetime, None when absent.

    Raises:
        InvalidOrder: not an ISO 8601 timestamp.
    """
    if value is None or value == "":
        return None
    try:
        parsed = TIMESTAMP.validate_python(value)
    except ValidationError:
        parsed = None
    if parsed is None:
        raise InvalidOrder(f"scheduled_at {value!r} is not an ISO 8601 timestamp")
    return parsed


def valid_map(name: str, value: Any, *, strings: bool = False) -> dict[str, Any]:
    """A key/value map (``metadata``, ``prompt_variables``); empty when absent.

    The API takes string values only (``strings``, what its HTTP routes check); an order placed
    on the engine directly may carry any JSON value, to plant what a changed API could return.

    Raises:
        InvalidOrder: not an object, or (with ``strings``) a value that is not a string.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidOrder(f"{name} must be an object of key/value pairs, not {type(value).__name__}")
    for key, item in value.items():
        if strings and not isinstance(item, str):
            raise InvalidOrder(f"{name}.{key} must be a string, not {type(item).__name__}")
    return dict(value)


def valid_flag(name: str, value: Any) -> bool:
    """A boolean field; False when absent.

    Raises:
        InvalidOrder: not a boolean.
    """
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidOrder(f"{name} must be a boolean, not {type(value).__name__}")
    return value


def valid_concurrency(value: Any) -> str | None:
    """The key of ``concurrency: {"key": ...}``; None when absent.

    Raises:
        InvalidOrder: not an object with a non-empty string ``key``.
    """
    if value is None:
        return None
    key = value.get("key") if isinstance(value, dict) else None
    if not isinstance(key, str) or not key:
        raise InvalidOrder('concurrency must be an object {"key": "<non-empty string>"}')
    return key


def retry_rules(value: Any, name: str = "call_retry_config") -> tuple[DialRules, dict[str, Any]]:
    """Read a retry config of any shape: the rules, and the config as the current spec writes it.

    Raises:
        InvalidOrder: not an object, or a field the API would refuse (the message names it).
    """
    if not isinstance(value, dict):
        raise InvalidOrder(f"{name} must be an object, not {type(value).__name__}")
    try:
        rules = dial_rules(value)
    except InvalidRules as error:
        raise InvalidOrder(str(error).replace("call_retry_config", name, 1)) from None
    return rules, rules.as_config(value)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "value"
    return f"{where}: {first.get('msg', 'invalid')}"
