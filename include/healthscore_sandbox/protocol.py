"""What every sandbox vendor shares: the clock, auth, rate limits, error bodies and the request guard.

The vendor routers and the app both import this module; neither imports the other's internals.
"""


from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from healthscore_sandbox import credentials
from healthscore_sandbox.csm import CsmConfig, PlayEffects, TaskFate, play_effects
from healthscore_sandbox.faults import FaultConfig, FaultInjector
from healthscore_sandbox.views import VendorViews
from healthscore_sandbox.world import World

log = logging.getLogger(__name__)

CLOCK_HEADER = "X-Sandbox-Now"

# Documented vendor limits: (requests, window seconds). The sandbox multiplies the request counts
# by ``rate_limit_scale`` (1 = the real limits; the default is generous so demos run quickly).
VENDOR_RATE_LIMITS: dict[str, tuple[int, int]] = {
    "hubspot": (190, 10),
    "hubspot_search": (5, 1),
    "zendesk": (700, 60),
    "zendesk_incremental": (10, 60),
    "stripe": (25, 1),
    "mixpanel": (60, 3600),
}


class VendorError(Exception):
    """Raised inside a route to answer with a vendor-shaped error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def iso_now(ts: int) -> str:
    """HubSpot-style millisecond timestamp for a simulated instant."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json", headers=headers)


# ---- vendor error bodies ---------------------------------------------------------------------
def hubspot_error(status: int, message: str, category: str, **extra: object) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return json_response(body, status)


def zendesk_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": error, "description": description}, status, headers)


def stripe_error(status: int, type_: str, message: str, code: str | None = None, param: str | None = None) -> Response:
    err: dict[str, object] = {"type": type_, "message": message}
    if code:
        err["code"] = code
    if param:
        err["param"] = param
    return json_response({"error": err}, status, {"Request-Id": f"req_{uuid.uuid4().hex[:14]}"})


def mixpanel_error(status: int, request: Request, message: str) -> Response:
    return json_response({"request": request.url.path, "error": message}, status)


# ---- clock -----------------------------------------------------------------------------------
def parse_instant(value: str) -> int:
    """Epoch seconds from '1767225600', '2026-01-01' or an ISO 8601 timestamp (UTC if naive)."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class SandboxClock:
    """Decides what "now" is: a header wins, then a pinned instant, else wall time within the world."""

    def __init__(self, world: World, pinned: int | None = None) -> None:
        self.world = world
        self.pinned = pinned

    def clamp(self, ts: int) -> int:
        return max(self.world.start_ts, min(ts, self.world.end_ts - 1))

    def now(self, request: Request | None = None) -> int:
        if request is not None and CLOCK_HEADER in request.headers:
            try:
                return self.clamp(parse_instant(request.headers[CLOCK_HEADER]))
            except ValueError as exc:
                raise VendorError(
                    json_response({"error": f"bad {CLOCK_HEADER} header: {exc}"}, 400)
                ) from exc
        if self.pinned is not None:
            return self.clamp(self.pinned)
        return self.clamp(int(time.time()))


# ---- rate limiting ---------------------------------------------------------------------------
@dataclass
class Window:
    started: float
    count: int = 0


class RateLimiter:
    """Fixed-window counters per (policy, credential)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._windows: dict[tuple[str, str], Window] = {}
        self._lock = threading.Lock()

    def limit(self, policy: str) -> tuple[int, int]:
        requests, seconds = VENDOR_RATE_LIMITS[policy]
        return max(1, int(requests * self.scale)), seconds

    def hit(self, policy: str, who: str) -> tuple[bool, int, float]:
        """Returns (allowed, remaining, seconds until the window resets)."""
        max_requests, seconds = self.limit(policy)
        now = time.monotonic()
        with self._lock:
            window = self._windows.get((policy, who))
            if window is None or now - window.started >= seconds:
                window = self._windows[(policy, who)] = Window(started=now)
            reset_in = seconds - (now - window.started)
            if window.count >= max_requests:
                return False, 0, reset_in
            window.count += 1
            return True, max_requests - window.count, reset_in


# ---- state -----------------------------------------------------------------------------------
@dataclass
class HubSpotStore:
    """What clients wrote to the fake CRM: tasks, custom properties, patched company values."""

    tasks: list[dict] = field(default_factory=list)
    custom_properties: dict[str, dict] = field(default_factory=dict)
    company_patches: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    version: int = 0
    next_task_id: int = 90_000_000_001
    lock: threading.Lock = field(default_factory=threading.Lock)


class SandboxState:
    def __init__(self, world: World, faults: FaultConfig | None = None, now: int | None = None,
                 rate_limit_scale: float = 100.0, csm: CsmConfig | None = None) -> None:
        self.world = world
        self.csm = csm or CsmConfig()
        self._plays: tuple[int, PlayEffects, dict[str, TaskFate]] = (0, PlayEffects.empty(), {})
        self.faults = FaultInjector(faults)
        self.clock = SandboxClock(world, now)
        self.views = VendorViews(world, self.faults)
        self.limiter = RateLimiter(rate_limit_scale)
        self.hubspot = HubSpotStore()
        self.requests: Counter[str] = Counter()
        self.company_index = {cid: i for i, cid in enumerate(world.accounts["hubspot_company_id"].astype(str))}
        self.owner_ids = set(world.owners["owner_id"].astype(str))

    def plays(self) -> tuple[PlayEffects, dict[str, TaskFate]]:
        """Completed plays' effects and every task's fate (``healthscore_sandbox.csm``), for the tasks so far.

        Tasks are only ever appended, so their count identifies the task set."""
        with self.hubspot.lock:
            tasks = list(self.hubspot.tasks)
        count, effects, fates = self._plays
        if count != len(tasks):
            effects, fates = play_effects(tasks, seed=self.world.spec.seed, start_ts=self.world.start_ts,
                                          company_index=self.company_index, config=self.csm)
            self._plays = (len(tasks), effects, fates)
        return effects, fates

    def reset(self) -> None:
        self._plays = (0, PlayEffects.empty(), {})
        self.hubspot = HubSpotStore()
        self.faults.configure(FaultConfig())
        self.views.cache.clear()
        self.requests.clear()


# ---- per-vendor request guards ---------------------------------------------------------------
def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _check_auth(vendor: str, request: Request) -> str:
    """The caller's identity, or a VendorError with the vendor's own 401 body."""
    if vendor == "hubspot":
        if bearer_token(request) == credentials.HUBSPOT_TOKEN:
            return "hubspot"
        raise VendorError(hubspot_error(
            401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
            "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION"))
    if vendor == "zendesk":
        basic = _basic(request)
        if basic == (f"{credentials.ZENDESK_EMAIL}/token", credentials.ZENDESK_API_TOKEN):
            return "zendesk"
        raise VendorError(zendesk_error(401, "Couldn't authenticate you", "Couldn't authenticate you"))
    if vendor == "stripe":
        key = bearer_token(request)
        basic = _basic(request)
        if key is None and basic is not None:
            key = basic[0]  # Stripe also accepts the secret key as the basic-auth user
        if key == credentials.STRIPE_SECRET_KEY:
            return "stripe"
        shown = f"{key[:8]}****{key[-4:]}" if key and len(key) > 12 else "****"
        if key is None:
            raise VendorError(stripe_error(401, "invalid_request_error",
                                           "You did not provide an API key. Provide your API key in the "
                                           "Authorization header, using Bearer auth."))
        raise VendorError(stripe_error(401, "invalid_request_error", f"Invalid API Key provided: {shown}",
                                       code="api_key_invalid"))
    if vendor == "mixpanel":
        if _basic(request) == (credentials.MIXPANEL_SERVICE_ACCOUNT, credentials.MIXPANEL_SECRET):
            return "mixpanel"
        raise VendorError(mixpanel_error(401, request, "Unable to authenticate request"))
    raise AssertionError(vendor)


def _rate_limited(vendor: str, policy: str, reset_in: float, request: Request) -> Response:
    retry = max(1, math.ceil(reset_in))
    if vendor == "hubspot":
        if policy == "hubspot_search":
            return hubspot_error(429, "You have reached your secondly limit.", "RATE_LIMITS",
                                 errorType="RATE_LIMIT", policyName="SECONDLY")
        response = hubspot_error(429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS",
                                 errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
        return response
    if vendor == "zendesk":
        return zendesk_error(429, "APIRateLimitExceeded", "Number of allowed API requests per minute exceeded",
                             {"Retry-After": str(retry)})
    if vendor == "stripe":
        return stripe_error(429, "invalid_request_error",
                            "Too many requests hit the API too quickly. Use exponential backoff.",
                            code="rate_limit")
    response = mixpanel_error(429, request, "Query rate limit exceeded")
    response.headers["Retry-After"] = str(retry)
    return response


def _server_error(vendor: str, request: Request) -> Response:
    if vendor == "hubspot":
        return hubspot_error(502, "Bad Gateway", "INTERNAL_ERROR")
    if vendor == "zendesk":
        return zendesk_error(503, "ServiceUnavailable", "Service temporarily unavailable")
    if vendor == "stripe":
        return stripe_error(500, "api_error", "An unknown error occurred")
    return mixpanel_error(503, request, "Service Unavailable")


def _rate_headers(vendor: str, policy: str, remaining: int, limiter: RateLimiter) -> dict[str, str]:
    max_requests, seconds = limiter.limit(policy)
    if policy == "hubspot":
        return {
            "X-HubSpot-RateLimit-Max": str(max_requests),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(seconds * 1000),
            "X-HubSpot-RateLimit-Daily": str(max_requests * 8640),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max_requests * 8640 - 1),
        }
    if vendor == "zendesk":
        return {"X-Rate-Limit": str(max_requests), "X-Rate-Limit-Remaining": str(remaining)}
    if vendor == "stripe":
        return {"Request-Id": f"req_{uuid.uuid4().hex[:14]}"}
    return {}


@dataclass
class Call:
    """What a vendor route needs to know about the request it is serving."""

    state: SandboxState
    request: Request
    now: int
    headers: dict[str, str]
    stall_seconds: float = 0.0  # an injected timeout on a write: served, then answered this late

    def respond(self, payload: object, status: int = 200) -> Response:
        body = dumps(payload)
        if status == 200 and self.state.faults.take_malformed_page():
            body = body[: max(1, len(body) // 2)]
        if self.stall_seconds:
            return StreamingResponse(_late(body, self.stall_seconds), status_code=status,
                                     media_type="application/json", headers=self.headers)
        return Response(body, status_code=status, media_type="application/json", headers=self.headers)


async def _late(body: str, seconds: float):  # noqa: ANN202 - an async generator of one chunk
    await asyncio.sleep(seconds)
    yield body.encode()


def vendor_call(vendor: str, policy: str | None = None, *, write: bool | None = None) -> Callable[[Request], Call]:
    """FastAPI dependency: auth, clock, rate limit, then injected faults, in the vendor's style.

    ``write`` says whether the route changes state (write faults only with ``apply_to_writes``);
    None decides by method, so a POST that only reads (a batch read) passes ``write=False``.
    """
    policy = policy or vendor

    def guard(request: Request) -> Call:
        state: SandboxState = request.app.state.sandbox
        who = _check_auth(vendor, request)
        now = state.clock.now(request)
        state.requests[vendor] += 1
        if policy != vendor:  # e.g. hubspot_search: its own, lower limit
            state.requests[policy] += 1
        allowed, remaining, reset_in = state.limiter.hit(policy, who)
        if not allowed:
            state.requests[f"{vendor}:429"] += 1
            raise VendorError(_rate_limited(vendor, policy, reset_in, request))
        cfg = state.faults.config
        if cfg.latency_ms:
            time.sleep(cfg.latency_ms / 1000)
        is_write = request.method != "GET" if write is None else write
        fault = state.faults.transport_fault(is_write=is_write)
        if fault == "5xx":
            raise VendorError(_server_error(vendor, request))
        if fault == "429":
            raise VendorError(_rate_limited(vendor, policy, 1.0, request))
        stall = 0.0
        if fault == "timeout" and not is_write:
            time.sleep(cfg.timeout_seconds)  # a slow read: nothing changes either way
        elif fault == "timeout":
            # A slow write is the dangerous kind: the vendor acts on it, and the client that gave up
            # cannot tell whether it did. So it is served now and answered late.
            stall = cfg.timeout_seconds
        return Call(state, request, now, _rate_headers(vendor, policy, remaining, state.limiter), stall)

    return guard
