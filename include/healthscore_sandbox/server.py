"""The sandbox HTTP server: HubSpot, Zendesk, Stripe and Mixpanel wire protocols on one port.

Each vendor keeps its own paths, auth scheme, error bodies and rate-limit headers, so an extractor
that works here works against the real service once its Airflow connection points there. Admin
endpoints under ``/_sandbox`` set the simulated clock and fault injection; they are not part of any
vendor API and ground truth is never served at all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from healthscore_sandbox import credentials
from healthscore_sandbox.faults import FaultConfig
from healthscore_sandbox.protocol import SandboxState, VendorError, bearer_token, json_response, parse_instant
from healthscore_sandbox.vendors import hubspot, hubspot_batch, mixpanel, stripe, zendesk


# ---- admin -----------------------------------------------------------------------------------
class ClockBody(BaseModel):
    now: str | int | None = None


def _require_admin(request: Request) -> SandboxState:
    if bearer_token(request) != credentials.ADMIN_TOKEN:
        raise VendorError(json_response({"error": "admin token required"}, 401))
    return request.app.state.sandbox


def create_app(state: SandboxState) -> FastAPI:
    app = FastAPI(title="healthscore sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json")
    app.state.sandbox = state

    @app.exception_handler(VendorError)
    async def _vendor_error(_request: Request, exc: VendorError) -> Response:
        return exc.response

    @app.get("/_sandbox/health")
    def health() -> dict:
        spec = state.world.spec
        return {"status": "ok", "seed": spec.seed, "accounts": spec.n_accounts,
                "now": state.clock.now(), "world_start": state.world.start_ts, "world_end": state.world.end_ts}

    @app.get("/_sandbox/clock")
    def get_clock(admin: SandboxState = Depends(_require_admin)) -> dict:
        now = admin.clock.now()
        return {"now": now, "iso": datetime.fromtimestamp(now, UTC).isoformat(), "pinned": admin.clock.pinned is not None}

    @app.post("/_sandbox/clock")
    def set_clock(body: ClockBody, admin: SandboxState = Depends(_require_admin)) -> dict:
        admin.clock.pinned = None if body.now is None else parse_instant(str(body.now))
        return get_clock(admin)

    @app.get("/_sandbox/faults")
    def get_faults(admin: SandboxState = Depends(_require_admin)) -> dict:
        return {"config": admin.faults.config.model_dump(), "injected": admin.faults.injected}

    @app.post("/_sandbox/faults")
    def set_faults(body: FaultConfig, admin: SandboxState = Depends(_require_admin)) -> dict:
        admin.faults.configure(body)
        admin.views.cache.clear()
        return get_faults(admin)

    @app.get("/_sandbox/stats")
    def stats(admin: SandboxState = Depends(_require_admin)) -> dict:
        return {"requests": dict(admin.requests), "injected": admin.faults.injected,
                "tasks": len(admin.hubspot.tasks)}

    @app.post("/_sandbox/reset")
    def reset(admin: SandboxState = Depends(_require_admin)) -> dict:
        admin.reset()
        return {"status": "reset"}

    app.include_router(hubspot.router)
    app.include_router(hubspot_batch.router)
    app.include_router(zendesk.router)
    app.include_router(stripe.router)
    app.include_router(mixpanel.router)

    @app.exception_handler(404)
    async def _not_found(request: Request, _exc: Exception) -> Response:
        return JSONResponse({"error": "not found", "path": request.url.path}, status_code=404)

    return app
