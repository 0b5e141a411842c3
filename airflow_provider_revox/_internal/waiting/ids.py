"""Call-id lists as upstream tasks hand them over: validated, de-duplicated, in order.

Pure: no I/O. Used by the batch sensor and the export operator alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox.exceptions import RevoxInvalidCallIdError

#: The key of a ``RevoxCallsSensor`` result whose id lists are in a file
#: (:mod:`~airflow_provider_revox._internal.export.ids_file` writes and reads it). Named here,
#: below the file's module, because a result with it cannot be read as call ids.
IDS_URI = "ids_uri"


def _excerpt(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_templated(value: Any) -> bool:
    """Whether ``value`` is only known at run time: a Jinja string, or an object Airflow resolves
    (an ``XComArg``). Plain data is checked when the DAG is parsed; this is not."""
    if isinstance(value, str):
        return "{{" in value
    return not isinstance(value, int | float | Mapping | list | tuple | type(None))


def holds_template(value: Any) -> bool:
    """Whether ``value`` or anything nested in it is only known at run time (see :func:`is_templated`)."""
    if isinstance(value, Mapping):
        return any(holds_template(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_template(item) for item in value)
    return is_templated(value)


def unrendered(value: Any, path: str) -> tuple[str, str] | None:
    """The first text still holding ``{{`` in ``value``, after rendering: its place and the text."""
    if isinstance(value, str):
        return (path, value) if "{{" in value or "{%" in value else None
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, Any]] = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for place, item in items:
        found = unrendered(item, place)
        if found is not None:
            return found
    return None


#: What to do when a template rendered a list or a mapping to its text.
NATIVE_HINT = (
    "a Jinja template renders to text unless the DAG sets render_template_as_native_obj=True; "
    "set it, or pass the XComArg (task.output) itself"
)


def text_form_of_data(value: str) -> bool:
    """Whether ``value`` is the text of a list, tuple or mapping (``"['c1', 'c2']"``), not an id."""
    stripped = value.strip()
    return len(stripped) >= 2 and stripped[0] + stripped[-1] in ("[]", "()", "{}")


def _check_not_text_form(value: str, name: str) -> None:
    if text_form_of_data(value):
        raise RevoxInvalidCallIdError(
            f"{name}: got the text {_excerpt(value)}, the string form of a list or mapping, not a "
            f"call id: {NATIVE_HINT}"
        )


def one_call_id(value: Any, name: str = "call_id") -> str:
    """The one call id in what an upstream task hands over, validated.

    Accepts what :func:`normalize_call_ids` accepts (an id, a placement's or sensor's summary
    with ``call_id``, a list of them) as long as it names exactly one order.

    Raises:
        RevoxInvalidCallIdError: a ``ValueError`` naming the problem: not a usable id, the text
            of a list (with how to pass the list itself), or not exactly one order.
    """
    if isinstance(value, str):
        _check_not_text_form(value, name)
        try:
            return validate_call_id(value)
        except ValueError as error:
            raise RevoxInvalidCallIdError(f"{name}: {error}") from None
    try:
        ids = normalize_call_ids(value)
    except ValueError as error:
        raise RevoxInvalidCallIdError(str(error).replace("call_ids:", f"{name}:", 1)) from None
    if len(ids) != 1:
        got = f"{len(ids)}: {_excerpt(ids)}"
        raise RevoxInvalidCallIdError(f"{name}: needs exactly one call order, got {got}")
    return ids[0]


def normalize_call_ids(value: Any) -> list[str]:
    """Turn whatever upstream tasks hand over into a de-duplicated list of call ids, in order.

    Accepts a call id, a list of ids, a sensor's summary (a mapping with ``call_id``) or a list of
    them (also the lazy sequence a mapped sensor produces), or a multi-call sensor's result (a
    mapping with ``completed`` and ``failed`` id lists), nested in any combination.

    Raises:
        ValueError: naming the first value that is not a usable call id.
    """
    ids: dict[str, None] = {}

    def visit(item: Any) -> None:
        if isinstance(item, str):
            _check_not_text_form(item, "call_ids")
            ids.setdefault(validate_call_id(item), None)
        elif isinstance(item, Mapping):
            if IDS_URI in item:
                # Its lists are cut to a few failed ids: reading them as the ids would lose the rest.
                raise ValueError(
                    f"call_ids: this RevoxCallsSensor result keeps its ids in the file {item[IDS_URI]!r}; "
                    "RevoxCallsToStorageOperator reads them from there"
                )
            if "call_id" in item:
                visit_id(item["call_id"])
            elif "completed" in item or "failed" in item:
                for key in ("completed", "failed"):
                    listed = item.get(key) or ()
                    # A bare string is one id, not a sequence of one-character ids.
                    for nested in [listed] if isinstance(listed, str) else listed:
                        visit(nested)
            else:
                raise ValueError(
                    f"call_ids: a mapping needs 'call_id' or 'completed'/'failed' lists, got keys "
                    f"{sorted(map(str, item))}"
                )
        elif isinstance(item, Iterable) and not isinstance(item, bytes):
            for nested in item:
                visit(nested)
        else:
            visit_id(item)

    def visit_id(item: Any) -> None:
        try:
            ids.setdefault(validate_call_id(item), None)
        except ValueError as error:
            raise RevoxInvalidCallIdError(f"call_ids: {error}") from None

    try:
        visit(value)
    except ValueError as error:
        message = str(error)
        problem = message if message.startswith("call_ids") else f"call_ids: {message}"
        raise RevoxInvalidCallIdError(problem) from None
    return list(ids)


def batch_call_ids(value: Any) -> list[str]:
    """The ids a batch sensor waits on: validated, de-duplicated in order, never empty.

    Takes what :func:`normalize_call_ids` takes: an id, a list of ids, or of mappings with
    ``call_id`` (what single-call sensors and the placement operator return), as an upstream
    task hands them over.

    Raises:
        ValueError: on the text of a list (a template rendered to text instead of a list), an
            unusable id, or an empty list.
    """
    ids = normalize_call_ids(value)  # one id alone is a list of one; a list's text is refused
    if not ids:
        raise ValueError("call_ids is empty: give at least one call order to wait for")
    return ids
