"""Read an Airflow connection into :class:`RevoxSettings`: base URL, API key, extras, plain-http policy.

Every value is checked here, once, before any request is sent: a connection that cannot be used
fails with a :class:`~airflow_provider_revox.exceptions.RevoxConfigError` naming the connection
and the field, never showing a secret.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from airflow.sdk import Connection
from airflow.sdk.log import mask_secret

from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox.exceptions import RevoxAuthError, RevoxConfigError, RevoxInsecureConnectionError
from airflow_provider_revox.get_provider_info import DEFAULT_BASE_URL, get_provider_info

log = logging.getLogger("airflow_provider_revox._internal.hooks.revox")

DEFAULT_TIMEOUT = 60.0
#: Longest ``timeout`` accepted: a larger one would hide a hung request for hours.
MAX_TIMEOUT = 3600.0
DEFAULT_MAX_RETRIES = 5
MAX_RETRIES = 100
#: Requests per second: 0 means no limit; a positive rate must lie in this range.
MIN_RATE = 0.001
MAX_RATE = 1e6
#: Largest JSON body read into memory, in MiB (extra ``max_response_mb``).
DEFAULT_MAX_RESPONSE_MB = 64.0
#: Largest recording downloaded, in MiB (extra ``max_recording_mb``).
DEFAULT_MAX_RECORDING_MB = 2048.0
MAX_SIZE_MB = 1024.0 * 1024
#: Overall deadline of one recording download, in seconds (extra ``download_timeout``).
DEFAULT_DOWNLOAD_TIMEOUT = 900.0
MAX_DOWNLOAD_TIMEOUT = 86400.0
MIB = 1024 * 1024

Resolver = Callable[[str], Iterable[str]]


@dataclass(frozen=True)
class RevoxSettings:
    """What the hook reads from its Airflow connection (the key never shows in the repr)."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    #: Let the key travel over plain http to a host that is not loopback (a trusted network).
    allow_insecure_http: bool = False
    #: Requests per second shared by every hook of this connection in the process; 0 = unlimited.
    max_requests_per_second: float = 0.0
    #: Let 429 answers cut this process's rate, and acceptance grow it back (up to the ceiling above).
    adaptive_rate: bool = True
    #: Poll many call orders with one ``POST /call/search``
    #: (see :mod:`airflow_provider_revox._internal.hooks.poller`).
    batch_polls: bool = True
    max_response_bytes: int = int(DEFAULT_MAX_RESPONSE_MB * MIB)
    max_recording_bytes: int = int(DEFAULT_MAX_RECORDING_MB * MIB)
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT
    #: Where the Airflow api-server is reached from the internet (extra ``webhook_base_url``).
    webhook_base_url: str | None = None
    #: The webhook tokens accepted: the current one first (extras ``webhook_token``,
    #: ``webhook_previous_token``).
    webhook_tokens: tuple[str, ...] = field(default=(), repr=False)

    def check_plain_http(self, resolve: Resolver | None = None) -> None:
        """Refuse to send the key over plain http, except to loopback or when the connection allows it.

        Raises:
            RevoxInsecureConnectionError: naming the connection and the host.
        """
        url = httpx.URL(self.base_url)
        if url.scheme == "http" and not self.allow_insecure_http and not is_loopback(url.host, resolve):
            raise RevoxInsecureConnectionError(
                f"Revox connection {self.conn_id!r} would send the API key over plain http to {url.host}: "
                "use https, or set the extra 'allow_insecure_http' to true if this network is trusted"
            )


def _system_resolve(name: str) -> set[str]:
    return {str(info[4][0]) for info in socket.getaddrinfo(name, None)}


def is_loopback(host: str, resolve: Resolver | None = None) -> bool:
    """True for ``localhost``, a loopback address, or a ``*.localhost`` name that resolves only to loopback.

    A ``.localhost`` name is not trusted on its name alone: a resolver may map it anywhere.

    Args:
        host: a host name or IP address (IPv6 with or without brackets).
        resolve: returns the addresses of a name (default: the system resolver).
    """
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    if not name.endswith(".localhost"):
        return False
    try:
        addresses = [address.split("%", 1)[0] for address in (resolve or _system_resolve)(name)]
        return bool(addresses) and all(ipaddress.ip_address(address).is_loopback for address in addresses)
    except (OSError, ValueError):
        return False


def truthy(value: Any) -> bool:
    """Read a flag as the UI form or a JSON extra gives it (``true``, ``"1"``, ``"yes"``, ``"on"``)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def read_number(
    where: str, value: Any, *, minimum: float, maximum: float, integer: bool = False
) -> float | None:
    """Read one number of a connection or an argument; None when absent (None or empty text).

    Text holding a number is accepted, as the UI form stores text. Booleans, text that is not a
    number, fractions where a whole number is needed and values outside
    ``[minimum, maximum]`` are refused.

    Args:
        where: what the value is, for the message (``"Revox connection 'x': extra 'timeout'"``).
        value: the value as given.
        minimum: smallest value accepted.
        maximum: largest value accepted.
        integer: the value must be a whole number.

    Raises:
        RevoxConfigError: naming ``where`` and what is expected.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    kind = "a whole number" if integer else "a number"
    expected = f"{where} must be {kind} from {minimum:g} to {maximum:g}, not {str(value)[:40]!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RevoxConfigError(expected)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise RevoxConfigError(expected) from None
    if not math.isfinite(number) or not minimum <= number <= maximum or (integer and not number.is_integer()):
        raise RevoxConfigError(expected)
    return number


def base_url_from(conn: Connection) -> str:
    """The API base URL of a connection: its host (a full URL, or a host with a path in ``schema``).

    Raises:
        RevoxConfigError: not an http(s) URL, or it holds a user name or password.
    """
    host = (conn.host or "").strip()
    schema = (conn.schema or "").strip().strip("/")
    if not host:
        return DEFAULT_BASE_URL
    where = f"Revox connection {conn.conn_id!r}"
    try:
        if "://" in host:
            url = httpx.URL(host)
        else:
            # A URI connection (revox://:KEY@host/api) lands its path in ``schema``; a UI one may set
            # ``schema`` to http or https.
            scheme = schema.lower() if schema.lower() in ("http", "https") else "https"
            url = httpx.URL(f"{scheme}://{host}")
            if conn.port and url.port is None:
                url = url.copy_with(port=int(conn.port))
            if schema and schema.lower() not in ("http", "https") and url.path in ("", "/"):
                url = url.copy_with(path=f"/{schema}")
    except (httpx.InvalidURL, ValueError):
        raise RevoxConfigError(f"{where}: the Base URL {redact_text(host)!r} is not a URL") from None
    if url.userinfo:
        # httpx would send it as Basic auth instead of the key, and it would show in messages.
        raise RevoxConfigError(
            f"{where}: the Base URL holds a user name or password; remove it (the API key goes in "
            "the API key field)"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise RevoxConfigError(f"{where}: the Base URL {redact_text(host)!r} is not an http(s) URL")
    return str(url.copy_with(query=None, fragment=None)).rstrip("/")


def known_extras() -> frozenset[str]:
    """The extras the hook reads: the connection form's fields, and ``api_key``."""
    (form,) = get_provider_info()["connection-types"]
    return frozenset({*form["conn-fields"], "api_key"})


def connection_warnings(conn: Connection, extra: dict[str, Any]) -> list[str]:
    """What a connection holds that the hook ignores: an unknown extra (with the closest known
    name), and a Port field beside a Base URL that is a full URL (the URL's port wins)."""
    where = f"Revox connection {conn.conn_id!r}"
    known = sorted(known_extras())
    found = []
    for name in extra:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the extras it reads are {', '.join(known)}"
        found.append(f"{where}: extra {str(name)[:60]!r} is not a setting of this provider, ignored; {hint}")
    host = (conn.host or "").strip()
    if conn.port and "://" in host:
        try:
            url = httpx.URL(host)
        except (httpx.InvalidURL, ValueError):
            return found
        if url.port != conn.port:
            found.append(
                f"{where}: the Port field ({conn.port}) is ignored because the Base URL is a full URL "
                f"({redact_text(str(url.copy_with(query=None, fragment=None)))}); put the port in the Base "
                "URL, e.g. https://host:8443/api"
            )
    return found


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # A hook is built at every poke: each problem is logged once per process, not once per poke.
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _api_key(conn: Connection, extra: dict[str, Any]) -> str:
    # Whitespace-only counts as absent: an empty-looking password must not hide extra.api_key.
    for candidate in (conn.password, extra.get("api_key")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    raise RevoxAuthError(
        f"Revox connection {conn.conn_id!r} has no API key: put it in the API key (password) field "
        "or in the extra 'api_key'",
        conn_id=conn.conn_id,
    )


def webhook_tokens_from(conn_id: str, extra: dict[str, Any]) -> tuple[str, ...]:
    """The webhook tokens a connection's extra accepts (current first), each masked in logs.

    Raises:
        RevoxConfigError: a token that is not a string of at least 32 characters.
    """
    tokens = []
    for name in ("webhook_token", "webhook_previous_token"):
        value = extra.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or len(value.strip()) < 32:
            raise RevoxConfigError(
                f"Revox connection {conn_id!r}: extra {name!r} must be a random string of at least 32 "
                "characters (RevoxHook.new_webhook_token() makes one)"
            )
        mask_secret(value.strip())
        tokens.append(value.strip())
    return tuple(tokens)


def webhook_base_url_from(conn_id: str, extra: dict[str, Any]) -> str | None:
    """The extra ``webhook_base_url``, without a trailing slash; None when unset.

    Raises:
        RevoxConfigError: not an http(s) URL.
    """
    value = extra.get("webhook_base_url")
    if value in (None, ""):
        return None
    url = httpx.URL(str(value).strip()) if isinstance(value, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise RevoxConfigError(
            f"Revox connection {conn_id!r}: extra 'webhook_base_url' must be the https URL the Airflow "
            f"api-server is reached at, not {redact_text(str(value))[:200]!r}"
        )
    return str(url).rstrip("/")


def settings_from_connection(
    conn: Connection,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    resolve: Resolver | None = None,
) -> RevoxSettings:
    """Read base URL, API key and extras from a connection; ``timeout`` and ``max_retries`` win over extras.

    Raises:
        RevoxAuthError: the connection has no API key.
        RevoxInsecureConnectionError: plain http to a host that is not loopback, not allowed.
        RevoxConfigError: an unreadable base URL or extra.
    """
    conn_id = conn.conn_id
    try:
        json.loads(conn.extra or "{}")
    except ValueError:
        raise RevoxConfigError(f"Revox connection {conn_id!r}: the extra is not valid JSON") from None
    extra = conn.extra_dejson if conn.extra else {}
    if not isinstance(extra, dict):
        raise RevoxConfigError(
            f"Revox connection {conn_id!r}: the extra must be a JSON object, not a {type(extra).__name__}"
        )
    api_key = _api_key(conn, extra)
    mask_secret(api_key)
    for message in connection_warnings(conn, extra):
        _warn_once(message)

    def number(name: str, default: float, minimum: float, maximum: float, integer: bool = False) -> float:
        value = read_number(
            f"Revox connection {conn_id!r}: extra {name!r}",
            extra.get(name),
            minimum=minimum,
            maximum=maximum,
            integer=integer,
        )
        return default if value is None else value

    rate = number("max_requests_per_second", 0.0, 0.0, MAX_RATE)
    if 0 < rate < MIN_RATE:
        raise RevoxConfigError(
            f"Revox connection {conn_id!r}: extra 'max_requests_per_second' must be 0 (no limit) or at "
            f"least {MIN_RATE:g}, not {rate!r}"
        )
    settings = RevoxSettings(
        conn_id=conn_id,
        base_url=base_url_from(conn),
        api_key=api_key,
        timeout=check_timeout(timeout)
        if timeout is not None
        else number("timeout", DEFAULT_TIMEOUT, 0.01, MAX_TIMEOUT),
        max_retries=int(
            check_max_retries(max_retries)
            if max_retries is not None
            else number("max_retries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES, integer=True)
        ),
        allow_insecure_http=truthy(extra.get("allow_insecure_http", False)),
        max_requests_per_second=rate,
        adaptive_rate=extra.get("adaptive_rate") in (None, "") or truthy(extra["adaptive_rate"]),
        batch_polls=extra.get("batch_polls") in (None, "") or truthy(extra["batch_polls"]),
        max_response_bytes=int(number("max_response_mb", DEFAULT_MAX_RESPONSE_MB, 0.001, MAX_SIZE_MB) * MIB),
        max_recording_bytes=int(
            number("max_recording_mb", DEFAULT_MAX_RECORDING_MB, 0.001, MAX_SIZE_MB) * MIB
        ),
        download_timeout=number("download_timeout", DEFAULT_DOWNLOAD_TIMEOUT, 0.01, MAX_DOWNLOAD_TIMEOUT),
        webhook_base_url=webhook_base_url_from(conn_id, extra),
        webhook_tokens=webhook_tokens_from(conn_id, extra),
    )
    settings.check_plain_http(resolve)
    return settings


def check_timeout(timeout: Any) -> float:
    """A ``timeout`` argument, checked as the extra is; raises :class:`RevoxConfigError`."""
    value = read_number("timeout", timeout, minimum=0.01, maximum=MAX_TIMEOUT)
    if value is None:
        raise RevoxConfigError(f"timeout must be a number of seconds, not {timeout!r}")
    return value


def check_max_retries(max_retries: Any) -> int:
    """A ``max_retries`` argument, checked as the extra is; raises :class:`RevoxConfigError`."""
    value = read_number("max_retries", max_retries, minimum=0, maximum=MAX_RETRIES, integer=True)
    if value is None:
        raise RevoxConfigError(f"max_retries must be a whole number, not {max_retries!r}")
    return int(value)
