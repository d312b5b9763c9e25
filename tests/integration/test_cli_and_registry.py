"""The `healthscore` command line and the model-version registry."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from healthscore.cli import main
from healthscore.config import load_model_config, model_config_from_dict
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import head_revision, upgrade
from healthscore.warehouse.registry import ModelRegistryError, champion_version, register_model_version


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "healthscore.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("sandbox", "config", "warehouse", "demo"):
        assert command in out


def test_config_validate_good_and_bad(tmp_path, capsys):
    assert main(["config", "validate"]) == 0
    assert load_model_config().config_hash in capsys.readouterr().out
    data = yaml.safe_load(load_model_config().canonical_json())
    data["weights"]["smb"]["usage"] += 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "weights.smb" in err and "must sum to 100" in err


def test_ground_truth_is_exported_only_by_the_admin_command(tmp_path):
    assert main(["sandbox", "ground-truth", "--seed", "3", "--accounts", "40", "--out", str(tmp_path)]) == 0
    accounts = pd.read_parquet(tmp_path / "accounts.parquet")
    assert len(accounts) == 40 and "churn_reason" in accounts.columns
    assert (tmp_path / "renewal_outcomes.parquet").exists()


def test_warehouse_command_migrates(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main(["warehouse", "upgrade", "--url", url]) == 0
    assert f'"revision": "{head_revision()}"' in capsys.readouterr().out
    assert main(["warehouse", "downgrade", "--url", url]) == 0
    assert '"revision": null' in capsys.readouterr().out


def test_registry_is_idempotent_and_refuses_a_changed_config_under_the_same_name(warehouse_url):
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    model = load_model_config()
    assert register_model_version(engine, model) == "champion"
    assert register_model_version(engine, model) == "champion"
    assert champion_version(engine) == model.version
    changed = yaml.safe_load(model.canonical_json())
    changed["description"] = "edited"
    edited = model_config_from_dict(changed, "edited")
    with pytest.raises(ModelRegistryError, match="new `version`"):
        register_model_version(engine, edited)
    changed["version"] = "v2"
    assert register_model_version(engine, model_config_from_dict(changed, "v2")) == "challenger"
    engine.dispose()


def test_a_model_read_back_from_the_registry_keeps_its_dimension_order_and_its_own_compiled_tables(tmp_path):
    """The YAML model and its registry twin hash equal; a process that compiled one must not score the other
    with its tables (the bootstrap's sequential and worker runs once named blocked dimensions in two orders)."""
    import json

    from healthscore.pipeline.score import registered_models
    from healthscore.scoring.compiled import compile_model

    model = load_model_config()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    engine = make_engine(url)
    register_model_version(engine, model)
    (stored, _), = registered_models(engine)
    assert stored.config_hash == model.config_hash
    assert list(stored.dimensions) == list(model.dimensions) == ["usage", "engagement", "relationship", "support",
                                                                 "value", "financial"]
    sorted_twin = model_config_from_dict(json.loads(model.canonical_json()))  # what older registries hold
    assert sorted_twin.config_hash == model.config_hash and list(sorted_twin.dimensions) != list(model.dimensions)
    assert compile_model(model).dimension_ids == tuple(model.dimensions)
    assert compile_model(sorted_twin).dimension_ids == tuple(sorted_twin.dimensions)
    assert compile_model(model).dimension_ids == tuple(model.dimensions)
