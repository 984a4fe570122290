"""Error text without credentials, for logs, exception messages and ``status()``.

The repr of an aiohttp response error carries the request headers (``Authorization: Bearer ...``,
``Proxy-Authorization``) and, for a proxy error, the proxy URL with its password; so do the
tracebacks ``logger.exception`` prints for a chain holding one. Messages are therefore built from
safe fields (the exception type, an HTTP status, the parser's message, a host and port) and then
scrubbed: known secret values, ``user:password@`` in URLs, and ``Bearer``/``Basic`` credentials
and ``authorization``/``cookie`` header values become ``<redacted>``.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable

REDACTED = "<redacted>"
MAX_MESSAGE = 300  # characters of a third-party message kept in ours

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s'\"<>]*@")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=:-]+")
_HEADER_VALUE = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,>]*"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and anything that looks like a credential replaced."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _HEADER_VALUE.sub(rf"\1\2{REDACTED}", text)
    return _SCHEME_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``TypeName: detail`` for ``exc``, from fields that hold no request headers or proxy URL.

    aiohttp errors are read by their attributes (``status``/``message`` of a response error,
    ``host``/``port``/``os_error`` of a connection error), never by their repr.
    """
    name = type(exc).__name__
    status, message = getattr(exc, "status", None), getattr(exc, "message", None)
    if hasattr(exc, "request_info") and isinstance(status, int):  # aiohttp.ClientResponseError
        detail = f"HTTP {status}" + (f" {message}" if message else "")
    elif isinstance(os_error := getattr(exc, "os_error", None), OSError):
        # aiohttp.ClientConnectorError, also to a proxy: its host and port, never a URL
        why = os_error.strerror or type(os_error).__name__
        detail = f"cannot connect to {getattr(exc, 'host', '?')}:{getattr(exc, 'port', '?')} ({why})"
    else:
        detail = str(exc)
    detail = redact(" ".join(detail.split()), secrets)  # one line: parser messages span several
    if len(detail) > MAX_MESSAGE:
        detail = detail[:MAX_MESSAGE] + "..."
    return f"{name}: {detail}" if detail else name


def format_exception(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The traceback of ``exc`` and its chain, as ``logger.exception`` would print it, redacted."""
    return redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), secrets)
