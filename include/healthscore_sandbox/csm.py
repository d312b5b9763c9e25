"""Simulated CSMs working their HubSpot tasks, and what a completed play does to the account.

Why this exists: the accuracy report measures whether playbooks work. That needs a world where some tasks are
done and some are not, and where a done play has a true effect the measurement can be checked against.

The fate of a task (the sandbox's configuration, :class:`CsmConfig`):

* Each task is keyed by its idempotency key, read from the body's ``healthscore-key: <key> <token>`` line the
  pipeline writes (a task without one is keyed by its id). Two tasks with the same key are one play: the first
  created decides, the second has the same fate and no effect of its own.
* A seeded hash of (world seed, key) decides, with no random state: ``p_completed`` of the tasks are completed,
  ``p_late`` of those after their due date (``hs_timestamp``) by 1 to ``late_max_days`` days, the others at a
  uniformly drawn moment between creation and due; the rest stay ``NOT_STARTED``. Same tasks, same fates.
* Status is served as of the request's simulated now: a task completed later still reads ``NOT_STARTED``.

The effect of a completed play (``true_effects``: latent points per playbook, the ``|``-separated key's second
field): from the first whole day after the completion day the account's latent health is raised by the play's
effect, ramping in linearly over ``ramp_days`` and then holding (clipped to [0, 100]). Starting the day after
keeps every day already served unchanged: a day's product events are generated from the latent of that day
and the three weeks before, never later. The raised latent reaches what is generated on demand per day: product
usage (Mixpanel events, 1-3 weeks lagged) and survey scores. Records the world precomputes at build time
(renewal outcomes, contracts, tickets, meetings, invoices) stay those of the world without tasks; so a play's
effect on churn is not simulated, only on health and usage. A world with no completed play is the task-free
world exactly (nothing is recomputed). A day's random draws are shared by all accounts, so a play also moves
other accounts' events of the days after it (not their latent): deterministically, as a function of the plays.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import numpy as np

DAY = 86_400
KEY_LINE = re.compile(r"healthscore-key:\s+(\S+)")
NEVER = -1

#: Latent points a completed play adds to the account's health (the sandbox's "true effect").
DEFAULT_TRUE_EFFECTS: dict[str, float] = {
    "save_plan": 8.0,
    "executive_escalation": 12.0,
    "rapid_decline": 5.0,
    "engagement_sequence": 3.0,
    "expansion_opportunity": 0.0,
}


@dataclass(frozen=True)
class CsmConfig:
    """How simulated CSMs work their tasks and what a completed play is worth (documented in the module)."""

    p_completed: float = 0.65
    p_late: float = 0.3  # share of the completed tasks that are completed after their due date
    late_max_days: int = 21
    ramp_days: int = 7
    true_effects: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TRUE_EFFECTS))

    def effect(self, playbook: str | None) -> float:
        return float(self.true_effects.get(playbook or "", 0.0))

    @classmethod
    def from_json(cls, text: str) -> CsmConfig:
        """``--csm '{"p_completed": 0.5, "true_effects": {"save_plan": 10}}'``; missing keys keep their defaults
        (``true_effects`` given replaces the whole table)."""
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown CSM simulation settings: {', '.join(unknown)}")
        config = cls(**data)
        if not (0 <= config.p_completed <= 1 and 0 <= config.p_late <= 1):
            raise ValueError("p_completed and p_late are shares within [0, 1]")
        return config


@dataclass(frozen=True)
class TaskFate:
    key: str
    playbook: str | None
    completed_ts: int  # -1: left open
    late: bool


def task_key(task: Mapping) -> str:
    """The idempotency key the pipeline wrote into the body, else the task's id."""
    body = str((task.get("properties") or {}).get("hs_task_body") or "")
    found = KEY_LINE.findall(body)
    return found[-1] if found else f"task:{task.get('id')}"


def _playbook(key: str) -> str | None:
    parts = key.split("|")
    return parts[1] if len(parts) >= 4 else None


def _uniforms(seed: int, key: str) -> tuple[float, float, float]:
    digest = hashlib.sha256(f"{seed}|csm|{key}".encode()).digest()
    a, b, c = (int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in (0, 8, 16))
    return a, b, c


def _epoch(value: str | None) -> int | None:
    if not value:
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        number = int(text)
        return number // 1000 if abs(number) > 10**11 else number
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def task_fate(seed: int, key: str, created_ts: int, due_ts: int | None, config: CsmConfig) -> TaskFate:
    """Deterministic per (seed, key): completed on time, completed late, or left open."""
    u_done, u_late, u_when = _uniforms(seed, key)
    playbook = _playbook(key)
    if u_done >= config.p_completed:
        return TaskFate(key, playbook, NEVER, False)
    due = max(int(due_ts if due_ts is not None else created_ts + 3 * DAY), created_ts + 3600)
    if u_late < config.p_late:
        when = due + DAY + int(u_when * max(config.late_max_days - 1, 0) * DAY)
        return TaskFate(key, playbook, when, True)
    return TaskFate(key, playbook, created_ts + 3600 + int(u_when * (due - created_ts - 3600)), False)


def fate_of(seed: int, task: Mapping, config: CsmConfig) -> TaskFate:
    props = task.get("properties") or {}
    created = _epoch(props.get("hs_createdate") or task.get("createdAt")) or 0
    return task_fate(seed, task_key(task), created, _epoch(props.get("hs_timestamp")), config)


def task_as_of(task: dict, fate: TaskFate, now: int) -> dict:
    """The task as HubSpot would show it at ``now``: completed (with its completion date) once it is."""
    if fate.completed_ts == NEVER or fate.completed_ts > now:
        return task
    stamp = datetime.fromtimestamp(fate.completed_ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    props = {**task["properties"], "hs_task_status": "COMPLETED", "hs_task_completion_date": stamp,
             "hs_lastmodifieddate": stamp}
    return {**task, "properties": props, "updatedAt": stamp}


@dataclass(frozen=True)
class PlayEffects:
    """Completed plays as arrays: account row, first day of effect (day index), latent points."""

    account: np.ndarray
    start_day: np.ndarray
    amount: np.ndarray
    ramp_days: int = 7

    @classmethod
    def empty(cls) -> PlayEffects:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.account)

    def upto(self, day: int) -> PlayEffects:
        keep = self.start_day <= day
        return PlayEffects(self.account[keep], self.start_day[keep], self.amount[keep], self.ramp_days)

    def signature(self, day: int) -> tuple:
        """What decides the latent up to ``day``: a cache key for that day's generated records."""
        e = self.upto(day)
        return tuple(zip(e.account.tolist(), e.start_day.tolist(), e.amount.tolist(), strict=True))

    def uplift(self, account_rows: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Latent points added at (account row i, day j) for the given unique rows and day indices."""
        out = np.zeros((len(account_rows), len(days)))
        position = {int(a): i for i, a in enumerate(account_rows.tolist())}
        for a, start, amount in zip(self.account.tolist(), self.start_day.tolist(), self.amount.tolist(),
                                    strict=True):
            i = position.get(int(a))
            if i is None:
                continue
            since = days - start + 1
            out[i] += amount * np.clip(since / max(self.ramp_days, 1), 0.0, 1.0)
        return out

    def latent_rows(self, latent: np.ndarray, day: int, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(account rows touched by a play up to ``day``, their latent at ``days`` with the plays' effect)."""
        effects = self.upto(day)
        rows = np.unique(effects.account[effects.amount != 0])
        if not len(rows):
            return rows, np.zeros((0, len(days)))
        base = latent[rows][:, days].astype(np.float64)
        return rows, np.clip(base + effects.uplift(rows, days), 0.0, 100.0)


def play_effects(tasks: Iterable[Mapping], *, seed: int, start_ts: int, company_index: Mapping[str, int],
                 config: CsmConfig) -> tuple[PlayEffects, dict[str, TaskFate]]:
    """Effects of every completed play among ``tasks`` (first task per key), and the fate of each task id."""
    by_key: dict[str, TaskFate] = {}
    fates: dict[str, TaskFate] = {}
    acc, start, amount = [], [], []
    for task in tasks:  # in creation order
        key = task_key(task)
        if key in by_key:  # a duplicate of a play already counted: its fate, no effect of its own
            fates[str(task["id"])] = by_key[key]
            continue
        fate = by_key[key] = fates[str(task["id"])] = fate_of(seed, task, config)
        effect = config.effect(fate.playbook)
        if fate.completed_ts == NEVER or effect == 0.0:
            continue
        companies = ((task.get("associations") or {}).get("companies") or {}).get("results") or []
        for company in companies:
            row = company_index.get(str(company.get("id")))
            if row is not None:
                acc.append(row)
                start.append((fate.completed_ts - start_ts) // DAY + 1)
                amount.append(effect)
    effects = PlayEffects(np.asarray(acc, np.int64), np.asarray(start, np.int64), np.asarray(amount, float),
                          config.ramp_days)
    return effects, fates
