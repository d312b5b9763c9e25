"""Quality-gate policy: which health dimensions each source feeds, and the thresholds of the gate.

Kept free of pandas and Great Expectations so DAG files can import it at parse time.

Source -> dimensions (what a blocked source takes out of today's score) is declared with each source in
``healthscore.sources.registry`` (``SourceSpec.dimensions``, next to the signals it feeds).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from healthscore.sources import registry

Severity = Literal["critical", "warning"]

#: Source -> dimensions, as the registry declared them when this module was imported.
SOURCE_DIMENSIONS: dict[str, tuple[str, ...]] = registry.source_dimensions()


def dimensions_fed_by(source: str) -> tuple[str, ...]:
    """Health dimensions computed from ``source`` (blocked together when its data is unusable)."""
    return registry.source(source).dimensions


class QualityThresholds(BaseModel):
    """Tunable gate thresholds (config, not code). Keys of ``freshness_hours`` are ``source.object``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_freshness_hours: float = Field(48.0, gt=0, description="For objects whose default is 'default'.")
    freshness_hours: dict[str, float | None] = Field(
        default_factory=dict, description="Per-object override; None switches freshness off for that object.")
    freshness_severity: Severity = "critical"
    volume_k: float = Field(3.0, gt=1, description="Row count must be within median/k .. median*k.")
    volume_window_days: int = Field(7, ge=1, description="Trailing days of history the median is taken over.")
    volume_severity: Severity = "warning"
    max_quarantine_share: float = Field(
        0.2, ge=0, le=1, description="Share of landed rows quarantined above which the source is blocked.")
