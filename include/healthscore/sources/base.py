"""The source interface: a connection, an HTTP client with retries, and paginated record streams.

A vendor module says how to page through its objects and how to resume, nothing else: which objects
exist, their mode, record id and modification time are declared in ``registry``; retries, rate-limit
waits, auth errors and the sandbox clock live here once. Adding Salesforce or Intercom means one new
module that implements ``Source`` and one registry entry.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from healthscore.sources import registry

log = logging.getLogger(__name__)

SANDBOX_CLOCK_HEADER = "X-Sandbox-Now"
_JSON = msgspec.json.Decoder()


class SourceError(RuntimeError):
    """A source request failed for good; the message names the connection."""


class SourceAuthError(SourceError):
    """Credentials were refused: retrying cannot help."""


class RetryableError(SourceError):
    """Transient: 5xx, 429, timeout, connection reset, or a truncated/malformed body.

    ``processed`` is False when the vendor certainly did not act on the request (a 429, a connect
    timeout, a malformed body of an answer already given counts as processed): only then may a request
    that is not idempotent be sent again.
    """

    def __init__(self, message: str, retry_after: float | None = None, processed: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.processed = processed


# RFC 9110 idempotent methods: sending one twice has the effect of sending it once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class SourceConnection:
    """Where a source lives and how to authenticate; built from an Airflow connection."""

    conn_id: str
    base_url: str
    login: str | None = None
    password: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_sandbox(self) -> bool:
        return bool(self.extra.get("sandbox"))

    @classmethod
    def from_airflow(cls, conn_id: str) -> SourceConnection:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        host = conn.host or ""
        if "://" not in host:
            scheme = conn.schema or "https"
            host = f"{scheme}://{host}"
        if conn.port and f":{conn.port}" not in host.split("://", 1)[1]:
            host = f"{host}:{conn.port}"
        return cls(conn_id, host.rstrip("/"), conn.login, conn.password, conn.extra_dejson or {})

    def __repr__(self) -> str:  # never print the secret
        return f"SourceConnection(conn_id={self.conn_id!r}, base_url={self.base_url!r}, login={self.login!r})"


@dataclass
class RetryPolicy:
    attempts: int = 8
    backoff_base: float = 0.25
    backoff_max: float = 20.0
    timeout: float = 30.0


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    records: int = 0


class HttpClient:
    """One requests session per source, with vendor-aware retry and rate-limit handling."""

    def __init__(self, connection: SourceConnection, auth: requests.auth.AuthBase | None = None,
                 headers: Mapping[str, str] | None = None, policy: RetryPolicy | None = None,
                 as_of: datetime | None = None, idempotency_header: str | None = None) -> None:
        self.connection = connection
        # The request header the vendor de-duplicates on (Stripe: Idempotency-Key); None: it has none.
        self.idempotency_header = idempotency_header
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update(headers or {})
        self.session.headers["User-Agent"] = "healthscore/0.1"
        if as_of is not None and connection.is_sandbox:
            self.session.headers[SANDBOX_CLOCK_HEADER] = as_of.astimezone(UTC).isoformat()

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else f"{self.connection.base_url}{path_or_url}"

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.backoff_max * 3)
        return min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (state.attempt_number - 1))

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: retry %d/%d in %.2fs after: %s", self.connection.conn_id, state.attempt_number,
                    self.policy.attempts - 1, state.next_action.sleep if state.next_action else 0, exc)

    def request(self, method: str, path_or_url: str, *, stream: bool = False, idempotent: bool | None = None,
                **kwargs: Any) -> requests.Response:
        """Send with retries; see ``safe_to_resend`` for which failures of which requests are retried."""
        retry = self.safe_to_resend(method, kwargs.get("headers"), idempotent)
        return self._retrying(retry)(self._send, method, self.url(path_or_url), stream=stream, **kwargs)

    def safe_to_resend(self, method: str, headers: Mapping[str, str] | None = None,
                       idempotent: bool | None = None) -> bool:
        """Whether a request the vendor may have acted on can be sent again.

        True for idempotent methods, for a request the caller declares idempotent (a search or batch read
        sent as POST, a PATCH of absolute values), and for one carrying the idempotency key the vendor
        honours. Otherwise a 5xx or a timeout is not retried: the create may have happened. A 429 is
        retried for every request: the vendor refused it before acting on it.
        """
        if idempotent is not None:
            return idempotent
        if method.upper() in IDEMPOTENT_METHODS:
            return True
        key = self.idempotency_header
        sent = {k.lower() for k in (*(headers or {}), *self.session.headers)}
        return key is not None and key.lower() in sent

    def _retrying(self, resend: bool = True) -> Retrying:
        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, RetryableError) and (resend or not exc.processed)

        return Retrying(retry=retry_if_exception(retryable), stop=stop_after_attempt(self.policy.attempts),
                        wait=self._wait, before_sleep=self._before_sleep, reraise=True)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.stats.requests += 1
        try:
            response = self.session.request(method, url, timeout=self.policy.timeout, **kwargs)
        except requests.ConnectTimeout as exc:  # never reached the vendor
            raise RetryableError(f"{method} {url}: {exc.__class__.__name__}", processed=False) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise RetryableError(f"{method} {url}: {exc.__class__.__name__}") from exc
        self.check(response)
        return response

    def check(self, response: requests.Response) -> None:
        """Raise the right error for a non-2xx answer."""
        status = response.status_code
        if status < 400:
            return
        summary = f"{response.request.method} {response.url.split('?')[0]} -> {status}: {response.text[:300]}"
        if status == 429 or status >= 500:
            raise RetryableError(summary, retry_after=self.retry_after(response), processed=status != 429)
        if status in (401, 403):
            raise SourceAuthError(
                f"connection '{self.connection.conn_id}' was refused ({status}); check its credentials. {summary}")
        raise SourceError(f"connection '{self.connection.conn_id}': {summary}")

    @staticmethod
    def retry_after(response: requests.Response) -> float | None:
        if "Retry-After" in response.headers:
            try:
                return float(response.headers["Retry-After"])
            except ValueError:
                return None
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if response.status_code == 429 and interval and response.headers.get("X-HubSpot-RateLimit-Remaining") == "0":
            return float(interval) / 1000
        return None

    def get_json(self, path_or_url: str, **kwargs: Any) -> dict:
        return self._json("GET", path_or_url, **kwargs)

    def post_json(self, path_or_url: str, body: Any, *, idempotent: bool | None = None, **kwargs: Any) -> dict:
        """POST a JSON body. Retried after a 5xx or timeout only if ``idempotent`` (a search, a batch read)
        or the request carries the vendor's idempotency key; a plain create is sent once (429s aside)."""
        return self._json("POST", path_or_url, json=body, idempotent=idempotent, **kwargs)

    def _json(self, method: str, path_or_url: str, *, idempotent: bool | None = None, **kwargs: Any) -> dict:
        """A JSON body; a truncated or malformed one is retried like a 5xx (if the request may be resent)."""
        url = self.url(path_or_url)
        resend = self.safe_to_resend(method, kwargs.get("headers"), idempotent)

        def once() -> dict:
            response = self._send(method, url, **kwargs)
            try:
                # msgspec decodes the same Python values several times faster than json (a 100k-account
                # backfill reads ~20k HubSpot pages); an empty or cut body raises DecodeError, a ValueError.
                return _JSON.decode(response.content)
            except ValueError as exc:
                raise RetryableError(f"{method} {url.split('?')[0]}: malformed JSON body ({exc})") from exc

        return self._retrying(resend)(once)

    def close(self) -> None:
        self.session.close()


@dataclass
class Page:
    """One page of records and the cursor that resumes after it."""

    records: list[dict]
    cursor: str | None


@dataclass(frozen=True)
class SourceObject:
    """A vendor object the pipeline lands: where its id and modification time live in a record."""

    name: str
    id_field: str = "id"
    updated_field: str | None = None

    def record_id(self, record: Mapping[str, Any]) -> str:
        return str(_dig(record, self.id_field))

    def updated_at(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_timestamp(_dig(record, self.updated_field)) if self.updated_field else None


def source_objects(source: str) -> dict[str, SourceObject]:
    """The objects a source's extract task pulls, with their record id and modification time, from the
    registry (the ``objects`` of a ``Source`` subclass)."""
    return {o.name: SourceObject(o.name, o.id_field, o.updated_field)
            for o in registry.source(source).extracted_objects}


def _dig(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def parse_timestamp(value: Any) -> datetime | None:
    """Vendor timestamps: epoch seconds (Stripe, Mixpanel), epoch ms or ISO strings (HubSpot, Zendesk)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


class Source(ABC):
    """One vendor. Subclasses declare ``name``, ``objects = source_objects(name)`` and how to page through each;
    the connection id, pool and each object's mode come from the registry entry (``spec``)."""

    name: ClassVar[str]
    objects: ClassVar[dict[str, SourceObject]]
    #: Request header the vendor de-duplicates writes on; None: it has none, so creates are never resent.
    idempotency_header: ClassVar[str | None] = None

    def __init__(self, connection: SourceConnection, as_of: datetime | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.connection = connection
        self.as_of = as_of
        if policy is None and "timeout" in connection.extra:
            policy = RetryPolicy(timeout=float(connection.extra["timeout"]))
        self.client = HttpClient(connection, auth=self.auth(connection), headers=self.headers(connection),
                                 policy=policy, as_of=as_of, idempotency_header=self.idempotency_header)

    @classmethod
    def spec(cls) -> registry.SourceSpec:
        return registry.source(cls.name)

    @classmethod
    def mode(cls, obj: str) -> registry.Mode:
        """incremental, snapshot or windowed: how this batch pulls ``obj`` (declared in the registry)."""
        return registry.source(cls.name).mode(obj)

    @staticmethod
    def auth(connection: SourceConnection) -> requests.auth.AuthBase | None:
        return None

    @staticmethod
    def headers(connection: SourceConnection) -> dict[str, str]:
        return {}

    @abstractmethod
    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Pages of ``obj`` records after ``cursor`` (None: from the beginning)."""

    def records(self, obj: str, cursor: str | None = None) -> Iterator[dict]:
        for page in self.pages(obj, cursor):
            yield from page.records

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str | None) -> None:
        self.token = token or ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def canonical_json(record: Any) -> str:
    """The landing payload: stable key order, so equal records are byte-identical."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
