"""Hostname of a native Celery worker, for Airflow's ``[core] hostname_callable``.

In compose every worker is its own container with its own hostname. Natively the workers share the machine's, so
the task-instance records could not tell them apart; each native worker names itself (``deploy.native``).
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    """``<worker>@<fqdn>``, like the worker's Celery node name; the plain FQDN outside a native worker."""
    name = os.environ.get("HEALTHSCORE_NATIVE_WORKER")
    fqdn = socket.getfqdn()
    return f"{name}@{fqdn}" if name else fqdn
