"""An Anthropic SDK exception reduced to a :class:`~aster_nb.llm.retry.Failure`, key scrubbed.

What the retry policy needs of a failed attempt (its kind, status, whether it is worth
another attempt and how long the server asked us to wait) as plain data: no SDK object
(which holds the request and its auth header) leaves here, and every message has the API
key, and anything shaped like one, replaced by ``[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import anthropic

from .retry import RETRY_STATUSES, Failure, retry_after, status_kind

__all__ = ["failure_of", "scrub"]

_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each of ``secrets`` and anything shaped like an API key redacted."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_SHAPE.sub("[redacted]", text)


def failure_of(
    e: anthropic.AnthropicError, *, timeout: float, secrets: Iterable[str | None]
) -> Failure:
    """What the failed attempt that raised ``e`` hit.

    Args:
        e: the SDK's exception.
        timeout: the attempt's timeout in seconds (named in a timeout's message).
        secrets: the key and token to scrub from messages.
    """
    secrets = tuple(secrets)
    if isinstance(e, anthropic.APIStatusError):
        status = e.status_code
        headers = e.response.headers
        retryable = status in RETRY_STATUSES or status >= 500
        hint = headers.get("x-should-retry")
        if hint in ("true", "false"):
            retryable = hint == "true"
        kind = status_kind(status)
        detail = getattr(e, "api_message", None) or _body_message(e.body)
        err_type = getattr(e, "type", None) or _body_type(e.body) or kind
        return Failure(
            kind=kind,
            status=status,
            message=scrub(f"HTTP {status} {err_type}: {detail}", secrets),
            retryable=retryable,
            retry_after=retry_after(headers) if retryable else None,
        )
    if isinstance(e, anthropic.APITimeoutError):
        return Failure("timeout", None, f"no reply within timeout={timeout:g} s", retryable=True)
    if isinstance(e, anthropic.APIConnectionError):
        cause = e.__cause__
        why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return Failure(
            "connection", None, scrub(f"connection failed{why}", secrets), retryable=True
        )
    return Failure("client", None, scrub(f"{type(e).__name__}: {e}", secrets), retryable=False)


def _body_message(body: object) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return str(body)[:300] if body is not None else ""


def _body_type(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        t = body["error"].get("type")
        return t if isinstance(t, str) else None
    return None
