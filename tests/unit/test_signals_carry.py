"""healthscore.signals.carry: which dimensions a blocked source takes out, and how they are carried forward."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from healthscore.config import load_model_config
from healthscore.signals.carry import (
    SourceStatus,
    apply_dimension_status,
    dimension_reasons,
    signal_columns,
)

DAY = date(2026, 9, 30)
FEEDS = {"stripe": ("financial", "value"), "zendesk": ("support",)}


def test_an_unusable_source_names_its_dimensions() -> None:
    model = load_model_config()
    statuses = {"stripe": SourceStatus("stripe", False, "stripe blocked"), "zendesk": SourceStatus("zendesk", True, "")}
    reasons = dimension_reasons(model, statuses, FEEDS)
    assert reasons["financial"] == ["stripe blocked"] and reasons["support"] == []
    assert set(reasons) == set(model.dimensions)


def test_carried_decayed_or_missing() -> None:
    model = load_model_config()
    signals = list(model.dimensions["financial"].signals)
    frame = pd.DataFrame({"account_id": ["b", "a", "c"], **{s: [1.0, 1.0, 1.0] for s in model.all_signal_ids()}})
    good = {s: 0.25 for s in signals}
    prior = {
        "a": (DAY - timedelta(days=2), good, {"financial": {"status": "ok"}}),  # carried, 2 days old
        "b": (DAY - timedelta(days=1), good, {"financial": {"status": "carried_forward",
                                                           "from": (DAY - timedelta(days=model.carry_forward.max_days + 1))
                                                           .isoformat()}}),  # too old at the source
    }
    reasons = {dim: (["stripe blocked"] if dim == "financial" else []) for dim in model.dimensions}
    out = apply_dimension_status(frame, model, reasons, prior, DAY, FEEDS)
    assert out["account_id"].tolist() == ["a", "b", "c"]
    a, b, c = (out.iloc[i] for i in range(3))
    assert all(a[s] == 0.25 for s in signals) and a["carried_dimensions"] == ["financial"]
    assert a["confidence_financial"] == model.carry_forward.confidence(2) and a["blocked_dimensions"] == []
    assert a["dimension_sources"]["financial"]["from"] == (DAY - timedelta(days=2)).isoformat()
    for row in (b, c):
        assert all(np.isnan(row[s]) for s in signals) and row["blocked_dimensions"] == ["financial"]
        assert row["confidence_financial"] == 0.0 and row["dimension_sources"]["financial"]["status"] == "missing"
    assert c["dimension_sources"]["support"] == {"status": "ok", "confidence": 1.0, "reason": "fresh from zendesk"}
    assert set(signal_columns(out)) == set(model.all_signal_ids())
