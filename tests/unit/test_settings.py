"""Settings: every HEALTHSCORE_* variable keeps its name and default, and values are parsed one way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from healthscore.preload import preload_enabled
from healthscore.settings import Settings, SettingsError, env_var

README = Path(__file__).resolve().parents[2] / "README.md"

DEFAULTS = {
    "HEALTHSCORE_DATA_DIR": ("data_dir", Path("data")),
    "HEALTHSCORE_WAREHOUSE_URL": ("warehouse_url", None),
    "HEALTHSCORE_MODEL_CONFIG": ("model_config_path", None),
    "HEALTHSCORE_ARCHIVE_URL": ("archive_url", None),
    "HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": ("mixpanel_backfill_days", 35),
    "HEALTHSCORE_DATA_DOCS_INDEX_LIMIT": ("data_docs_index_limit", 200),
    "HEALTHSCORE_DATA_DOCS_PUBLISH": ("data_docs_publish", True),
    "HEALTHSCORE_VALIDATION_CHUNK_ROWS": ("validation_chunk_rows", 100_000),
    "HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL": ("quality_fail_on_critical", False),
    "HEALTHSCORE_PRELOAD_TASK_RUNTIME": ("preload_task_runtime", False),
    "HEALTHSCORE_NOTIFY_FALLBACK_EMAIL": ("notify_fallback_email", None),
    "HEALTHSCORE_OVERRIDE_MAX_DAYS": ("override_max_days", 90),
    "HEALTHSCORE_SCORE_SHARDS": ("score_shards", 1),
    "HEALTHSCORE_EXTRACT_PARTS": ("extract_parts", 1),
}
VALUES = {
    "HEALTHSCORE_DATA_DIR": ("/srv/hs", Path("/srv/hs")),
    "HEALTHSCORE_WAREHOUSE_URL": ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    "HEALTHSCORE_MODEL_CONFIG": ("/etc/model.yaml", Path("/etc/model.yaml")),
    "HEALTHSCORE_ARCHIVE_URL": ("s3://bucket/prefix", "s3://bucket/prefix"),
    "HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": ("3", 3),
    "HEALTHSCORE_DATA_DOCS_INDEX_LIMIT": ("20", 20),
    "HEALTHSCORE_DATA_DOCS_PUBLISH": ("false", False),
    "HEALTHSCORE_VALIDATION_CHUNK_ROWS": ("5000", 5000),
    "HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL": ("true", True),
    "HEALTHSCORE_PRELOAD_TASK_RUNTIME": ("1", True),
    "HEALTHSCORE_NOTIFY_FALLBACK_EMAIL": ("revops@example.com", "revops@example.com"),
    "HEALTHSCORE_OVERRIDE_MAX_DAYS": ("30", 30),
    "HEALTHSCORE_SCORE_SHARDS": ("4", 4),
    "HEALTHSCORE_EXTRACT_PARTS": ("3", 3),
}


def test_every_variable_and_default() -> None:
    defaults = Settings.from_env({})
    assert {env_var(f) for f in Settings.model_fields} == set(DEFAULTS)
    for name, (field, default) in DEFAULTS.items():
        assert env_var(field) == name
        assert getattr(defaults, field) == default, name
        raw, parsed = VALUES[name]
        assert getattr(Settings.from_env({name: raw}), field) == parsed, name


def test_readme_settings_table_lists_every_variable() -> None:
    table = {m for m in re.findall(r"^\| `(HEALTHSCORE_[A-Z_]+)` \|", README.read_text(), flags=re.M)}
    assert table == set(DEFAULTS)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("TRUE", True), (" yes ", True), ("1", True),
                                               ("on", True), ("false", False), ("0", False), ("No", False),
                                               ("off", False), ("", False)])
def test_one_boolean_parser_for_every_flag(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL": raw,
                                  "HEALTHSCORE_PRELOAD_TASK_RUNTIME": raw})
    assert settings.quality_fail_on_critical is expected
    assert settings.preload_task_runtime is expected
    assert preload_enabled({"HEALTHSCORE_PRELOAD_TASK_RUNTIME": raw}) is expected


@pytest.mark.parametrize(("name", "raw", "problem"), [
    ("HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL", "maybe", "valid boolean"),
    ("HEALTHSCORE_PRELOAD_TASK_RUNTIME", "ture", "valid boolean"),
    ("HEALTHSCORE_MIXPANEL_BACKFILL_DAYS", "a week", "valid integer"),
    ("HEALTHSCORE_DATA_DOCS_INDEX_LIMIT", "0", "greater than or equal to 1"),
    ("HEALTHSCORE_SCORE_SHARDS", "0", "greater than or equal to 1"),
    ("HEALTHSCORE_EXTRACT_PARTS", "0", "greater than or equal to 1"),
])
def test_a_bad_value_names_the_variable(name: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: raw})
    message = str(err.value)
    assert name in message and repr(raw) in message and problem in message and "\n" not in message


def test_only_from_env_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHSCORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHSCORE_MIXPANEL_BACKFILL_DAYS", "7")
    assert Settings().data_dir == Path("data") and Settings().mixpanel_backfill_days == 35
    assert Settings.from_env().data_dir == tmp_path and Settings.from_env().mixpanel_backfill_days == 7
    assert Settings.from_env(data_dir=Path("x")).data_dir == Path("x")  # an explicit value wins
    assert Settings.from_env({}).data_dir == Path("data")  # a given mapping replaces os.environ


def test_cli_reports_a_bad_variable_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from healthscore.cli import main

    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", "sqlite://")
    monkeypatch.setenv("HEALTHSCORE_DATA_DOCS_INDEX_LIMIT", "lots")
    assert main(["warehouse", "current"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HEALTHSCORE_DATA_DOCS_INDEX_LIMIT='lots'" in err
