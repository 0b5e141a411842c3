"""The one redaction applied wherever call data leaves the hook.

A call response can carry other people's credentials (a custom LLM's API key,
custom tools' headers and query parameters). Everything written to XCom,
storage, logs or an error message goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

MASK = "***"

_SECRET_PARTS = frozenset(
    {
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "authorization",
        "auth",
        "cookie",
        "credential",
        "credentials",
        "signature",
        "bearer",
    }
)
_SECRET_JOINED = ("api_key", "apikey", "private_key", "access_key", "client_secret", "session_key")
_TOOL_SECRET_CONTAINERS = frozenset({"headers", "query_params", "queryparams", "query_parameters"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@")
_URL_QUERY_SECRET = re.compile(r"(?P<key>[?&][^=&#\s]+)=(?P<value>[^&#\s]*)")
_URL_SECRET_PARAMS = frozenset({"key", "sig", "code", "k"})
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")


# Cached: a call repeats the same few hundred key names, and this runs for every key of every call.
@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a mapping key names a credential (api_key, X-Api-Key, accessToken, password, ...)."""
    normalised = _CAMEL.sub("_", str(key)).lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    if any(joined in normalised for joined in _SECRET_JOINED):
        return True
    return any(part in _SECRET_PARTS for part in normalised.split("_"))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask credentials inside free text: URL user-info, secret query parameters, bearer tokens.

    Args:
        text: the text to clean.
        secrets: literal values (such as the connection's API key) to mask wherever they appear.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _URL_QUERY_SECRET.sub(
        lambda m: f"{m.group('key')}={MASK}" if _is_secret_param(m.group("key")[1:]) else m.group(0), text
    )
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def _is_secret_param(name: str) -> bool:
    return name.lower() in _URL_SECRET_PARAMS or is_secret_key(name)


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Return a deep copy of ``value`` with every credential replaced by ``"***"``.

    Masks the values of keys named like a credential at any depth (``llm_model.api_key``,
    ``Authorization``, ``client_secret``, ...), every value of custom tools' ``headers`` and
    ``query_params``, and credentials embedded in strings. The input is never modified.
    """
    secret_list = tuple(s for s in secrets if s)
    return _redact(value, secret_list, in_tool_container=False)


def _redact(value: Any, secrets: tuple[str, ...], in_tool_container: bool) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key_text = str(key)
            if in_tool_container or is_secret_key(key_text):
                out[key] = _mask_all(item)
            elif key_text.lower().replace("-", "_") in _TOOL_SECRET_CONTAINERS:
                out[key] = _redact(item, secrets, in_tool_container=True)
            else:
                out[key] = _redact(item, secrets, in_tool_container=False)
        return out
    if isinstance(value, list | tuple):
        if in_tool_container:
            return [_mask_header_entry(item) for item in value]
        return [_redact(item, secrets, in_tool_container=False) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def _mask_all(value: Any) -> Any:
    """Mask every leaf under a secret key, keeping the shape (None stays None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: _mask_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_all(item) for item in value]
    return MASK


def _mask_header_entry(entry: Any) -> Any:
    """Headers as a list: ``[{"key": "Authorization", "value": "..."}]`` or ``[["k", "v"]]``."""
    if isinstance(entry, dict):
        return {
            key: (item if str(key).lower() in ("key", "name") else _mask_all(item))
            for key, item in entry.items()
        }
    if isinstance(entry, list | tuple) and len(entry) == 2:
        return [entry[0], _mask_all(entry[1])]
    return _mask_all(entry)


__all__ = ["MASK", "is_secret_key", "redact", "redact_text"]
