"""Every command in the README is run by a test or by CI, so none can rot.

The fenced shell blocks of README.md are split into commands; each must match one entry of ``COVERAGE``, which
says where it is run: executed here (the sandbox curls against a live sandbox, the connection exports parsed and
compared with what the code builds, ``cp .env.example .env``), or by the named test or CI file, which must contain
the given text. A new README command without an entry fails ``test_every_readme_command_is_covered``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
HERE = "executed by this module"

# (pattern the command matches, file that runs it, text that file must contain) -- or (pattern, HERE, why).
COVERAGE: list[tuple[str, str, str]] = [
    (r"make test", ".ci/run", "make test"),
    (r"make lint", ".ci/run", "make lint"),
    (r"airflow backfill create --dag-id customer_health_daily .*--reprocess-behavior failed",
     "tests/integration/test_backfill.py", '"--reprocess-behavior", "failed"'),
    (r"curl .*http://127\.0\.0\.1:8800/.*", HERE, "against a live sandbox"),
    (r"export AIRFLOW_CONN_\w+=.*", HERE, "parsed and compared with demo.sandbox_connections"),
    (r"cp \.env\.example \.env", HERE, "the file exists and parses"),
    # Not run, only checked, and said so: there is no Docker engine on the CI machine (docker-compose validates
    # the file and tests/unit/test_compose.py its shape), and the long tests take ~28 min (run on demand).
    (r"docker compose .*", ".ci/run", "docker-compose --project-directory . --env-file .env.example config -q"),
    (r"make test-long", "Makefile", "pytest -m long"),
    # NOT RUN by CI, said so: the demo bootstraps 64 days of history and runs four Airflow runs (its time is in
    # the README's "What the demo does"), beyond the suite's budget. Its parts run in tests (test_daily_dag_full,
    # test_accuracy_dag, test_sixty_days, test_demo_messages).
    (r"make demo", "Makefile", "$(BIN)/healthscore demo"),
    (r"\.venv/bin/python -m deploy\.native (start|status|stop).*", "tests/e2e/test_celery_topology.py",
     '"deploy.native"'),
    (r"healthscore override (set|list|revoke) .*", "tests/integration/test_ui_app.py", 'main(["override", "revoke"'),
    # The command's entry point (healthscore.pipeline.history.bootstrap), not its argument parsing; only in the
    # long tests (make test-long).
    (r"healthscore history bootstrap .*", "tests/integration/test_sixty_days.py", "bootstrap(plan, progress=False)"),
    (r"healthscore (recalibrate|backtest) TABLE .*", "tests/unit/test_byo.py", '"recalibrate",'),
    (r"healthscore model (list|show|diff|promote|rollback|export)( .*)?", "tests/integration/test_recalibration.py",
     'main(["model", "rollback"])'),
]


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of the README's bash/sh/console blocks: continuation lines joined, comments dropped."""
    text = README.read_text() if text is None else text
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return commands


def covering(command: str) -> list[tuple[str, str, str]]:
    return [entry for entry in COVERAGE if re.fullmatch(entry[0], re.sub(r"\s+", " ", command))]


def test_every_readme_command_is_covered():
    commands = readme_commands()
    assert len(commands) >= 10
    uncovered = [c for c in commands if not covering(c)]
    assert not uncovered, f"README commands that no test or CI runs (add a test and a COVERAGE entry): {uncovered}"


def test_an_uncovered_command_is_caught():
    assert [c for c in readme_commands("```bash\nhealthscore frobnicate --all\n```\n") if not covering(c)] == [
        "healthscore frobnicate --all"]


@pytest.mark.parametrize(("pattern", "where", "needle"), [e for e in COVERAGE if e[1] != HERE])
def test_each_covering_file_runs_its_command(pattern, where, needle):
    path = REPO / where
    assert path.exists(), where
    assert needle in path.read_text(), f"{where} no longer contains {needle!r} (it covered {pattern!r})"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

    with ThreadedSandbox(build_state(SandboxOptions(seed=42, accounts=20))) as server:
        yield server.url


def test_sandbox_curls_answer(sandbox):
    curl = shutil.which("curl")
    assert curl, "curl is needed to run the README's curl commands"
    curls = [c for c in readme_commands() if c.startswith("curl ")]
    assert len(curls) == 4
    for command in curls:
        argv = [a.replace("http://127.0.0.1:8800", sandbox) for a in shlex.split(command)]
        out = subprocess.run([*argv, "--fail", "--silent", "--show-error", "--max-time", "30"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (command, out.stderr)
        body = out.stdout.strip()
        assert body, command
        first = json.loads(body.splitlines()[0])  # JSON (Mixpanel: JSON lines)
        assert first, command


def test_connection_exports_are_what_the_code_builds():
    from healthscore.demo import sandbox_connections

    exports = dict(re.fullmatch(r"export (\w+)='(.*)'", c).groups() for c in readme_commands()
                   if c.startswith("export AIRFLOW_CONN_"))
    expected = sandbox_connections("http://127.0.0.1:8800")
    for name, value in expected.items():
        built = {key: val for key, val in json.loads(value).items() if val is not None}
        assert json.loads(exports[name]) == built, name
    assert exports["AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE"].startswith("postgresql://")


def test_env_example_copies_to_a_usable_env(tmp_path):
    from deploy.compose import read_env_file

    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    assert read_env_file(tmp_path / ".env")["AIRFLOW_JWT_SECRET"]
