"""The one redaction applied wherever call data leaves the hook.

A call response can carry other people's credentials (a custom LLM's API key,
custom tools' headers and query parameters, tool arguments). Everything written
to XCom, storage, logs or an error message goes through :func:`redact` or
:func:`redact_text` first.

It runs on every call of an export, so it walks each value once: strings that hold
JSON are decoded and walked as structures, other strings are scanned by a few
regular expressions, and name checks are cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

#: Mappings and lists nested deeper than this are masked whole: deeper data is hostile, and
#: walking it would end in ``RecursionError`` (here or in whatever serialises the result).
MAX_DEPTH = 64
#: Longer strings are not decoded as JSON (their secret pairs are still masked as text).
MAX_JSON_CHARS = 1_000_000

_SECRET_PARTS = frozenset(
    {"pass", "passphrase", "pwd", "authorization", "auth", "signature", "bearer", "jwt"}
    | {"sessionid", "pin", "otp", "totp", "passcode"}
)
# Whole names that are credentials on their own, though "session_count" or "sort_key" are not.
_SECRET_WHOLE = frozenset({"key", "session"})
# A part ending in one of these names a credential too: "accesstoken", "clientSecret", "passwords".
# Not "tokens": "max_tokens" and "prompt_tokens" count an LLM's tokens.
_SECRET_SUFFIXES = (
    *("token", "secret", "secrets", "password", "passwords", "passwd", "apikey", "apikeys"),
    *("credential", "credentials", "cookie", "cookies"),
)
_SECRET_JOINED = ("api_key", "private_key", "access_key", "session_key", "session_id")
# Names that end in "key" but name data, not a credential.
_PLAIN_KEYS = frozenset(
    {"primary", "foreign", "sort", "partition", "cache", "lookup", "group", "row", "object", "public"}
)
# Query parameter names that hold a credential in URLs only ("code" in prose is a postal code).
_URL_SECRET_PARAMS = frozenset({"key", "sig", "code", "k"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# scheme://user@ or scheme://user:password@ (also scheme-relative //user@, and JSON's \/\/).
# The look-behind starts a scheme only at the start of a word: without it, a long word in a
# text holding an "@" costs time in the square of its length.
_URL_USERINFO = re.compile(
    r"(?P<scheme>(?:(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*:)?(?:\\?/){2})[^/?#@\s\\]+@"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=-]{4,})")
# "Authorization token abc", "Proxy-Authorization Digest: abc": a credential after an auth scheme
# word that follows an authorization name, with or without a colon anywhere between.
_AUTH_SCHEME = re.compile(
    r"""(?i)\b(?P<lead>(?:proxy[-_ ]?)?authori[sz]ation[ \t]*:?[ \t]*
        (?:bearer|basic|token|digest|negotiate|ntlm|apikey|api[-_ ]key|key)[ \t]*[:=]?[ \t]*)
        (?P<token>[A-Za-z0-9._~+/=-]{4,})""",
    re.VERBOSE,
)
# The name and separator of name=value (query strings, fragments, connection strings) and
# name: value (header lines, JSON or YAML text), wherever a name can start.
_PAIR_NAME = re.compile(
    r"""(?<![^\s?&#;,{(\[/])
        (?P<quote>\\?["']|)(?P<name>[A-Za-z_][\w%.+-]*)(?P=quote)
        [ \t]*(?P<sep>[:=])[ \t]*""",
    re.VERBOSE,
)
# The value after a secret name: quoted (JSON, possibly escaped inside another JSON string,
# possibly cut short) or one token (with its auth scheme: "Token abc").
_PAIR_VALUE = re.compile(
    r"""(?:\r?\n[ \t]*)?  # pretty-printed JSON: the value on the next line
        (?:\\"(?:[^"\\]|\\[^"])*(?:\\"|$)
          | "(?:[^"\\]|\\.)*"?
          | '(?:[^'\\]|\\.)*'?
        )
      | (?:(?:bearer|basic|token|digest|negotiate|ntlm)[ \t]+)?[^\s&#;"'<>{}\[\]\\]+""",
    re.VERBOSE | re.IGNORECASE,
)


# Cached: a call repeats the same few hundred key names, and this runs for every key of every call.
@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a mapping key names a credential (api_key, X-Api-Key, accessToken, password, ...)."""
    normalised = _normalise(key)
    if normalised in _SECRET_WHOLE or any(joined in normalised for joined in _SECRET_JOINED):
        return True
    return any(part in _SECRET_PARTS or part.endswith(_SECRET_SUFFIXES) for part in normalised.split("_"))


def _normalise(name: str) -> str:
    return _CAMEL.sub("_", str(name)).lower().replace("-", "_").replace(" ", "_").replace(".", "_")


@lru_cache(maxsize=4096)
def _is_secret_name(name: str, in_url: bool = False) -> bool:
    """True when a header, parameter or ``{name, value}`` entry name is a credential.

    Broader than :func:`is_secret_key`: names of headers and parameters ending in "key"
    (``X-Crm-Key``, ``stripe_key``) are credentials, and so are some short URL parameters.
    """
    for _ in range(2):  # "api%5Fkey", and once more for "api%255Fkey"
        if "%" not in name:
            break
        name = unquote(name)
    if is_secret_key(name):
        return True
    parts = _normalise(name).split("_")
    if in_url and "_".join(parts) in _URL_SECRET_PARAMS:
        return True
    return parts[-1] == "key" and (len(parts) == 1 or parts[-2] not in _PLAIN_KEYS)


@lru_cache(maxsize=1024)
def _is_container(key: str) -> bool:
    """True for a mapping key holding headers or query parameters, whose values are all masked."""
    normalised = _normalise(key)
    last = normalised.rsplit("_", 1)[-1]
    return last in ("headers", "params", "querystring") or normalised.endswith(
        ("query_parameters", "query_string", "queryparams")
    )


def _known(secrets: Iterable[str]) -> tuple[str, ...]:
    # One key passed as a plain string would otherwise be read as its characters, each too
    # short to mask: the key itself would go through.
    return _prepare((secrets,) if isinstance(secrets, str) else tuple(secrets))


@lru_cache(maxsize=64)
def _prepare(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """The known secrets as they may appear in text: plain, JSON-escaped and percent-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 4:
            forms.update((secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)))
            forms.add(json.dumps(secret)[1:-1].replace("/", "\\/"))
    # Longest first, so a longer form is not left half-masked by a shorter one.
    return tuple(sorted(forms, key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str] = (), *, max_depth: int = MAX_DEPTH) -> str:
    """Mask credentials inside text, and the given literal secrets wherever they appear.

    Masks URL user-info, secret query parameters and header lines, bearer tokens and the
    values of secret names in JSON-like text. Text that is a JSON object or array is decoded,
    redacted as a structure (see :func:`redact`) and re-encoded; it is kept as it was when it
    holds nothing to mask.

    Args:
        text: the text to clean.
        secrets: literal values (such as the connection's API key) to mask wherever they appear.
        max_depth: nesting depth beyond which decoded JSON is masked whole.
    """
    return _clean_string(text, _known(secrets), max_depth)


def redact_message(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask the given literal secrets in a message the provider wrote for people.

    Such a message is built from data already redacted (see :mod:`airflow_provider_revox.exceptions`),
    so it is masked by value and not parsed as data: "no API key: put it in the password field"
    is prose, not a ``key: value`` pair. Values shaped like credentials (a URL's user-info, a
    token after ``Bearer`` or after an authorization scheme word) are still masked.

    Args:
        text: the message.
        secrets: literal values (such as the connection's API key) to mask wherever they appear.
    """
    known = _known(secrets)
    if known:
        text = _mask_literals(text, known)
    return _mask_shaped(text)


def _mask_shaped(text: str) -> str:
    """Mask credentials recognisable by their shape alone: URL user-info and scheme tokens."""
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    lower = text.lower()
    if "bearer" in lower or "basic" in lower:
        text = _BEARER.sub(_mask_token, text)
    if "authori" in lower:
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group('lead')}{MASK}", text)
    return text


def redact(value: Any, secrets: Iterable[str] = (), *, max_depth: int = MAX_DEPTH) -> Any:
    """Return a deep copy of ``value`` with every credential replaced by ``"***"``.

    Masks the values of keys named like a credential at any depth (``llm_model.api_key``,
    ``Authorization``, ``client_secret``, ...), every value under a headers or query-parameter
    container (``headers``, ``request_headers``, ``query_params``, ``params``, ... whether a
    mapping, a list of ``{name, value}`` entries or pairs, or a string), the value of any
    ``{name|key, value}`` entry whose name is a credential, and credentials inside strings
    (see :func:`redact_text`). Mappings and lists nested deeper than ``max_depth`` are masked
    whole. Tuples become lists. The input is never modified.
    """
    return _walk(value, _known(secrets), max_depth)


def _walk(value: Any, secrets: tuple[str, ...], depth: int) -> Any:
    if isinstance(value, str):
        return _clean_string(value, secrets, depth)
    if isinstance(value, dict):
        return _walk_dict(value, secrets, depth - 1) if depth > 0 else MASK
    if isinstance(value, list | tuple):
        return [_walk(item, secrets, depth - 1) for item in value] if depth > 0 else MASK
    return value


def _walk_dict(value: dict[Any, Any], secrets: tuple[str, ...], depth: int) -> dict[Any, Any]:
    masked_value = _credential_entry_value(value)
    entry = "value" in value or "Value" in value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        name = key if isinstance(key, str) else str(key)
        if secrets and isinstance(key, str):
            key = _mask_literals(key, secrets)
        if name == masked_value or (is_secret_key(name) and not (entry and name in _ENTRY_NAMES)):
            out[key] = _mask_all(item, secrets, depth)
        elif _is_container(name):
            out[key] = _mask_container(item, secrets, depth)
        else:
            out[key] = _walk(item, secrets, depth)
    return out


# The name fields of a {name|key, value} entry: the name of a credential, not one.
_ENTRY_NAMES = frozenset({"name", "key", "Name", "Key"})


def _credential_entry_value(entry: dict[Any, Any]) -> str | None:
    """The value field of a ``{"name": "Authorization", "value": ...}`` entry, else None."""
    for value_field in ("value", "Value"):
        if value_field in entry:
            for name_field in ("name", "key", "Name", "Key"):
                name = entry.get(name_field)
                if isinstance(name, str) and _is_secret_name(name):
                    return value_field
    return None


def _mask_all(value: Any, secrets: tuple[str, ...], depth: int) -> Any:
    """Mask every leaf under a secret key, keeping the shape (None stays None)."""
    if value is None:
        return None
    if depth <= 0:
        return MASK
    if isinstance(value, dict):
        return {_mask_key(key, secrets): _mask_all(item, secrets, depth - 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_all(item, secrets, depth - 1) for item in value]
    return MASK


def _mask_container(value: Any, secrets: tuple[str, ...], depth: int, *, entry: bool = False) -> Any:
    """Headers or query parameters: every value masked, the names of headers kept.

    A container is a mapping, a string, or a list of entries (``entry``): each entry is a
    ``{"key": "Authorization", "value": "..."}`` mapping or an ``["Authorization", "..."]`` pair.
    """
    if depth > 0 and isinstance(value, dict):
        return _mask_entry(value, secrets, depth - 1)
    if depth > 0 and isinstance(value, list | tuple):
        if not entry:
            return [_mask_container(item, secrets, depth - 1, entry=True) for item in value]
        if len(value) == 2 and isinstance(value[0], str):
            return [_mask_key(value[0], secrets), _mask_all(value[1], secrets, depth - 1)]
    return _mask_all(value, secrets, depth)


def _mask_entry(entry: dict[Any, Any], secrets: tuple[str, ...], depth: int) -> dict[Any, Any]:
    # A name is kept only beside a value field: in {"key": "..."} alone, "key" is the parameter.
    names = ("name", "key", "Name", "Key") if "value" in entry or "Value" in entry else ()
    return {
        _mask_key(key, secrets): (
            _mask_key(item, secrets)
            if key in names and isinstance(item, str)
            else _mask_all(item, secrets, depth)
        )
        for key, item in entry.items()
    }


def _mask_key(key: Any, secrets: tuple[str, ...]) -> Any:
    return _mask_literals(key, secrets) if secrets and isinstance(key, str) else key


def _mask_literals(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _clean_string(text: str, secrets: tuple[str, ...], depth: int) -> str:
    if text[:1] in _JSON_FIRST and _looks_like_json(text):
        try:
            decoded = json.loads(text)
        except RecursionError:
            return MASK  # nested deeper than the decoder can go: hostile, masked whole
        except ValueError:
            pass  # not JSON after all (or cut short): its pairs are masked as text below
        else:
            cleaned = _walk(decoded, secrets, depth)
            if cleaned != decoded:
                return json.dumps(cleaned, ensure_ascii=False)
            # Nothing to mask in the decoded value; the raw text is still scanned, for a
            # credential the decoder dropped (a duplicate key).
    if secrets:
        text = _mask_literals(text, secrets)
    text = _mask_shaped(text)
    if ("=" in text or ":" in text) and _may_name_a_secret(text.lower()):
        text = _mask_pairs(text)
    return text


def _mask_token(match: re.Match[str]) -> str:
    scheme, token = match.group(1), match.group(2)
    if scheme.lower() == "basic" and (len(token) < 8 or (token.isalpha() and token[1:].islower())):
        # "the basic package": a word, not base64 of "user:password".
        return match.group(0)
    return f"{scheme} {MASK}"


_JSON_FIRST = frozenset("{[ \t\r\n")
# Every name _is_secret_name accepts contains one of these once lower-cased (or is
# percent-encoded). Checking them is far cheaper than scanning every string for pairs.
_NAME_HINTS = (
    *("key", "token", "secret", "pass", "pwd", "auth", "cookie", "credential", "sig", "bearer", "jwt"),
    *("code", "k=", "k =", "%", "session", "sid", "pin", "otp"),
)


def _may_name_a_secret(lower: str) -> bool:
    return any(hint in lower for hint in _NAME_HINTS)


def _looks_like_json(text: str) -> bool:
    if len(text) < 2 or len(text) > MAX_JSON_CHARS:
        return False
    first, last = text[0], text[-1]
    if first.isspace() or last.isspace():
        stripped = text.strip()
        first, last = stripped[:1], stripped[-1:]
    return (first == "{" and last == "}") or (first == "[" and last == "]")


def _mask_pairs(text: str) -> str:
    # A value is read only after a secret name, and the search goes on after what was masked:
    # a value that is not masked (a URL after "https:") is searched for pairs inside it, and
    # no stretch of text is read twice for a value.
    pieces: list[str] = []
    done = 0
    match = _PAIR_NAME.search(text)
    while match:
        name, separator, start = match.group("name"), match.group("sep"), match.end()
        value = _PAIR_VALUE.match(text, start) if _is_secret_name(name, separator == "=") else None
        if value is None:
            match = _PAIR_NAME.search(text, start)
            continue
        end = value.end()
        if separator == ":" and text[start : start + 1] not in _QUOTES and _normalise(name) in _WHOLE_LINE:
            # "Cookie: a=1; session=..." or "Authorization: Digest username=..., response=...".
            line_end = text.find("\n", start)
            end = len(text) if line_end < 0 else line_end
        pieces += (text[done:start], _masked_like(value.group()))
        done = end
        match = _PAIR_NAME.search(text, end)
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


_QUOTES = frozenset("\\\"'\r\n")
_WHOLE_LINE = frozenset({"cookie", "set_cookie", "authorization", "proxy_authorization"})


def _masked_like(value: str) -> str:
    """The mask, quoted as the value was (after any line break), so JSON text keeps its shape."""
    quoted = value.lstrip()
    gap = value[: len(value) - len(quoted)]
    for quote_mark in ('\\"', '"', "'"):
        if quoted.startswith(quote_mark):
            return f"{gap}{quote_mark}{MASK}{quote_mark}"
    return MASK
