"""Fault injection for the sandbox: what real vendors do to a pipeline on a bad day.

Decisions are deterministic for a fault seed: transport faults follow a per-endpoint request
counter, bad records follow a hash of (object, record id), so a retried or re-run page carries the
same bad records and tests can know exactly which records were corrupted.
"""

from __future__ import annotations

import hashlib
import random
import threading

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

BAD_RECORD_KINDS = ("null", "out_of_range", "unknown_fk")
# Company names that break careless code: SQL in a string, quotes, emoji, newlines, template and markup syntax.
HOSTILE_NAMES = (
    "x'); DROP TABLE health_scores;--",
    "O'Brien & \"Sons\" `Ltd` \\ Co",
    "Zoë 🚀 Café ☕ 株式会社",
    "Line one\nLine two\r\nLine three",
    "{{ 7 * 7 }} {% if true %}<script>alert(1)</script>{% endif %}",
    "Robert'); DELETE FROM raw_hubspot_companies; --",
)


class FaultConfig(BaseModel):
    """Per-run fault knobs; all rates are probabilities in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    error_5xx_rate: float = Field(0.0, ge=0, le=1)
    rate_429_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1, description="Requests that stall for timeout_seconds.")
    timeout_seconds: float = Field(5.0, ge=0, le=120)
    latency_ms: float = Field(0.0, ge=0, le=60_000, description="Added to every vendor request.")
    malformed_pages: int = Field(0, ge=0, description="The first N list pages answer truncated JSON.")
    mixpanel_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Events exported twice.")
    mixpanel_late_rate: float = Field(0.0, ge=0, le=1, description="Events ingested late.")
    mixpanel_late_days: int = Field(2, ge=1, le=30)
    bad_record_rate: float = Field(0.0, ge=0, le=1, description="Records corrupted (null/out of range/bad FK).")
    apply_to_writes: bool = Field(False, description="Also fail POST/PATCH with 5xx/429.")
    batch_record_error_rate: float = Field(
        0.0, ge=0, le=1, description="Inputs of a HubSpot batch update that fail on their own (a transient "
        "per-record error in a 207 Multi-Status answer) while the rest of the batch succeeds.")
    hostile_names: int = Field(0, ge=0, description="The first N companies (in id order) are named from "
                               "HOSTILE_NAMES: SQL, quotes, emoji, newlines, template syntax.")

    @property
    def any_transport_fault(self) -> bool:
        return bool(self.error_5xx_rate or self.rate_429_rate or self.timeout_rate or self.malformed_pages)


class FaultInjector:
    """Turns a FaultConfig into concrete decisions, and counts what it injected."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._malformed_left = config.malformed_pages
            self.injected: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def transport_fault(self, is_write: bool) -> str | None:
        """One of '5xx', '429', 'timeout' or None for this request."""
        cfg = self.config
        if is_write and not cfg.apply_to_writes:
            return None
        with self._lock:
            draw = self._rng.random()
            for kind, rate in (("5xx", cfg.error_5xx_rate), ("429", cfg.rate_429_rate), ("timeout", cfg.timeout_rate)):
                if draw < rate:
                    self._count(kind)
                    return kind
                draw -= rate
        return None

    def failing_inputs(self, count: int) -> list[bool]:
        """Which of ``count`` batch inputs fail with a transient per-record error (drawn per request)."""
        rate = self.config.batch_record_error_rate
        if rate <= 0 or count == 0:
            return [False] * count
        with self._lock:
            picks = [self._rng.random() < rate for _ in range(count)]
            for _ in range(sum(picks)):
                self._count("batch_record_error")
        return picks

    def take_malformed_page(self) -> bool:
        with self._lock:
            if self._malformed_left > 0:
                self._malformed_left -= 1
                self._count("malformed_page")
                return True
        return False

    def bad_record_kinds(self, obj: str, record_ids: pd.Series) -> pd.Series:
        """Corruption kind per record ('' for a clean one); stable across requests and reruns."""
        rate = self.config.bad_record_rate
        kinds = pd.Series("", index=record_ids.index, dtype=object)
        if rate <= 0 or record_ids.empty:
            return kinds
        draw = unit_hashes(record_ids, self.config.seed, f"bad:{obj}")
        pick = unit_hashes(record_ids, self.config.seed, f"kind:{obj}")
        bad = draw < rate
        choice = np.asarray(BAD_RECORD_KINDS, dtype=object)[(pick * len(BAD_RECORD_KINDS)).astype(int)]
        kinds[bad] = choice[bad]
        return kinds

    def selected(self, ids: pd.Series, salt: str, rate: float) -> np.ndarray:
        """Boolean mask of ids picked with probability ``rate`` (stable per id)."""
        if rate <= 0 or ids.empty:
            return np.zeros(len(ids), dtype=bool)
        return unit_hashes(ids, self.config.seed, salt) < rate


def unit_hashes(values: pd.Series, seed: int, salt: str) -> np.ndarray:
    """Vectorized stable hash of values into [0, 1)."""
    key = hashlib.blake2b(f"{seed}|{salt}".encode(), digest_size=8).hexdigest()
    hashed = pd.util.hash_pandas_object(values.astype(str), index=False, hash_key=key).to_numpy()
    return hashed.astype(np.float64) / 2.0**64
