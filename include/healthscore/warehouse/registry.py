"""Model version registry: every score row names a registered model version and its config hash.

Roles: one ``champion`` (scores and acts), any number of ``challenger`` (score daily in shadow, act on
nothing), ``candidate`` (registered, not scored) and ``retired`` (a former champion or a dropped challenger).
Each version records its number (registration order), parent, config hash, the whole config, metrics,
author or approver, a changelog line and its times. ``promote`` and ``rollback`` change the champion in one
transaction; the next daily ``score_and_archive`` reads the roles and scores with the new champion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from healthscore.config import ModelConfig
from healthscore.warehouse.models import ModelVersion
from healthscore.warehouse.types import utcnow


class ModelRegistryError(RuntimeError):
    """A version name is already taken by a different config, or a lifecycle step is not possible."""


@dataclass(frozen=True)
class Registered:
    """What ``register_model_version`` did: the version's role and whether this call created it."""

    version: str
    role: str
    number: int | None
    created: bool

    @property
    def message(self) -> str:
        if self.role == "challenger" and self.created:
            return (f"model version {self.version} is new: registered as challenger #{self.number} (it scores daily "
                    f"in shadow and acts on nothing); make it the champion with `healthscore model promote "
                    f"{self.version}`")
        return f"model version {self.version} is registered as {self.role}"


def _next_number(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(ModelVersion.number), 0))).scalar_one()) + 1


def register(engine: Engine, model: ModelConfig, *, role: str | None = None, notes: str | None = None,
             parent: str | None = None, author: str | None = None, changelog: str | None = None,
             metrics: dict[str, Any] | None = None) -> Registered:
    """Record ``model`` under its version name; idempotent for the same config.

    The first model registered becomes the champion; a new version after that becomes a **challenger**
    (scored daily in shadow) unless ``role`` says otherwise, so a new YAML is never silently ignored.
    Re-registering a version with a different config hash is refused: history must stay attributable,
    so a changed model needs a new name.
    """
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(ModelVersion.config_hash, ModelVersion.role, ModelVersion.number)
            .where(ModelVersion.version == model.version)
        ).first()
        if existing is not None:
            if existing.config_hash != model.config_hash:
                raise ModelRegistryError(
                    f"model version {model.version!r} is registered with config hash {existing.config_hash[:12]}, "
                    f"but this config hashes to {model.config_hash[:12]}; give the changed model a new `version` "
                    f"(see `healthscore model list`)")
            return Registered(model.version, existing.role, existing.number, False)
        has_champion = conn.execute(
            sa.select(sa.func.count()).select_from(ModelVersion).where(ModelVersion.role == "champion")
        ).scalar_one()
        role = role or ("challenger" if has_champion else "champion")
        if role == "champion" and has_champion:
            raise ModelRegistryError("a champion exists: register the new version as a challenger, then promote it")
        if parent is not None and conn.execute(sa.select(ModelVersion.version)
                                               .where(ModelVersion.version == parent)).first() is None:
            raise ModelRegistryError(f"parent version {parent!r} is not registered")
        number = _next_number(conn)
        now = utcnow()
        conn.execute(sa.insert(ModelVersion).values(
            version=model.version, number=number, config_hash=model.config_hash, config_yaml=model.ordered_json(),
            role=role, created_at=now, promoted_at=now if role == "champion" else None, notes=notes,
            parent_version=parent, author=author, metrics=metrics,
            changelog=changelog or (f"registered from {model.description.splitlines()[0][:120]}"
                                    if model.description else "registered")))
        return Registered(model.version, role, number, True)


def register_model_version(engine: Engine, model: ModelConfig, *, role: str | None = None,
                           notes: str | None = None) -> str:
    """``register`` returning the role alone (the daily DAG's ``prepare_warehouse`` and older callers)."""
    return register(engine, model, role=role, notes=notes).role


def champion_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(ModelVersion.version).where(ModelVersion.role == "champion")).scalar()


# ----------------------------------------------------------------------------------------- lifecycle


def _row_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("metrics",):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def list_versions(engine: Engine) -> list[dict[str, Any]]:
    """Every version, by number (the config itself left out)."""
    t = ModelVersion.__table__
    cols = [c for c in t.c if c.name != "config_yaml"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*cols).order_by(t.c.number.is_(None), t.c.number, t.c.created_at)).all()
    return [_row_dict(r) for r in rows]


def resolve(conn: Connection, ref: str) -> str:
    """A version name, or its number (``3`` or ``#3``)."""
    t = ModelVersion.__table__
    if conn.execute(sa.select(t.c.version).where(t.c.version == ref)).first() is not None:
        return ref
    text = ref.lstrip("#")
    if text.isdigit():
        found = conn.execute(sa.select(t.c.version).where(t.c.number == int(text))).scalar()
        if found is not None:
            return found
    raise ModelRegistryError(f"no model version {ref!r} in the registry (see `healthscore model list`)")


def get_version(engine: Engine, ref: str) -> dict[str, Any]:
    """One version's row, with its config as a dict under ``config``."""
    t = ModelVersion.__table__
    with engine.connect() as conn:
        version = resolve(conn, ref)
        row = conn.execute(sa.select(t).where(t.c.version == version)).first()
    out = _row_dict(row)
    out["config"] = json.loads(out.pop("config_yaml"))
    return out


def promote(engine: Engine, ref: str, *, approver: str | None = None, changelog: str | None = None) -> dict[str, Any]:
    """Make ``ref`` the champion; the former champion is retired (stamped ``demoted_at``). One transaction."""
    t = ModelVersion.__table__
    now = utcnow()
    with engine.begin() as conn:
        version = resolve(conn, ref)
        current = conn.execute(sa.select(t.c.version).where(t.c.role == "champion")).scalar()
        if current == version:
            return {"version": version, "previous_champion": current, "changed": False}
        if current is not None:
            conn.execute(t.update().where(t.c.version == current).values(role="retired", demoted_at=now))
        values: dict[str, Any] = {"role": "champion", "promoted_at": now, "demoted_at": None}
        if approver:
            values["approved_by"] = approver
        if changelog:
            values["changelog"] = changelog
        conn.execute(t.update().where(t.c.version == version).values(**values))
    return {"version": version, "previous_champion": current, "changed": True}


def rollback(engine: Engine, ref: str | None = None, *, approver: str | None = None) -> dict[str, Any]:
    """Champion back to ``ref``, or (without one) to the champion before the current one."""
    t = ModelVersion.__table__
    with engine.connect() as conn:
        if ref is None:
            ref = conn.execute(sa.select(t.c.version).where(t.c.demoted_at.is_not(None), t.c.role != "champion")
                               .order_by(t.c.demoted_at.desc()).limit(1)).scalar()
            if ref is None:
                raise ModelRegistryError("nothing to roll back to: no version has been champion before the current one")
        else:
            ref = resolve(conn, ref)
    current = champion_version(engine)
    result = promote(engine, ref, approver=approver, changelog=f"rollback from {current} to {ref}")
    return {**result, "rolled_back_from": current}


def set_role(engine: Engine, ref: str, role: str) -> str:
    """Move a non-champion version between challenger, candidate and retired."""
    if role not in ("challenger", "candidate", "retired"):
        raise ModelRegistryError(f"role {role!r}: use promote for champion")
    t = ModelVersion.__table__
    with engine.begin() as conn:
        version = resolve(conn, ref)
        if conn.execute(sa.select(t.c.role).where(t.c.version == version)).scalar() == "champion":
            raise ModelRegistryError(f"{version} is the champion: promote another version first")
        conn.execute(t.update().where(t.c.version == version).values(role=role))
    return version


def record_metrics(engine: Engine, version: str, metrics: dict[str, Any]) -> None:
    t = ModelVersion.__table__
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.version == version).values(metrics=metrics))
