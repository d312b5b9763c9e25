"""Start the sandbox: blocking for the CLI, or in a background thread for tests and benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import date

import uvicorn

from healthscore_sandbox.csm import CsmConfig
from healthscore_sandbox.faults import FaultConfig
from healthscore_sandbox.protocol import SandboxState
from healthscore_sandbox.server import create_app
from healthscore_sandbox.world import WorldSpec, build_world


@dataclass
class SandboxOptions:
    seed: int = 42
    accounts: int = 500
    start: date | None = None
    days: int | None = None
    now: int | None = None
    rate_limit_scale: float = 100.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    csm: CsmConfig = field(default_factory=CsmConfig)  # simulated CSMs and the plays' true effects

    def world_spec(self) -> WorldSpec:
        extra = {}
        if self.start is not None:
            extra["start"] = self.start
        if self.days is not None:
            extra["days"] = self.days
        return WorldSpec(seed=self.seed, n_accounts=self.accounts, **extra)


def build_state(options: SandboxOptions) -> SandboxState:
    world = build_world(options.world_spec())
    return SandboxState(world, faults=options.faults, now=options.now, rate_limit_scale=options.rate_limit_scale,
                        csm=options.csm)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _config(state: SandboxState, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(create_app(state), host=host, port=port, log_level="warning", access_log=False,
                          timeout_keep_alive=30)


def serve(state: SandboxState, host: str = "127.0.0.1", port: int = 8800) -> None:
    uvicorn.Server(_config(state, host, port)).run()


class ThreadedSandbox:
    """The sandbox on a free local port in a daemon thread; use as a context manager."""

    def __init__(self, state: SandboxState, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.state = state
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(_config(state, self.host, self.port))
        self._thread = threading.Thread(target=self._server.run, name="healthscore-sandbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedSandbox:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox failed to start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
