"""HubSpot requests as task delivery and score publication send them: one request, no retry (the
caller decides what a failure means), and error text made safe to store."""

from __future__ import annotations

from typing import Any

import requests

from healthscore.notify.outbox import redact as _redact
from healthscore.sources.base import HttpClient

MAX_ERROR_CHARS = 500
_CHUNK = 500  # keys per IN (...) list in the warehouse reads and deletes


class _Ambiguous(Exception):
    """The POST may or may not have created the task: search before trying again."""


def redact(text: str, secrets: tuple[str | None, ...] = (), *, limit: int | None = MAX_ERROR_CHARS) -> str:
    """Text safe to store (``notify.outbox.redact``, capped at ``MAX_ERROR_CHARS`` by default)."""
    return _redact(text, secrets, limit=limit)


def _secrets(client: HttpClient) -> tuple[str | None, ...]:
    conn = client.connection
    return (conn.password, conn.login if conn.password is None else None)


def _send(client: HttpClient, method: str, path: str, body: Any) -> requests.Response:
    """One request, no retry: the caller decides what a failure means for exactly-once."""
    client.stats.requests += 1
    try:
        return client.session.request(method, client.url(path), json=body, timeout=client.policy.timeout)
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise _Ambiguous(f"{method} {path}: {type(exc).__name__}") from exc


def _summary(response: requests.Response) -> str:
    return f"{response.request.method} {response.url.split('?')[0]} -> {response.status_code}: {response.text[:300]}"


def _backoff(client: HttpClient, attempt: int, retry_after: float | None = None) -> float:
    if retry_after is not None:
        return min(retry_after, client.policy.backoff_max * 3)
    return min(client.policy.backoff_max, client.policy.backoff_base * 2**attempt)
