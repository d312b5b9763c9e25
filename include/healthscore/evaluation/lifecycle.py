"""What ``healthscore model diff`` and ``export`` show: two registered versions compared, one as YAML (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.evaluation.byo import SEGMENTS
from healthscore.evaluation.challenger import changes

RECORD_KEYS = ("number", "version", "role", "parent_version", "config_hash", "author", "approved_by", "changelog",
               "created_at", "promoted_at")


def model_of(row: Mapping[str, Any]) -> ModelConfig:
    return model_config_from_dict(dict(row["config"]), f"model_versions[{row['version']}]", stored=True)


def diff_versions(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Registry records side by side, and what the config changed from ``a`` to ``b``."""
    out: dict[str, Any] = {"versions": {k: (a.get(k), b.get(k)) for k in RECORD_KEYS}}
    out["same_config"] = a["config_hash"] == b["config_hash"]
    out["changes"] = changes(model_of(a), model_of(b), SEGMENTS)
    out["changes"]["scoring_method"] = (a["config"].get("scoring", {}).get("method"),
                                        b["config"].get("scoring", {}).get("method"))
    return out


def export_yaml(row: Mapping[str, Any]) -> str:
    """The version's config as a model YAML that ``healthscore config validate`` accepts (same config hash)."""
    model = model_of(row)
    header = (f"# healthscore model {model.version} (#{row.get('number')}), exported from the registry\n"
              f"# role {row.get('role')}, parent {row.get('parent_version') or '-'}, config_hash {model.config_hash}\n")
    return header + yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110)
