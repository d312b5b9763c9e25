"""Model version registry: every score row names a registered model version and its config hash."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.config import ModelConfig
from healthscore.warehouse.models import ModelVersion
from healthscore.warehouse.types import utcnow


class ModelRegistryError(RuntimeError):
    """A version name is already taken by a different config."""


def register_model_version(engine: Engine, model: ModelConfig, *, role: str | None = None,
                           notes: str | None = None) -> str:
    """Record ``model`` under its version name; idempotent for the same config.

    The first model registered becomes the champion. Re-registering a version with a different
    config hash is refused: history must stay attributable, so a changed model needs a new name.
    """
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(ModelVersion.config_hash, ModelVersion.role).where(ModelVersion.version == model.version)
        ).first()
        if existing is not None:
            if existing.config_hash != model.config_hash:
                raise ModelRegistryError(
                    f"model version {model.version!r} is registered with config hash {existing.config_hash[:12]}, "
                    f"but this config hashes to {model.config_hash[:12]}; give the changed model a new `version`")
            return existing.role
        has_champion = conn.execute(
            sa.select(sa.func.count()).select_from(ModelVersion).where(ModelVersion.role == "champion")
        ).scalar_one()
        role = role or ("candidate" if has_champion else "champion")
        conn.execute(sa.insert(ModelVersion).values(
            version=model.version, config_hash=model.config_hash, config_yaml=model.canonical_json(), role=role,
            created_at=utcnow(), promoted_at=utcnow() if role == "champion" else None, notes=notes))
        return role


def champion_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(ModelVersion.version).where(ModelVersion.role == "champion")).scalar()
