"""Model-as-code: the health model YAML, its pydantic schema and the loader.

Everything that decides a score (signals, baselines, weights, bands, thresholds, playbook rules)
lives in data so that a model version is a reviewable file with a stable hash, not a code change.
"""

from healthscore.config.loader import (
    ConfigProblem,
    ModelConfigError,
    default_model_text,
    load_model_config,
    model_config_from_dict,
    validate_model_config_text,
)
from healthscore.config.schema import (
    Band,
    Direction,
    ModelConfig,
    Normalization,
    ScoringMethod,
    Segment,
    Severity,
    SignalKind,
    SignalSpec,
    Thresholds,
)

__all__ = [
    "Band",
    "ConfigProblem",
    "Direction",
    "ModelConfig",
    "ModelConfigError",
    "Normalization",
    "ScoringMethod",
    "Segment",
    "Severity",
    "SignalKind",
    "SignalSpec",
    "Thresholds",
    "default_model_text",
    "load_model_config",
    "model_config_from_dict",
    "validate_model_config_text",
]
