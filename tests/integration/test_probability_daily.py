"""The daily score task scores with ``model_probability``: the champion's YAML carries the classifier.

Stored signals of two dates in a SQLite warehouse (the random portfolio of ``test_scoring``); a probability
model fitted on earlier synthetic dates is registered as champion and the packaged weighted model as a
challenger; ``score_batch`` (what the ``score_and_archive`` task runs) scores both dates. The archived
champion scores must be the stored classifier's 100 x P(retained), with dimension scores, contributions and,
on the second date, attribution; the challenger stays the weighted model, in shadow.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from healthscore.batch import Batch
from healthscore.config import load_model_config
from healthscore.evaluation.probability import (
    fit_probability_model,
    probability_features,
    with_probability_model,
)
from healthscore.pipeline.score import score_batch
from healthscore.pipeline.signals import COMPUTED_SIGNALS, load_signals, store_signals
from healthscore.scoring.probability import ArtifactClassifier
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import HealthScore
from healthscore.warehouse.registry import register_model_version
from tests.unit.test_scoring import MATURE, random_signals

DAY = dt.date(2025, 6, 30)


def _portfolio(model, n: int, day: dt.date, seed: int) -> pd.DataFrame:
    frame = random_signals(model, n, seed=seed, missing=0.05).assign(as_of_date=day, tenure_days=MATURE)
    frame["lifecycle_stage"] = None
    frame["dimension_sources"] = [{} for _ in range(n)]
    return frame


def _batch(day: dt.date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), time(), UTC), f"prob-{day.isoformat()}")


def test_daily_scoring_with_a_probability_champion(tmp_path) -> None:
    base = load_model_config(computable_signals=COMPUTED_SIGNALS)
    # Training: 6 earlier month ends of 120 accounts; churn follows usage and financial health.
    rng = np.random.default_rng(7)
    parts = [_portfolio(base, 120, DAY - timedelta(days=30 * (7 - m)), seed=100 + m) for m in range(6)]
    history = pd.concat(parts, ignore_index=True)
    features = probability_features(history, base)
    logit = -1.5 + 0.05 * (50 - features["usage"].fillna(50)) + 0.04 * (50 - features["financial"].fillna(50))
    frame = features.assign(
        churned=(rng.random(len(features)) < 1 / (1 + np.exp(-logit))).astype(int),
        as_of_date=history["as_of_date"],
        account_id=history["account_id"],
    )
    artifact = fit_probability_model(frame, "churned", list(base.dimensions))
    champion = with_probability_model(base, artifact, version="v2-prob")

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        assert register_model_version(engine, champion) == "champion"
        register_model_version(engine, base, role="challenger")
        today = _portfolio(base, 80, DAY, seed=1)
        before = today.copy().assign(as_of_date=DAY - timedelta(days=30))
        before["active_user_pct"] = np.clip(before["active_user_pct"] + 30, 0, 100)  # usage was better
        archive = f"file://{(tmp_path / 'archive').resolve()}"
        for day, signals in ((DAY - timedelta(days=30), before), (DAY, today)):
            store_signals(engine, signals)
            written = score_batch(engine, load_signals(engine, day), _batch(day), archive_url=archive)
            assert written == {"v2-prob": 80, "v1": 80}

        table = HealthScore.__table__
        with engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(sa.select(table).where(table.c.as_of_date == DAY)).mappings().all())
    finally:
        engine.dispose()

    prob = rows[rows["model_version"] == "v2-prob"].set_index("account_id").sort_index()
    weighted = rows[rows["model_version"] == "v1"].set_index("account_id").sort_index()
    assert not prob["is_shadow"].any() and weighted["is_shadow"].all()
    scored = prob["score"].notna()
    assert scored.mean() > 0.9
    signals = today.set_index("account_id").sort_index()
    x = probability_features(signals.reset_index(), base).set_index(signals.index)[list(base.dimensions)]
    expected = 100 * ArtifactClassifier(artifact).predict_proba(x.to_numpy())[:, 0]
    np.testing.assert_allclose(prob.loc[scored, "score"].astype(float), expected[scored.to_numpy()], atol=0.05 + 1e-9)
    assert not np.allclose(prob.loc[scored, "score"].astype(float), weighted.loc[scored, "score"].astype(float))
    # The breakdown CSMs read: the same glass-box dimension scores; contributions; attribution of the change.
    assert prob.loc[scored, "dimension_scores"].tolist() == weighted.loc[scored, "dimension_scores"].tolist()
    assert all(set(c) == set(base.dimensions) for c in prob.loc[scored, "contributions"])
    moved = [a for a in prob.loc[scored, "attribution"] if a]
    assert len(moved) > 0.5 * scored.sum()
    assert sum(a[0]["dimension"] == "usage" for a in moved) > 0.8 * len(moved)
    assert (tmp_path / "archive" / "health_scores" / f"as_of_date={DAY}" / "model_version=v2-prob").is_dir()
