"""Score bands (integer ranges covering 0-100 exactly once) and healthy / at-risk thresholds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from healthscore.config.base import Loc, NonEmptyStr, Score, Segment, _Frozen, _num, as_segment, config_error

# ------------------------------------------------------------------------------- bands and thresholds


class Band(_Frozen):
    """Integer-inclusive score range; scores are rounded half-up before lookup."""

    name: NonEmptyStr
    min: int = Field(ge=0, le=100)
    max: int = Field(ge=0, le=100)
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"max {value} is below min {low}")
        return value


def _band_coverage_problems(bands: list[Band]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, band in enumerate(bands):
        if band.name in seen:
            problems.append(
                ((i, "name"), f"duplicate band name {band.name!r} (also bands[{seen[band.name]}])")
            )
        seen.setdefault(band.name, i)
    order = sorted(range(len(bands)), key=lambda i: (bands[i].min, bands[i].max))
    next_uncovered = 0
    previous: int | None = None
    for i in order:
        band = bands[i]
        if band.min > next_uncovered:
            problems.append(((i, "min"), f"gap: no band covers {next_uncovered}-{band.min - 1}"))
        elif band.min < next_uncovered and previous is not None:
            other = bands[previous]
            problems.append(
                (
                    (i, "min"),
                    f"band {band.name!r} ({band.min}-{band.max}) overlaps band {other.name!r} "
                    f"({other.min}-{other.max}) on {band.min}-{min(band.max, next_uncovered - 1)}",
                )
            )
        if band.max + 1 > next_uncovered:
            next_uncovered, previous = band.max + 1, i
    if bands and next_uncovered <= 100:
        problems.append(((order[-1], "max"), f"gap: no band covers {next_uncovered}-100"))
    return problems


class Thresholds(_Frozen):
    """Healthy at or above one score, at risk below another; between the two is moderate."""

    healthy_at_or_above: Score
    at_risk_below: Score

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.at_risk_below > self.healthy_at_or_above:
            raise config_error(
                "Thresholds",
                [
                    (
                        ("at_risk_below",),
                        f"at_risk_below {_num(self.at_risk_below)} is above "
                        f"healthy_at_or_above {_num(self.healthy_at_or_above)}",
                    )
                ],
            )
        return self


class SegmentThresholds(_Frozen):
    enterprise: Thresholds
    mid_market: Thresholds
    smb: Thresholds

    def get(self, segment: str | Segment) -> Thresholds:
        return getattr(self, as_segment(segment).value)
