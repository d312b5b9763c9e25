"""The compose topology as processes on one machine: ``python -m deploy.native start|stop|status``.

Everything comes from docker-compose.yaml (read by ``deploy.compose``) and .env.example: the same services, the same
environment, the same commands. What differs is only what a single machine forces, and it is listed here:

- service names become 127.0.0.1 and the ports free ones (``postgres:5432``, ``redis:6379`` from the PostgreSQL and
  Redis given; ``airflow-apiserver:8080`` and ``sandbox:8800`` on free ports);
- image paths become repository paths (the Dockerfile's COPY lines, bind mounts), volumes folders of the run's
  AIRFLOW_HOME;
- ``NATIVE_ONLY``: what containers get for free (their own AIRFLOW_HOME, hostname, ports for the log servers);
- postgres and redis are not started here: they must be reachable (``.ci/run`` starts them in CI); the two
  databases are created on the server when missing, owned by the connecting user;
- profile services (flower) are not started.

Every process carries ``HEALTHSCORE_NATIVE_RUN=<run id>`` in its environment, inherited by every child (Celery's
pool, task supervisors, task processes), so ``stop`` finds and ends all of them, reparented or not.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy import compose

BIN = Path(sys.executable).parent
RUN_MARKER = "HEALTHSCORE_NATIVE_RUN"
WORKER_NAME = "HEALTHSCORE_NATIVE_WORKER"
INIT_SERVICE = "airflow-init"
EXTERNAL_SERVICES = ("postgres", "redis")  # must be up already; not started here
# Long-running services, in start order (stop runs it backwards: workers first, the sandbox last).
SERVICES = ("sandbox", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-worker")
SCALED_SERVICE = "airflow-worker"
SECRET_VARIABLES = ("POSTGRES_PASSWORD", "WAREHOUSE_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
                    "AIRFLOW_ADMIN_PASSWORD")
# The local server's superuser (trust auth here and in CI) owns both databases; compose gives each its own role.
NATIVE_DEFAULTS = {"POSTGRES_USER": "postgres", "WAREHOUSE_DB_USER": "postgres"}
# Set natively on top of the compose environment, and why (a container has these by itself).
NATIVE_ONLY = {
    "AIRFLOW_HOME": "the image's /opt/airflow",
    "PATH": "the virtualenv's bin/ first, as the image's PATH has Airflow's",
    "PYTHONPATH": "the repository, for the worker hostname callable below",
    "AIRFLOW__API__HOST": "127.0.0.1 instead of the container's 0.0.0.0",
    "AIRFLOW__API__PORT": "a free port instead of the container's 8080",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "a free port instead of the container's 8974",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "a free port per worker instead of each container's 8793",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "a free port instead of the container's 8794",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "workers share one host: task instances name the worker (deploy.hostname)",
    WORKER_NAME: "the worker's name, for that callable",
    RUN_MARKER: "marks every process of the run, so stop leaves none behind",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generated_secrets() -> dict[str, str]:
    """Fresh values for the secrets .env.example leaves as placeholders (a native run never needs fixed ones)."""
    return {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "WAREHOUSE_DB_PASSWORD": secrets.token_urlsafe(16),
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(64),  # 64 bytes: the key length HS512 asks for
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }


@dataclass
class Component:
    """One process of the topology: which compose service it is, its argv and its full environment."""

    name: str
    service: str
    argv: list[str]
    env: dict[str, str]


@dataclass
class NativeConfig:
    """Where the run lives and what it connects to; ``variables`` are the run's .env."""

    run_dir: Path
    postgres: str = "127.0.0.1:5432"
    redis: str = "127.0.0.1:6379"
    workers: int = 2
    variables: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: None: free ports from the kernel; else consecutive ports from it (a shared machine's assigned range)
    port_base: int | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.variables = {**compose.read_env_file(), **NATIVE_DEFAULTS, **generated_secrets(), **self.variables}
        names = ["api", "sandbox", "scheduler_health", "trigger_logs",
                 *(f"worker_logs_{i}" for i in range(1, self.workers + 1))]
        fixed = {name: self.port_base + i for i, name in enumerate(names)} if self.port_base else {}
        self.ports = {name: self.ports.get(name) or fixed.get(name) or free_port() for name in names}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sandbox']}"

    @property
    def home(self) -> Path:
        return self.run_dir / "airflow-home"

    def host_map(self) -> dict[str, str]:
        """Compose service addresses -> native addresses."""
        return {"postgres:5432": self.postgres, "redis:6379": self.redis,
                "airflow-apiserver:8080": f"127.0.0.1:{self.ports['api']}",
                "sandbox:8800": f"127.0.0.1:{self.ports['sandbox']}"}

    def path_map(self, common: Mapping[str, Any]) -> dict[str, str]:
        """Image paths -> native paths: bind mounts and COPYs to the repository; the rest of the image's
        AIRFLOW_HOME, volumes included (logs, auth, reports, Data Docs, archive, outbox), to the run's home."""
        paths = {image: str(repo) for image, repo in compose.image_copies().items()}
        for volume in common.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                paths[target] = str((compose.REPO / source).resolve())
        paths["/opt/airflow"] = str(self.home)
        return paths


def _rewrite(value: str, replacements: Mapping[str, str]) -> str:
    for old in sorted(replacements, key=len, reverse=True):  # longest path first: /opt/airflow/dags before /opt/airflow
        value = value.replace(old, replacements[old])
    return value


def plan(config: NativeConfig) -> tuple[Component, list[Component]]:
    """The init step and the long-running components, built from docker-compose.yaml."""
    spec = compose.load(config.variables)
    services = spec["services"]
    common = spec["x-airflow-common"]
    replacements = {**config.host_map(), **config.path_map(common)}
    base = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "HEALTHSCORE_"))}
    native = {
        "AIRFLOW_HOME": str(config.home),
        "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
        "PYTHONPATH": str(compose.REPO),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(config.ports["api"]),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(config.ports["scheduler_health"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(config.ports["trigger_logs"]),
        RUN_MARKER: config.run_id,
    }

    def component(name: str, service: str, argv: list[str], **extra: str) -> Component:
        env = {key: _rewrite(value, replacements) for key, value in compose.environment(services[service]).items()}
        return Component(name, service, [_rewrite(arg, replacements) for arg in argv],
                         {**base, **env, **native, **extra})

    def airflow_argv(service: str) -> list[str]:
        return [str(BIN / "airflow"), *compose.command(services[service])]

    init = component(INIT_SERVICE, INIT_SERVICE, compose.command(services[INIT_SERVICE]))
    sandbox_argv = compose.command(services["sandbox"])
    sandbox_argv = [str(BIN / sandbox_argv[0]), *_native_sandbox_args(sandbox_argv[1:], config.ports["sandbox"])]
    components = [component("sandbox", "sandbox", sandbox_argv)]
    for service in SERVICES[1:-1]:
        components.append(component(service.removeprefix("airflow-"), service, airflow_argv(service)))
    for i in range(1, config.workers + 1):
        name = f"worker{i}"
        components.append(component(
            name, SCALED_SERVICE, [*airflow_argv(SCALED_SERVICE), "--celery-hostname", f"{name}@%h"],
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(config.ports[f"worker_logs_{i}"]),
            AIRFLOW__CORE__HOSTNAME_CALLABLE="deploy.hostname.worker_hostname", **{WORKER_NAME: name}))
    return init, components


def _native_sandbox_args(args: list[str], port: int) -> list[str]:
    out = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        out[out.index(flag) + 1] = value
    return out


# ---------------------------------------------------------------------------------------------------- processes


def run_processes(run_id: str, sessions: Iterable[int] = ()) -> list[int]:
    """Pids of every live process of the run: those that carry its marker in their environment (children
    inherit it, reparented or not) and those in the sessions of its components (each component leads its own:
    processes that rewrite their title, as Celery's pool and task supervisors do, also rewrite the environment
    that /proc shows)."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    sessions = set(sessions)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if state != "Z" and (session in sessions or needle in environ.split(b"\0")):
            pids.append(int(entry.name))
    return sorted(pids)


def _ensure_databases(config: NativeConfig) -> None:
    """The Airflow metadata DB and the warehouse on the server, as the compose postgres service creates them."""
    import psycopg

    user = config.variables["POSTGRES_USER"]
    host, port = config.postgres.rsplit(":", 1)
    with psycopg.connect(host=host, port=int(port), user=user, dbname="postgres", autocommit=True,
                         password=config.variables["POSTGRES_PASSWORD"]) as conn:
        for name in (config.variables["AIRFLOW_DB_NAME"], config.variables["WAREHOUSE_DB_NAME"]):
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')


def _check_external(config: NativeConfig) -> None:
    for name, address in (("postgres", config.postgres), ("redis", config.redis)):
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            raise RuntimeError(f"{name} is not reachable at {address} ({exc}); start it first "
                               f"(.ci/run starts PostgreSQL and Redis when they are not up)") from None


class NativeTopology:
    """Start, check and stop the topology; its state (pids, ports, run id) is written to ``run_dir/native.json``."""

    def __init__(self, config: NativeConfig) -> None:
        self.config = config
        self.init, self.components = plan(config)
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def log_dir(self) -> Path:
        return self.config.run_dir / "logs"

    def _popen(self, component: Component) -> subprocess.Popen:
        handle = (self.log_dir / f"{component.name}.log").open("w")
        return subprocess.Popen(component.argv, env=component.env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.config.run_dir)

    def start(self, timeout: float = 240) -> None:
        """Databases, init, then every component; returns when all are healthy, or stops them and raises."""
        _check_external(self.config)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config.home.mkdir(parents=True, exist_ok=True)
        config_link = self.config.home / "config"
        if not config_link.exists():
            config_link.symlink_to(compose.REPO / "airflow" / "config", target_is_directory=True)
        try:
            _ensure_databases(self.config)
            self.processes["sandbox"] = self._popen(self.components[0])
            self._save()
            init = self._popen(self.init)
            if init.wait(timeout=timeout):
                raise RuntimeError(f"airflow-init failed:\n{self._tail(self.init.name)}")
            for component in self.components[1:]:
                self.processes[component.name] = self._popen(component)
            self._save()
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _save(self) -> None:
        state = {"run_id": self.config.run_id, "api_url": self.config.api_url,
                 "sandbox_url": self.config.sandbox_url, "ports": self.config.ports,
                 "pids": {name: proc.pid for name, proc in self.processes.items()},
                 "components": [asdict(c) | {"env": sorted(c.env)} for c in self.components]}
        (self.config.run_dir / "native.json").write_text(json.dumps(state, indent=2))

    def _tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def health(self) -> dict[str, str]:
        """Status per component: api-server health (scheduler, dag-processor, triggerer), Celery ping, sandbox."""
        status = {name: "exited" for name, proc in self.processes.items() if proc.poll() is not None}
        try:
            with urllib.request.urlopen(f"{self.config.sandbox_url}/_sandbox/health", timeout=3) as response:
                status.setdefault("sandbox", "healthy" if response.status == 200 else "unhealthy")
        except OSError:
            status.setdefault("sandbox", "starting")
        try:
            with urllib.request.urlopen(f"{self.config.api_url}/api/v2/monitor/health", timeout=5) as response:
                health = json.loads(response.read())
            status.setdefault("apiserver", "healthy")
            for name, key in (("scheduler", "scheduler"), ("dag-processor", "dag_processor"),
                              ("triggerer", "triggerer")):
                status.setdefault(name, (health.get(key) or {}).get("status") or "starting")
        except OSError:
            for name in ("apiserver", "scheduler", "dag-processor", "triggerer"):
                status.setdefault(name, "starting")
        workers = [c.name for c in self.components if c.service == SCALED_SERVICE]
        answered = self._celery_ping()
        for name in workers:
            status.setdefault(name, "healthy" if any(n.startswith(f"{name}@") for n in answered) else "starting")
        return status

    def _celery_ping(self) -> set[str]:
        from celery import Celery

        worker = next(c for c in self.components if c.service == SCALED_SERVICE)
        app = Celery(broker=worker.env["AIRFLOW__CELERY__BROKER_URL"])
        try:
            replies = app.control.ping(timeout=1.0)
        except Exception:  # noqa: BLE001 - broker down or not yet answering: nobody is healthy
            return set()
        finally:
            app.close()
        return {name for reply in replies for name in reply}

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.health()
            if any(s == "exited" for s in status.values()):
                name = next(n for n, s in status.items() if s == "exited")
                raise RuntimeError(f"{name} exited with {self.processes[name].returncode}:\n{self._tail(name)}")
            if all(s == "healthy" for s in status.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout:.0f} s: {status}; logs in {self.log_dir}")
            time.sleep(2)

    def stop(self, timeout: float = 60) -> list[int]:
        """Stop every component (workers first); returns the pids that had to be killed as leftovers."""
        pids = {name: proc.pid for name, proc in self.processes.items()}
        leftovers = stop_run(self.config.run_id, pids, timeout)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return leftovers


def stop_run(run_id: str, pids: Mapping[str, int], timeout: float = 60) -> list[int]:
    """Stop as compose does: SIGTERM to each Celery worker alone (warm shutdown: running tasks finish), then to
    the other components' process groups; SIGKILL to the groups of whatever did not exit; last, end anything that
    still carries the run's marker outside those groups. Returns those last leftovers' pids."""
    order = sorted(pids, key=_stop_rank)
    workers = [name for name in order if name.startswith("worker")]
    for name in workers:  # Celery's warm shutdown: the signal to the worker alone (compose: DUMB_INIT_SETSID=0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[name], signal.SIGTERM)
    _wait_gone([pids[name] for name in workers], timeout / 2)
    others = [name for name in order if name not in workers]
    for name in others:  # the rest by process group, as dumb-init forwards signals in the containers
        _signal_group(pids[name], signal.SIGTERM)
    _wait_gone([pids[name] for name in others], timeout / 2)
    for name in order:
        _signal_group(pids[name], signal.SIGKILL)
    leftovers = run_processes(run_id, pids.values())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in run_processes(run_id, pids.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_gone(run_processes(run_id, pids.values()), 10):
            break
    return leftovers


def _stop_rank(name: str) -> int:
    service = "airflow-worker" if name.startswith("worker") else name if name == "sandbox" else f"airflow-{name}"
    return -SERVICES.index(service) if service in SERVICES else 0


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: Iterable[int], timeout: float) -> bool:
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# ---------------------------------------------------------------------------------------------------------- CLI


def _parse_assignments(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.native", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--run-dir", type=Path, default=compose.REPO / "data" / "native",
                        help="state, logs, AIRFLOW_HOME and volumes of the run (default: data/native)")
    parser.add_argument("--postgres", default="127.0.0.1:5432", help="host:port of PostgreSQL (trust or password)")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="host:port of Redis")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (compose: --scale airflow-worker=N)")
    parser.add_argument("--env-file", type=Path, default=None, help="a .env with your values (default: the "
                        ".env.example defaults, fresh secrets, and POSTGRES_USER=postgres)")
    parser.add_argument("--port-base", type=int, default=None, help="consecutive ports from this one (api, sandbox, "
                        "health check and log servers) instead of free ones from the kernel")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one variable")
    args = parser.parse_args(argv)
    state_file = args.run_dir.resolve() / "native.json"
    if args.action == "start":
        previous = json.loads(state_file.read_text()) if state_file.exists() else None
        if previous and run_processes(previous["run_id"], previous["pids"].values()):
            print(f"already running (see {state_file}); stop it first", file=sys.stderr)
            return 1
        variables = {**(compose.read_env_file(args.env_file) if args.env_file else {}),
                     **_parse_assignments(args.set)}
        config = NativeConfig(args.run_dir, postgres=args.postgres, redis=args.redis, workers=args.workers,
                              variables=variables, port_base=args.port_base)
        topology = NativeTopology(config)
        try:
            topology.start()
        except (RuntimeError, TimeoutError) as exc:
            print(f"start failed: {str(exc).splitlines()[0]} (logs: {topology.log_dir})", file=sys.stderr)
            return 1
        (config.run_dir / "admin-password").write_text(config.variables["AIRFLOW_ADMIN_PASSWORD"] + "\n")
        os.chmod(config.run_dir / "admin-password", 0o600)
        print(f"healthscore running: UI/API {config.api_url} (user {config.variables['AIRFLOW_ADMIN_USERNAME']}, "
              f"password in {config.run_dir / 'admin-password'}), sandbox {config.sandbox_url}, "
              f"{args.workers} Celery workers; logs in {topology.log_dir}")
        return 0
    if not state_file.exists():
        print(f"nothing started from {args.run_dir} ({state_file} is missing)", file=sys.stderr)
        return 1 if args.action == "status" else 0
    state = json.loads(state_file.read_text())
    if args.action == "status":
        alive = {name: _alive(pid) for name, pid in state["pids"].items()}
        print(json.dumps({"api_url": state["api_url"], "running": alive}, indent=2))
        return 0 if all(alive.values()) else 1
    leftovers = stop_run(state["run_id"], state["pids"])
    remaining = run_processes(state["run_id"], state["pids"].values())
    print(f"stopped {len(state['pids'])} components" + (f"; ended {len(leftovers)} leftover processes"
                                                         if leftovers else "") +
          (f"; STILL RUNNING: {remaining}" if remaining else ""))
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
