"""Trigger detection for the playbook decision engine: which accounts each rule's trigger fires for
on the grid's last day, after hysteresis. Pure, no I/O; the trigger semantics are described in
``healthscore.playbooks.rules``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config.schema import (
    BandEntered,
    BandTransition,
    ModelConfig,
    PlaybookRule,
    RenewalApproaching,
    ScoreDrop,
    ScoreReached,
    SustainedBand,
)
from healthscore.playbooks.crossings import BandPath, debounce_bands, debounce_level
from healthscore.playbooks.frames import Grid


@dataclass
class TriggerDetector:
    grid: Grid
    model: ModelConfig
    _paths: dict[tuple[float, int], BandPath]

    def path(self, rule_id: str) -> BandPath:
        h = self.model.hysteresis_for(rule_id)
        key = (float(h.margin_points), int(h.persistence_days))
        if key not in self._paths:
            g = self.grid
            self._paths[key] = debounce_bands(
                g.rank, g.score, g.edges, g.band_waived, margin=key[0], persistence=key[1]
            )
        return self._paths[key]

    def band_names(self) -> list[str]:
        return [b.name for b in self.model.bands]

    def previous_observation(self, a: int) -> int | None:
        """Index of the last archived day before today with a state."""
        seen = np.flatnonzero(self.grid.rank[a, : self.grid.today] >= 0)
        return int(seen[-1]) if len(seen) else None

    def last_in_band(self, a: int, rank: int) -> int | None:
        seen = np.flatnonzero(self.grid.rank[a, : self.grid.today] == rank)
        return int(seen[-1]) if len(seen) else None

    def _score_at(self, a: int, t: int | None) -> float | None:
        if t is None:
            return None
        v = self.grid.raw_score[a, t]
        return None if np.isnan(v) else float(v)

    def _band_at(self, a: int, t: int | None) -> str | None:
        if t is None or self.grid.rank[a, t] < 0:
            return None
        return self.band_names()[int(self.grid.rank[a, t])]

    def default_change(self, a: int) -> dict[str, Any]:
        """Yesterday's archived state -> today's, for rules that are not band moves."""
        g, prev = self.grid, self.previous_observation(a)
        return {
            "band_from": self._band_at(a, prev),
            "band_to": self._band_at(a, g.today),
            "score_from": self._score_at(a, prev),
            "score_to": self._score_at(a, g.today),
            "previous_as_of_date": g.day(prev) if prev is not None else None,
        }

    def detect(self, rule_id: str, rule: PlaybookRule) -> dict[int, dict[str, Any]]:
        """Account index -> trigger detail, for the accounts whose trigger fires today."""
        trig, g, t = rule.trigger, self.grid, self.grid.today
        h = self.model.hysteresis_for(rule_id)
        m, p = float(h.margin_points), int(h.persistence_days)
        names = self.band_names()
        rank_of = {n: i for i, n in enumerate(names)}
        fired: dict[int, dict[str, Any]] = {}
        if isinstance(trig, BandEntered | BandTransition):
            path = self.path(rule_id)
            prev, now = path.previous[:, t], path.confirmed[:, t]
            if isinstance(trig, BandEntered):
                target = rank_of[trig.band]
                hit = path.moved_at(t) & (now == target) & ((prev < target) | (target == 0))
            else:
                hit = path.moved_at(t) & (prev == rank_of[trig.from_band]) & (now == rank_of[trig.to_band])
            for a in np.flatnonzero(hit):
                last_old = self.last_in_band(a, int(prev[a]))
                detail = self.default_change(a)
                detail.update(
                    band_from=names[int(prev[a])],
                    band_to=names[int(now[a])],
                    score_from=self._score_at(
                        a, last_old if last_old is not None else self.previous_observation(a)
                    ),
                )
                fired[int(a)] = detail
            return fired
        s = g.score
        present = ~np.isnan(s)
        with np.errstate(invalid="ignore"):
            if isinstance(trig, ScoreReached):
                x = trig.score
                rose = debounce_level(s >= x + m, s < x - m, s >= x, present, g.score_waived, persistence=p)
                for a in np.flatnonzero(rose[:, t]):
                    fired[int(a)] = {**self.default_change(a), "threshold": x}
            elif isinstance(trig, ScoreDrop):
                w = trig.within_days
                peak = pd.DataFrame(s.T).shift(1).rolling(w, min_periods=1).max().to_numpy().T
                drop = peak - s
                x = trig.points
                ok = ~np.isnan(drop)
                rose = debounce_level(
                    drop >= x + m, drop < x - m, drop >= x, ok, g.score_waived, persistence=p
                )
                for a in np.flatnonzero(rose[:, t]):
                    lo = max(0, t - w)
                    window = s[a, lo:t]
                    at = lo + int(np.nanargmax(window))
                    detail = self.default_change(a)
                    detail.update(
                        score_from=self._score_at(a, at),
                        band_from=self._band_at(a, at),
                        peak_date=g.day(at),
                        drop_points=float(drop[a, t]),
                        within_days=w,
                        threshold=x,
                    )
                    fired[int(a)] = detail
            elif isinstance(trig, RenewalApproaching):
                dtr = g.days_to_renewal
                in_win = (dtr >= 0) & (dtr <= trig.days_before_renewal)
                x = trig.below_score
                rose = debounce_level(
                    in_win & (s < x - m),
                    ~in_win | (s >= x + m),
                    in_win & (s < x),
                    present,
                    g.score_waived,
                    persistence=p,
                )
                for a in np.flatnonzero(rose[:, t]):
                    fired[int(a)] = {
                        **self.default_change(a),
                        "threshold": x,
                        "days_to_renewal": int(dtr[a, t]),
                    }
            elif isinstance(trig, SustainedBand):
                path = self.path(rule_id)
                target = rank_of[trig.band]
                mom = self.model.momentum
                recent = pd.DataFrame(s.T).shift(1).rolling(mom.window_days, min_periods=1).max()
                falling = (recent.to_numpy().T[:, t] - s[:, t]) >= mom.alert_drop_points
                hit = (path.confirmed[:, t] == target) & (g.rank[:, t] == target) & ~falling
                hit &= path.since[:, t] <= t - (trig.days - 1)
                for a in np.flatnonzero(hit):
                    since = int(path.since[a, t])
                    fired[int(a)] = {
                        **self.default_change(a),
                        "band_since": g.day(since),
                        "days_in_band": t - since + 1,
                        "required_days": trig.days,
                    }
        return fired
