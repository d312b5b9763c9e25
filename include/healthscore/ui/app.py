"""The Customer Health web app: server-rendered pages over the warehouse, mounted in Airflow by plugins/.

Who may read and write is not decided here: ``create_app`` takes an ``Access`` (FastAPI dependencies), and the
Airflow plugin passes Airflow's own (``healthscore.ui.airflow_access``). Every route depends on ``access.read``
(set on the app, so no route can be added without it); writing an override also on ``access.write``. Routes
that FastAPI would add outside the app's dependencies (OpenAPI, docs, static mounts) are not added.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.engine import Engine

from healthscore.settings import Settings
from healthscore.ui import charts, datadocs, overrides, queries

CSRF_MAX_AGE_S = 8 * 3600


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as the pages need them."""

    name: str
    can_write: bool


@dataclass(frozen=True)
class Access:
    """FastAPI dependencies deciding access: ``read`` guards every route, ``write`` the override routes."""

    read: Callable[..., Any]
    write: Callable[..., Any]
    viewer: Callable[..., Any]  # a dependency returning a Viewer
    secret: bytes  # signs the CSRF tokens of the forms


# ------------------------------------------------------------------------------------------- rendering


def _money(cents: Any) -> str:
    if cents is None:
        return "-"
    return f"${cents / 100:,.0f}"


def _signed(value: Any, money: bool = False) -> str:
    if value is None:
        return "-"
    if money:
        return ("+" if value > 0 else "-" if value < 0 else "±") + _money(abs(value))
    return f"{value:+,}" if isinstance(value, int) else f"{value:+.1f}"


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.{digits}f}"


@cache
def _templates() -> Environment:
    env = Environment(loader=PackageLoader("healthscore.ui", "templates"), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(money=_money, signed=_signed, num=_num)
    return env


# ------------------------------------------------------------------------------------------------- CSRF


def csrf_token(secret: bytes, user: str, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    mac = hmac.new(secret, f"{user}|{issued}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def csrf_ok(secret: bytes, user: str, token: str | None, now: float | None = None) -> bool:
    """The token was issued to this user by this server within ``CSRF_MAX_AGE_S``."""
    if not token or "." not in token:
        return False
    issued, mac = token.split(".", 1)
    if not issued.isdigit():
        return False
    expected = hmac.new(secret, f"{user}|{issued}".encode(), hashlib.sha256).hexdigest()
    age = (now if now is not None else time.time()) - int(issued)
    return hmac.compare_digest(mac, expected) and 0 <= age <= CSRF_MAX_AGE_S


# ------------------------------------------------------------------------------------------------ app


class _Warehouse:
    """One engine per process, made on first use from the settings (the api-server imports plugins early)."""

    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._engine: Engine | None = None
        self._resolved: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._resolved is None:
            self._resolved = self._settings()
        return self._resolved

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from healthscore.warehouse.engine import make_engine, resolve_warehouse_url

            self._engine = make_engine(resolve_warehouse_url(self.settings))
        return self._engine


def create_app(access: Access, settings: Callable[[], Settings] = Settings.from_env,
               today: Callable[[], date] = date.today) -> FastAPI:
    """The app; ``settings`` is called once, on the first request."""
    app = FastAPI(title="Customer Health", dependencies=[Depends(access.read)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    warehouse = _Warehouse(settings)
    app.state.warehouse = warehouse

    def page(request: Request, template: str, viewer: Viewer, status_code: int = 200, **values: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        html = _templates().get_template(template).render(base=base, viewer=viewer, request=request, **values)
        return HTMLResponse(html, status_code=status_code)

    @app.get("/", response_class=HTMLResponse, name="portfolio")
    def portfolio(request: Request, viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.portfolio(conn)
        colors = data.ctx.band_colors
        bars = charts.bars_svg([(g.key, g.arr_cents / 100, colors.get(g.key, "#9e9e9e")) for g in data.bands],
                               value_format="${:,.0f}")
        return page(request, "portfolio.html", viewer, data=data, bars=bars, active="portfolio")

    @app.get("/at-risk", response_class=HTMLResponse, name="at_risk")
    def at_risk(request: Request, viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.at_risk(conn)
        return page(request, "at_risk.html", viewer, data=data, active="at_risk")

    def account_page(request: Request, viewer: Viewer, account_id: str, status_code: int = 200,
                     **values: Any) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.account(conn, account_id, today())
        if data is None:
            raise HTTPException(404, f"account {account_id} is not in the warehouse")
        chart = charts.score_history_svg(data.history, data.thresholds, data.ctx.band_colors)
        token = csrf_token(access.secret, viewer.name) if viewer.can_write else ""
        return page(request, "account.html", viewer, status_code=status_code, data=data, chart=chart,
                    csrf=token, max_days=warehouse.settings.override_max_days, today=today(), active="account",
                    **values)

    @app.get("/accounts/{account_id}", response_class=HTMLResponse, name="account")
    def account(request: Request, account_id: str, saved: int | None = None,
                viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        return account_page(request, viewer, account_id, saved=saved)

    @app.post("/accounts/{account_id}/overrides", response_class=HTMLResponse, name="add_override",
              dependencies=[Depends(access.write)])
    def add_override(request: Request, account_id: str, reason: str = Form(""), expires_on: str = Form(""),
                     score: str = Form(""), band: str = Form(""), csrf_token_: str = Form("", alias="csrf_token"),
                     viewer: Viewer = Depends(access.viewer)) -> Response:
        if not csrf_ok(access.secret, viewer.name, csrf_token_):
            raise HTTPException(403, "the form's CSRF token is missing, expired or not yours: reload the page")
        form = {"reason": reason, "expires_on": expires_on, "score": score, "band": band}
        try:
            new_id = overrides.set_override(warehouse.engine, account_id, reason=reason, expires_on=expires_on,
                                            score=score, band=band, author=viewer.name, today=today(),
                                            max_days=warehouse.settings.override_max_days)
        except overrides.OverrideError as exc:
            return account_page(request, viewer, account_id, status_code=400, error=str(exc), form=form)
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{base}/accounts/{account_id}?saved={new_id}", status_code=303)

    @app.post("/overrides/{override_id}/revoke", response_class=HTMLResponse, name="revoke_override",
              dependencies=[Depends(access.write)])
    def revoke(request: Request, override_id: int, csrf_token_: str = Form("", alias="csrf_token"),
               viewer: Viewer = Depends(access.viewer)) -> Response:
        if not csrf_ok(access.secret, viewer.name, csrf_token_):
            raise HTTPException(403, "the form's CSRF token is missing, expired or not yours: reload the page")
        try:
            row = overrides.revoke_override(warehouse.engine, override_id, author=viewer.name, today=today())
        except overrides.OverrideError as exc:
            raise HTTPException(400, str(exc)) from None
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{base}/accounts/{row['account_id']}", status_code=303)

    @app.get("/playbooks", response_class=HTMLResponse, name="playbooks")
    def playbooks(request: Request, viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.playbooks(conn)
        return page(request, "playbooks.html", viewer, data=data, active="playbooks")

    @app.get("/data-quality", response_class=HTMLResponse, name="data_quality")
    def data_quality(request: Request, viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.quality(conn)
        docs = (warehouse.settings.data_dir / "data_docs" / "index.html").is_file()
        return page(request, "quality.html", viewer, data=data, docs=docs, active="quality")

    @app.get("/model", response_class=HTMLResponse, name="model")
    def model(request: Request, viewer: Viewer = Depends(access.viewer)) -> HTMLResponse:
        with warehouse.engine.connect() as conn:
            data = queries.models(conn)
        return page(request, "model.html", viewer, data=data, active="model")

    @app.get("/data-docs/{path:path}", name="data_docs")
    def data_docs(request: Request, path: str) -> Response:
        root = warehouse.settings.data_dir / "data_docs"
        found = datadocs.safe_file(root, path or "index.html")
        if found is None:
            raise HTTPException(404, f"no Data Docs page {path!r} (the validate task writes them)")
        if found.suffix != ".html":
            return FileResponse(found, media_type=datadocs.media_type(found))
        base = request.scope.get("root_path", "").rstrip("/")
        html = datadocs.rewrite_html(found.read_text(encoding="utf-8"), f"{base}/vendor", f"{base}/data-docs")
        return HTMLResponse(html)

    @app.get("/vendor/{path:path}", name="vendor")
    def vendor(path: str) -> Response:
        found = datadocs.vendor_file(path)
        if found is None:
            raise HTTPException(404, "no such vendored asset")
        return FileResponse(found, media_type=datadocs.media_type(found),
                            headers={"Cache-Control": "public, max-age=86400"})

    return app


def static_dir() -> Path:
    return Path(__file__).parent / "static"
