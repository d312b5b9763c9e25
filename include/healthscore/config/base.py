"""Shared parts of the model schema: the error helpers, the frozen base model, the constrained scalar
types and the enums every section of the model uses.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
# Validation-context key: the signal ids the pipeline computes (see ``loader``); absent: not checked.
COMPUTABLE_SIGNALS_CONTEXT = "computable_signals"
WEIGHT_SUM_TOLERANCE = 1e-6

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Score = Annotated[float, Field(ge=0, le=100)]


def config_error(title: str, problems: Iterable[tuple[Loc, str]]) -> ValidationError:
    """Build a ValidationError at explicit locations, so cross-field problems name their key."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("healthscore_config", "{problem}", {"problem": message}),
            loc=loc,
            input=None,
        )
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)


def _raise_if(title: str, problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise config_error(title, problems)


def _suggest(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if len(known) <= 12 else ""


def _num(value: float) -> str:
    """Format 40.0 as 40 and keep real fractions, so messages read like the YAML."""
    return f"{value:g}" if math.isfinite(value) else str(value)


class _Frozen(BaseModel):
    # Frozen: one config object flows through the pipeline and its hash must keep describing it.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- enums


class Segment(StrEnum):
    ENTERPRISE = "enterprise"
    MID_MARKET = "mid_market"
    SMB = "smb"


def as_segment(value: str | Segment) -> Segment:
    """Segments arrive as plain strings from the warehouse; fail loudly on an unmapped one."""
    try:
        return Segment(value)
    except ValueError:
        raise ValueError(
            f"unknown segment {value!r}; expected one of {', '.join(s.value for s in Segment)}"
        ) from None


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


class SignalKind(StrEnum):
    """What a raw value measures; decides whether negative floors and caps make sense."""

    COUNT = "count"
    RATE = "rate"
    PERCENT = "percent"
    RATIO = "ratio"
    BINARY = "binary"
    RATING = "rating"
    CURRENCY = "currency"
    DAYS = "days"
    CHANGE_PCT = "change_pct"


SIGNED_KINDS = frozenset({SignalKind.CHANGE_PCT})


class SignalSource(StrEnum):
    CRM = "crm"
    SUPPORT = "support"
    BILLING = "billing"
    PRODUCT = "product"


class ScoringMethod(StrEnum):
    WEIGHTED_AVERAGE = "weighted_average"
    POINTS = "points"
    RAG_RULES = "rag_rules"
    PERCENTILE_RANK = "percentile_rank"
    MODEL_PROBABILITY = "model_probability"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class NotifyRole(StrEnum):
    CSM = "csm"
    CS_LEADER = "cs_leader"
    EXEC_SPONSOR = "exec_sponsor"
    ACCOUNT_EXECUTIVE = "account_executive"
    SUPPORT_LEAD = "support_lead"
