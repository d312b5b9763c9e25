"""What the Airflow extract/validate test modules share: their sandbox portfolio and the fault switch.

Each module builds its own sandbox (module fixtures), so the suite's workers can run the modules side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

LOGICAL_DATE = "2026-09-20"  # the batch is 2026-09-19, data as of 2026-09-20T00:00Z
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}


def extract_sandbox() -> ThreadedSandbox:
    return ThreadedSandbox(build_state(SandboxOptions(seed=4, accounts=120, rate_limit_scale=1000)))


def fault_switch(sandbox: ThreadedSandbox) -> Callable[..., None]:
    def set_faults(**config: object) -> None:
        requests.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json=config, timeout=5).raise_for_status()

    return set_faults
