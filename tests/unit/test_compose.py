"""docker-compose.yaml: valid for Compose itself, shaped like Airflow's, complete for the DAGs, and the same
topology that the native test runs (deploy/native.py builds its processes from this file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from deploy import compose
from deploy.native import (
    EXTERNAL_SERVICES,
    INIT_SERVICE,
    NATIVE_DEFAULTS,
    NATIVE_ONLY,
    SCALED_SERVICE,
    SECRET_VARIABLES,
    SERVICES,
    NativeConfig,
    plan,
)
from healthscore.settings import WAREHOUSE_CONN_ID

REPO = compose.REPO
IN_CI = os.environ.get("CI", "").lower() == "true"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "flower")


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return compose.read_env_file()


@pytest.fixture(scope="module")
def spec(example) -> dict:
    return compose.load(example)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """The plan the native Celery test runs (tests/e2e/test_celery_topology.py), with its kind of variables."""
    config = NativeConfig(tmp_path_factory.mktemp("native-plan"), workers=2,
                          variables={"AIRFLOW_CELERY_QUEUE": "healthscore-test", "AIRFLOW_USE_JOB_SCHEDULE": "false"})
    return config, *plan(config)


def test_docker_compose_validates_the_file():
    """Compose itself (Debian's docker-compose, installed by .ci/run): it parses, interpolates, resolves anchors
    and every depends_on, with the documented .env.example and with the flower profile."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if IN_CI:
            pytest.fail("CI=true needs docker-compose (.ci/run installs Debian's package when it is missing)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    base = [binary, "--project-directory", str(REPO), "-f", str(compose.COMPOSE_FILE), "--env-file",
            str(compose.ENV_EXAMPLE)]
    checked = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    services = subprocess.run([*base, "--profile", "flower", "config", "--services"], capture_output=True,
                              text=True, timeout=120)
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) == {*EXTERNAL_SERVICES, INIT_SERVICE, *SERVICES, "flower"}
    # Without the secrets Compose refuses to render, naming the variable: nothing falls back to a default secret.
    missing = subprocess.run([binary, "--project-directory", str(REPO), "-f", str(compose.COMPOSE_FILE), "config"],
                             capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
    assert missing.returncode != 0 and "in .env" in missing.stderr, missing.stderr


def test_shaped_like_the_official_airflow_compose(spec):
    assert "x-airflow-common" in spec
    services = spec["services"]
    assert set(services) == {*EXTERNAL_SERVICES, "sandbox", *AIRFLOW_SERVICES}
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    for name, service in services.items():
        if name != INIT_SERVICE:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] in ("service_healthy", "service_completed_successfully"), (name, rule)
    init_needed = {n for n in AIRFLOW_SERVICES if n != INIT_SERVICE}
    assert all(services[n]["depends_on"][INIT_SERVICE]["condition"] == "service_completed_successfully"
               for n in init_needed)
    worker = services[SCALED_SERVICE]
    assert "container_name" not in worker and "ports" not in worker, "a worker must scale with --scale"
    assert worker["command"].split()[:2] == ["celery", "worker"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["airflow-init"]["command"] == ["/opt/airflow/deploy/airflow-init.sh"]


def test_one_jwt_secret_and_one_fernet_key_from_env(spec):
    raw = compose.load_raw()["x-airflow-common"]["environment"]
    for key, variable in (("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
                          ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY")):
        assert raw[key].startswith(f"${{{variable}:?"), raw[key]  # required: no default secret
        assert {spec["services"][n]["environment"][key] for n in AIRFLOW_SERVICES} == {
            compose.read_env_file()[variable]}


def test_warm_task_processes_on_the_celery_workers_only(spec):
    flagged = {name for name, service in spec["services"].items()
               if compose.environment(service).get("HEALTHSCORE_PRELOAD_TASK_RUNTIME") == "true"}
    assert flagged == {SCALED_SERVICE}


def test_env_example_documents_every_variable_and_holds_no_secret(example):
    referenced = compose.variables_referenced()
    assert referenced == set(example), (referenced ^ set(example))
    text = compose.ENV_EXAMPLE.read_text()
    for name in SECRET_VARIABLES:
        assert example[name].startswith("change-me"), name
        assert re.search(rf"^# .*\n{name}=", text, re.M), f"{name} has no comment above it"
    assert "/.env" in (REPO / ".gitignore").read_text().split()
    assert not (REPO / ".env").exists() or ".env" in subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", ".env"], capture_output=True, text=True).stdout


def test_volumes_for_logs_reports_data_docs_and_archive(spec):
    mounts = {target: source for source, target in (v.split(":")[:2] for v in spec["x-airflow-common"]["volumes"])}
    targets = set(mounts)
    assert {"/opt/airflow/logs", "/opt/airflow/data/reports", "/opt/airflow/data/data_docs",
            "/opt/airflow/data/archive"} <= targets
    assert spec["x-airflow-common"]["environment"]["HEALTHSCORE_DATA_DIR"] == "/opt/airflow/data"
    assert set(compose.load_raw()["volumes"]) >= {m for m in mounts.values() if not m.startswith(".")}


def test_dockerfile_installs_the_pinned_airflow_on_its_python():
    text = compose.DOCKERFILE.read_text()
    version = re.search(r"ARG AIRFLOW_VERSION=(\S+)", text).group(1)
    python = re.search(r"ARG PYTHON_VERSION=(\S+)", text).group(1)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in text
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    assert pins["apache-airflow"] == version
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"].startswith(
        f">={python},")
    assert '"apache-airflow==${AIRFLOW_VERSION}" -r' in text  # pip may never move Airflow off the image's version
    for image_path, repo_path in compose.image_copies().items():
        assert repo_path.exists(), (image_path, repo_path)


def _dag_sources() -> dict[str, tuple[str, str]]:
    """(connection id, pool) per source, from the source registry the DAG builds its tasks from."""
    from healthscore.sources import registry

    return {spec.name: (spec.conn_id, spec.pool) for spec in registry.sources()}


def test_every_connection_and_pool_the_dag_needs_is_created(spec):
    connections = json.loads((REPO / "airflow" / "connections.json").read_text())
    pools = json.loads((REPO / "airflow" / "pools.json").read_text())
    for conn_id, pool in _dag_sources().values():
        assert conn_id in connections, conn_id
        assert connections[conn_id]["host"] == "${HEALTHSCORE_SANDBOX_URL}"
        assert pool in pools, pool
    env = spec["x-airflow-common"]["environment"]
    assert env["HEALTHSCORE_SANDBOX_URL"] == "http://sandbox:8800"
    assert env[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"].startswith("postgresql://")
    assert "@postgres:5432/" in env[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"]


def test_native_topology_is_the_compose_topology(spec, native):
    """Same services, same environment and commands, except the documented single-machine differences."""
    config, init, components = native
    services = compose.load(config.variables)["services"]  # the file with the native run's variables
    assert set(services) == set(spec["services"])
    started = {c.service for c in components} | {init.service}
    assert started | set(EXTERNAL_SERVICES) | {"flower"} == set(services)  # flower: a profile, not started
    assert [c.name for c in components if c.service == SCALED_SERVICE] == ["worker1", "worker2"]
    host_names = ("@postgres:", "//redis:", "airflow-apiserver:", "//sandbox:", "/opt/airflow")
    for component in [init, *components]:
        service_env = compose.environment(services[component.service])
        for key, value in service_env.items():
            native_value = component.env[key]
            assert not any(name in native_value for name in host_names), (component.name, key, native_value)
            if not any(name in value for name in host_names):
                assert native_value == value, (component.name, key)  # untouched unless it names a host or path
        extra = set(component.env) - set(service_env) - set(os.environ)
        assert extra <= set(NATIVE_ONLY), (component.name, extra - set(NATIVE_ONLY))
        assert not any(name in arg for arg in component.argv for name in host_names), component.argv
    by_name = {c.name: c for c in components}
    for name, service in (("scheduler", "airflow-scheduler"), ("worker1", SCALED_SERVICE)):
        assert by_name[name].argv[1:len(services[service]["command"].split()) + 1] == \
            services[service]["command"].split()
    assert by_name["worker1"].env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "healthscore-test"
    assert "--queues" in by_name["worker1"].argv and "healthscore-test" in by_name["worker1"].argv
    secrets = {key: config.variables[key] for key in SECRET_VARIABLES}
    assert not set(secrets.values()) & set(compose.read_env_file().values()), "native runs use fresh secrets"
    assert set(NATIVE_DEFAULTS) <= set(compose.read_env_file())


def test_init_script_is_what_compose_runs():
    script = REPO / "deploy" / "airflow-init.sh"
    assert os.access(script, os.X_OK)
    assert compose.image_copies()["/opt/airflow/deploy/airflow-init.sh"] == script
    assert Path(REPO / "deploy" / "postgres" / "init-warehouse.sh").stat().st_mode & 0o111


@pytest.mark.parametrize(("text", "variables", "expected"), [
    ("${A}", {"A": "1"}, "1"),
    ("${A}", {}, ""),
    ("$A-$$B", {"A": "x"}, "x-$B"),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""),
    ("${A-d}", {}, "d"),
    ("${A:-${B:-z}}", {}, "z"),
    ("${A:+set}", {"A": "1"}, "set"),
    ("${A:+set}", {"A": ""}, ""),
    ("pg://${U:-airflow}:${P:?no password}@postgres:5432/${D:-airflow}", {"P": "s"}, "pg://airflow:s@postgres:5432/airflow"),
])
def test_interpolation_follows_compose(text, variables, expected):
    assert compose.interpolate(text, variables) == expected


def test_a_required_variable_names_itself():
    with pytest.raises(compose.ComposeError, match="POSTGRES_PASSWORD.*set it in .env"):
        compose.interpolate("${POSTGRES_PASSWORD:?set it in .env}", {"POSTGRES_PASSWORD": ""})
