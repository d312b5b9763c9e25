"""Debounced crossing detection over a dense (account x calendar day) grid of archived states.

Why a state machine: with a margin, the first day a score dips a little below a line is not yet a
crossing, so the next, deeper day must still count as one even though the archived band did not change.
That needs a remembered *confirmed* state, which plain "yesterday's band != today's band" cannot give.

Definitions (all scores are rounded half-up first, the integer the CSM sees; see ``rules`` for the story):

* Observation: a day with an archived effective state. Days without one (not scored, not archived)
  are skipped: they neither count towards nor break a persistence streak.
* Band machine: bands are ranked best-first (0 = Healthy). ``edges[k]`` is the lowest score of rank
  ``k`` for the account that day (segment/stage/renewal aware). Rank ``k`` (or worse) is *entered from
  above* on a day whose archived band is ``k`` or worse AND whose score is below ``edges[k-1] - margin``;
  rank ``k`` (or better) is *reached from below* on a day whose archived band is ``k`` or better AND whose
  score is at least ``edges[k] + margin``. A move is confirmed once it held on ``persistence`` consecutive
  observations (0 and 1 both mean "today alone"); a move to several bands confirms the furthest band that
  held long enough. The confirmed state starts as the archived band of the first observation.
* Level machine: the same for a single on/off condition (score reached, drop size, renewal window).
* Waiver: on a day whose value was set by a human override, margin and persistence are waived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BandPath:
    """Confirmed band rank per (account, day); -1 before the first observation."""

    confirmed: np.ndarray
    previous: np.ndarray
    since: np.ndarray

    def moved_at(self, t: int) -> np.ndarray:
        """Accounts whose confirmed band changed on day ``t`` (never on the initialising day)."""
        return (self.previous[:, t] >= 0) & (self.confirmed[:, t] != self.previous[:, t])


def streaks(cond: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Consecutive observations (axis 1) where ``cond`` held, carried unchanged across absent days.

    Vectorised run length: count of true observations minus that count at the last false one.
    """
    if present.ndim < cond.ndim:
        present = np.broadcast_to(present[..., None], cond.shape)
    hit = (present & cond).astype(np.int64)
    miss = present & ~cond
    total = np.cumsum(hit, axis=1)
    at_reset = np.maximum.accumulate(np.where(miss, total, 0), axis=1)
    return total - at_reset


def debounce_bands(
    rank: np.ndarray,
    score: np.ndarray,
    edges: np.ndarray,
    waived: np.ndarray,
    *,
    margin: float,
    persistence: int,
) -> BandPath:
    """Replay the archived days and return the confirmed (hysteresis-filtered) band path.

    ``rank`` (A, T) int with -1 for no observation; ``score`` (A, T) rounded effective score (NaN allowed);
    ``edges`` (A, T, K-1) lower score edge of ranks 0..K-2; ``waived`` (A, T) bool.
    ``since[:, t]`` is the day index on which the state held at ``t`` was confirmed.
    """
    n_acc, n_days = rank.shape
    n_bands = edges.shape[2] + 1
    need = max(int(persistence), 1)
    present = rank >= 0
    r, s, w = rank[..., None], score[..., None], waived[..., None]
    k_down = np.arange(1, n_bands)  # entering rank k (or worse) crosses edge k-1
    k_up = np.arange(0, n_bands - 1)  # reaching rank k (or better) crosses edge k
    with np.errstate(invalid="ignore"):
        cond_down = present[..., None] & (r >= k_down) & (w | (s < edges - margin))
        cond_up = present[..., None] & (r <= k_up) & (w | (s >= edges + margin))
    held_down = (streaks(cond_down, present) >= need) | (w & cond_down)
    held_up = (streaks(cond_up, present) >= need) | (w & cond_up)
    # The remaining recursion is only the confirmed state itself.
    state = np.full(n_acc, -1, dtype=np.int64)
    since_now = np.full(n_acc, -1, dtype=np.int64)
    confirmed = np.full((n_acc, n_days), -1, dtype=np.int64)
    previous = np.full((n_acc, n_days), -1, dtype=np.int64)
    since = np.full((n_acc, n_days), -1, dtype=np.int64)
    for t in range(n_days):
        p = present[:, t]
        init = p & (state < 0)
        live = (p & ~init)[:, None]
        ok_down = live & held_down[:, t] & (k_down > state[:, None])
        ok_up = live & held_up[:, t] & (k_up < state[:, None])
        worst = np.where(ok_down, k_down, -1).max(axis=1)  # the furthest band that held wins
        best = np.where(ok_up, k_up, n_bands).min(axis=1)
        new = np.where(worst >= 0, worst, np.where(best < n_bands, best, state))
        new = np.where(init, rank[:, t], new)
        previous[:, t] = state
        since_now = np.where(new != state, t, since_now)
        state = new
        confirmed[:, t] = state
        since[:, t] = since_now
    return BandPath(confirmed=confirmed, previous=previous, since=since)


def debounce_level(
    on: np.ndarray,
    off: np.ndarray,
    raw: np.ndarray,
    present: np.ndarray,
    waived: np.ndarray,
    *,
    persistence: int,
) -> np.ndarray:
    """Return (A, T) bool: True where the condition switched on (off -> on) on that day.

    ``on``/``off`` are the margin-cleared conditions, ``raw`` the unmargined one used only to set the
    initial state, so an account already past a line when its history starts does not fire.
    """
    n_acc, n_days = on.shape
    need = max(int(persistence), 1)
    c_on, c_off = present & on, present & off
    go_on = (streaks(c_on, present) >= need) | (waived & c_on)
    go_off = (streaks(c_off, present) >= need) | (waived & c_off)
    state = np.zeros(n_acc, dtype=bool)
    started = np.zeros(n_acc, dtype=bool)
    rose = np.zeros((n_acc, n_days), dtype=bool)
    for t in range(n_days):
        p = present[:, t]
        live = p & started
        up = live & ~state & go_on[:, t]
        down = live & state & go_off[:, t]
        rose[:, t] = up
        state = np.where(p & ~started, raw[:, t], (state | up) & ~down)
        started |= p
    return rose
