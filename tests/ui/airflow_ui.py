"""An ``airflow api-server`` with this repository's plugins folder, for the UI tests (one per session).

Simple auth manager with three users: ``admin`` (ADMIN), ``csm`` (USER: may enter overrides) and ``viewer``
(VIEWER: read only), with known passwords. The Customer Health app reads the warehouse named in the
environment (``HEALTHSCORE_WAREHOUSE_URL``, ``HEALTHSCORE_DATA_DIR``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import requests

from healthscore.local_airflow import BIN, REPO, LocalAirflow
from healthscore_sandbox.runner import free_port

PLUGINS_FOLDER = REPO / "plugins"
USERS = {"admin": ("ADMIN", "admin-pass"), "csm": ("USER", "csm-pass"), "viewer": ("VIEWER", "viewer-pass")}


class AirflowUI:
    """Context manager: a migrated Airflow home and its api-server on a free port."""

    def __init__(self, home: Path, extra_env: dict[str, str]) -> None:
        self.airflow = LocalAirflow(home)
        self.port = free_port()
        passwords = home / "passwords.json"
        home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({u: p for u, (_, p) in USERS.items()}))
        self.env = {
            **self.airflow.env, **extra_env,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, (r, _) in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__WORKERS": "1",
        }
        self.log_path = home / "api-server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AirflowUI:
        self.airflow.env.update({k: v for k, v in self.env.items() if k.startswith("AIRFLOW")})
        self.airflow.migrate()
        handle = self.log_path.open("w")
        self.proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--port", str(self.port)], env=self.env,
                                     stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"api-server exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"api-server not up after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # uvicorn workers share the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def token(self, user: str) -> str:
        """A JWT from Airflow's own token endpoint."""
        response = requests.post(f"{self.url}/auth/token", json={"username": user, "password": USERS[user][1]},
                                 timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def session(self, user: str) -> requests.Session:
        """A session that carries the UI's ``_token`` cookie, as a browser would after logging in."""
        session = requests.Session()
        session.cookies.set("_token", self.token(user), domain="127.0.0.1", path="/")
        return session
