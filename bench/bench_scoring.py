"""Wall time of ``score_accounts`` against a bare-numpy reference doing the same arithmetic.

The reference normalizes every signal (per segment x stage baselines), takes the weighted mean of the
present signals per dimension and the renormalized weighted composite, and nothing else: no bands,
trends, overrides, reasons or output frame. The engine is timed twice: its arithmetic path alone
(input preparation + normalize + dimensions + composite, what the reference does) and the whole
``score_accounts`` call (bands, exit gates, value segments, attribution lists, the output frame).

With ``--history`` the engine also does arithmetic the plain reference leaves out: it matches 4M
archived rows to today's accounts, looks up the score 30/90/365 days back, fits the 90-day projection
and computes the attribution deltas. So a second reference does that too, in bare numpy (plus one
Arrow hash lookup for the ids, as the engine uses), and the run checks the engine's trends,
projections and top attribution dimension against it, value for value. That ratio is the like-for-like
one; the ratio against the plain reference is printed as well.

Prints figures and ratios, by wall clock and by CPU time of this process (``time.process_time``: steadier
than wall clock on a shared machine, but the reference's matrix products may use BLAS threads, whose
time, spinning included, it counts: so the CPU ratio flatters the engine and wall clock is the figure
to quote). ``--repeat N`` reports the fastest of N interleaved runs of each step; its peak RSS reads
higher than a single run's (memory the allocators keep between runs). Asserts nothing about timings
(they depend on the machine); exits with an error if the engine's history figures and the reference's
disagree on which rows have a value. Targets: ratio <= 2 and peak RSS <= 4 GiB.

    .venv/bin/python bench/bench_scoring.py                        # 1,000,000 accounts
    .venv/bin/python bench/bench_scoring.py --accounts 100000 --history
    .venv/bin/python bench/bench_scoring.py --history --repeat 3  # steadier on a busy machine
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from healthscore.config import Direction, ModelConfig, load_model_config
from healthscore.scoring import score_accounts
from healthscore.scoring.compiled import CompiledModel, compile_model
from healthscore.scoring.engine import CHUNK_ROWS, _core
from healthscore.scoring.inputs import calendar_stage, prepare_signals

AS_OF = dt.date(2025, 6, 30)
SEGMENTS = ("enterprise", "mid_market", "smb")


def make_signals(model: ModelConfig, n: int, seed: int = 7) -> pd.DataFrame:
    """n accounts of one as-of date with ~8% of signal values missing."""
    rng = np.random.default_rng(seed)
    frame: dict[str, Any] = {
        "account_id": pd.Series(np.char.add("acc-", np.arange(n).astype(str)), dtype="str"),
        "as_of_date": pd.Series(np.full(n, np.datetime64(AS_OF, "D"))),
        "segment": pd.Series(np.array(SEGMENTS)[rng.integers(0, 3, n)], dtype="str"),
        "plan": "pro",
        "tenure_days": rng.integers(0, 2000, n),
        "arr_cents": rng.integers(100_000, 200_000_000, n),
        "renewal_date": pd.Series(
            np.datetime64(AS_OF, "D") + rng.integers(1, 400, n).astype("timedelta64[D]")
        ),
        "owner_id": "owner-1",
    }
    for sig in model.all_signal_ids():
        spec = model.signal(sig)
        values = rng.uniform(spec.floor, spec.cap, n)
        values[rng.random(n) < 0.08] = np.nan
        frame[sig] = values
    return pd.DataFrame(frame)


def make_history(
    signals: pd.DataFrame, model: ModelConfig, days_back: tuple[int, ...], seed: int = 8
) -> pd.DataFrame:
    """Archived rows for every account on the given days, with flat ``dim_<d>`` columns."""
    rng = np.random.default_rng(seed)
    parts = []
    n = len(signals)
    for back in days_back:
        part = {
            "account_id": signals["account_id"],
            "as_of_date": pd.Series(np.full(n, np.datetime64(AS_OF - dt.timedelta(days=back), "D"))),
            "score": rng.uniform(0, 100, n).round(1),
            "lifecycle_stage": pd.Series(np.full(n, "maturity"), dtype="str"),
            "model_version": "v1",
        }
        for dim in model.dimensions:
            part[f"dim_{dim}"] = rng.uniform(0, 100, n).round(1)
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


def numpy_reference(
    model: ModelConfig,
) -> tuple[Callable[..., np.ndarray], Callable[[pd.DataFrame, pd.DataFrame], dict[str, np.ndarray]]]:
    """The same arithmetic written directly in numpy (tables built here from the config): the composite
    alone, and the composite with the history arithmetic."""
    signal_ids = model.all_signal_ids()
    dims = list(model.dimensions)
    stages = [s.name for s in model.lifecycle.stages]
    starts = np.array([s.start_day for s in model.lifecycle.stages])
    k = len(signal_ids)
    lo = np.empty(k)
    hi = np.empty(k)
    higher = np.array([model.signal(s).direction is Direction.HIGHER_IS_BETTER for s in signal_ids])
    base = np.empty((len(SEGMENTS), len(stages), k))
    target = np.empty_like(base)
    for j, sig in enumerate(signal_ids):
        spec = model.signal(sig)
        lo[j], hi[j] = spec.floor, spec.cap
        for a, seg in enumerate(SEGMENTS):
            for b, stage in enumerate(stages):
                norm = model.normalization_for(sig, seg, stage)
                base[a, b, j], target[a, b, j] = norm.baseline, norm.target
    sig_w = np.array(
        [[model.signal_weights_for(seg, model.dimension_of(s))[s] for s in signal_ids] for seg in SEGMENTS]
    )
    dim_of = np.array([dims.index(model.dimension_of(s)) for s in signal_ids])
    onehot = (dim_of[:, None] == np.arange(len(dims))[None, :]).astype(float)  # (K, D)
    dim_w = np.array([[model.weights_for(seg)[d] for d in dims] for seg in SEGMENTS])

    up_cols, down_cols = np.flatnonzero(higher), np.flatnonzero(~higher)
    trend_windows, window = model.momentum.trend_windows_days, model.momentum.window_days
    tolerance = model.momentum.lookup_tolerance_days

    def curve(
        x: np.ndarray, b: np.ndarray, t: np.ndarray, f: np.ndarray, c: np.ndarray, up: bool
    ) -> np.ndarray:
        """Normalization.score, vectorized: worst end 0, baseline 50, target 100, linear between."""
        x = np.clip(x, f, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            if up:
                return np.where(
                    x >= t, 100.0, np.where(x >= b, 50 + 50 * (x - b) / (t - b), 50 * (x - f) / (b - f))
                )
            return np.where(
                x <= t, 100.0, np.where(x <= b, 50 + 50 * (b - x) / (b - t), 50 * (c - x) / (c - b))
            )

    def composite(seg: np.ndarray, stage: np.ndarray, x: np.ndarray, with_contributions: bool = False) -> Any:
        y = np.empty(x.shape)
        for cols, up in ((up_cols, True), (down_cols, False)):
            b, t = base[seg, stage][:, cols], target[seg, stage][:, cols]
            y[:, cols] = curve(x[:, cols], b, t, lo[cols], hi[cols], up)
        present = ~np.isnan(y)
        w = sig_w[seg] * present
        num = (np.where(present, y, 0.0) * w) @ onehot
        den = w @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            dim_scores = num / den
        dw = dim_w[seg] * (den > 0)
        if not with_contributions:
            return (np.nan_to_num(dim_scores) * dw).sum(axis=1) / dw.sum(axis=1)
        contributions = np.nan_to_num(dim_scores) * dw / dw.sum(axis=1)[:, None]
        return contributions.sum(axis=1), contributions

    def run(frame: pd.DataFrame, block: int | None = None) -> np.ndarray:
        """Whole arrays at once, or ``block`` rows at a time (less memory traffic, same arithmetic)."""
        seg, stage, x = inputs(frame)
        if block is None:
            return composite(seg, stage, x)
        out = np.empty(len(frame))
        for i in range(0, len(frame), block):
            part = slice(i, i + block)
            out[part] = composite(seg[part], stage[part], x[part])
        return out

    def inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seg = pd.Categorical(frame["segment"], categories=SEGMENTS).codes.astype(np.intp)
        stage = np.searchsorted(starts, frame["tenure_days"].to_numpy(), side="right") - 1
        return seg, stage, frame[list(signal_ids)].to_numpy(dtype=float)

    def run_with_history(frame: pd.DataFrame, history: pd.DataFrame) -> dict[str, np.ndarray]:
        """The composite plus the arithmetic the engine does with history: trends over the configured
        windows, the 90-day projection and the attribution deltas with their top three dimensions."""
        seg, stage, x = inputs(frame)
        score_raw, contributions = np.empty(len(frame)), np.empty((len(frame), len(dims)))
        for i in range(0, len(frame), CHUNK_ROWS):  # in blocks: the faster form of the reference
            part = slice(i, i + CHUNK_ROWS)
            score_raw[part], contributions[part] = composite(seg[part], stage[part], x[part], True)
        score = np.floor(score_raw * 10.0 + 0.5) / 10.0
        n = len(frame)
        today = frame["as_of_date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        # ids matched by one Arrow hash lookup (pandas' Index.get_indexer takes ~6x longer on 4M strings)
        ids = pa.chunked_array(pa.array(frame["account_id"])).combine_chunks()
        found_at = pc.index_in(pa.array(history["account_id"]), value_set=ids)
        row = found_at.to_numpy(zero_copy_only=False)
        row = np.where(np.isnan(row), -1, row).astype(np.intp) if found_at.null_count else row.astype(np.intp)
        day = history["as_of_date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        src = np.flatnonzero((row >= 0) & (day < today[row]))
        row, day = row[src], day[src]
        origin = min(day.min(), today.min())
        span = max(day.max(), today.max()) - origin + 1
        key = row * span + (day - origin)
        order = np.argsort(key, kind="stable")
        key, src = key[order], src[order]
        newest = np.ones(key.size, dtype=bool)  # one row per (account, day)
        newest[:-1] = key[1:] != key[:-1]
        key, src = key[newest], src[newest]
        row, day = np.divmod(key, span)
        past_score = history["score"].to_numpy(dtype=float)[src]
        scored = np.flatnonzero(~np.isnan(past_score))
        t0 = today - origin
        today_key = np.arange(n) * span + t0
        out: dict[str, np.ndarray] = {"score": score}
        positions = {}
        for w in sorted({*trend_windows, window}):
            at = np.searchsorted(key[scored], today_key - w, side="right") - 1
            pos = scored[np.clip(at, 0, None)]
            found = (at >= 0) & (row[pos] == np.arange(n)) & (day[pos] >= t0 - (w + tolerance))
            trend = np.full(n, np.nan)
            trend[found] = np.round(score[found] - past_score[pos[found]], 1)
            out[f"trend_{w}d"] = trend
            positions[w] = pos, found
        # projection: least squares through the last 90 days and today, read 90 days ahead
        age = t0[row] - day
        use = (age <= 90) & ~np.isnan(past_score)
        r, y, t = row[use], past_score[use], -age[use].astype(float)
        now = ~np.isnan(score)
        cnt = np.bincount(r, minlength=n) + now
        st = np.bincount(r, weights=t, minlength=n)
        sy = np.bincount(r, weights=y, minlength=n) + np.where(now, score, 0.0)
        stt = np.bincount(r, weights=t * t, minlength=n)
        sty = np.bincount(r, weights=t * y, minlength=n)
        oldest = np.zeros(n)
        first = np.ones(r.size, dtype=bool)
        first[1:] = r[1:] != r[:-1]
        oldest[r[first]] = t[first]
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = cnt * stt - st * st
            slope = (cnt * sty - st * sy) / denom
            intercept = (sy - slope * st) / cnt
        ok = now & (cnt >= 3) & (oldest <= -28) & (denom > 0)
        out["projection_90d"] = np.where(ok, np.round(np.clip(intercept + slope * 90, 0.0, 100.0), 1), np.nan)
        # attribution: contributions now minus then, both under today's renormalized weights
        pos, found = positions[window]
        past_dims = np.full((n, len(dims)), np.nan)
        at = src[pos[found]]
        for j, d in enumerate(dims):
            past_dims[found, j] = history[f"dim_{d}"].to_numpy(dtype=float)[at]
        present = ~np.isnan(past_dims)
        pw = np.where(present, dim_w[seg], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            past_contrib = pw * np.nan_to_num(past_dims) / pw.sum(axis=1)[:, None]
        deltas = np.round(contributions - np.nan_to_num(past_contrib), 1)
        out["attribution_top"] = np.argsort(-np.abs(deltas), axis=1, kind="stable")[:, :3]
        return out

    return run, run_with_history


def print_history_figures(
    out: pd.DataFrame,
    reference: dict[str, np.ndarray],
    same: np.ndarray,
    wall: dict[str, float],
    cpu: dict[str, float],
    cm: CompiledModel,
) -> None:
    """With history the engine also does trend, projection and attribution arithmetic, which the plain
    reference leaves out: its like-for-like yardstick is the reference that does it too. The engine's
    trends, projections and top attribution dimension are checked against that reference's."""
    hist_s, full_s = wall["hist"], wall["full"]
    print(f"numpy reference + history arith.: {hist_s:6.2f}s   (composite, trends, projection, attribution)")
    print(
        f"score_accounts vs that reference: ratio {full_s / hist_s:4.2f} by wall clock, "
        f"{cpu['full'] / cpu['hist']:4.2f} by CPU time (target <= 2)"
    )
    worst = 0.0
    checked = 0
    for column in ("trend_30d", "trend_90d", "trend_365d", "projection_90d"):
        mine = out[column].to_numpy(dtype=float, na_value=np.nan)
        theirs = reference[column]
        if not np.array_equal(np.isnan(mine[same]), np.isnan(theirs[same])):
            raise SystemExit(f"{column}: engine and reference disagree on which rows have a value")
        both = same & ~np.isnan(mine)
        checked += int(both.sum())
        worst = max(worst, float(np.max(np.abs(mine[both] - theirs[both]), initial=0.0)))
    names = np.array(cm.dimension_ids, dtype=object)
    top = out["attribution"].to_numpy(dtype=object)
    first = np.array([a[0]["dimension"] if a else None for a in top[same]], dtype=object)
    listed = first != None  # noqa: E711 - elementwise over an object array
    agree_top = np.mean(first[listed] == names[reference["attribution_top"][same][listed, 0]])
    print(
        f"history figures vs reference    : max |difference| {worst:.1e} over {checked:,} values; "
        f"top attribution dimension equal in {agree_top:.2%} of rows"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--history",
        action="store_true",
        help="also pass 4 archived days per account (1, 30, 90, 365 days back)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time each step this many times (interleaved) and report the fastest, like timeit",
    )
    args = parser.parse_args()

    model = load_model_config()
    gen_s, _, signals = timed(lambda: make_signals(model, args.accounts, args.seed))
    history = make_history(signals, model, (1, 30, 90, 365)) if args.history else None
    print(f"accounts: {args.accounts:,}  signals: {len(model.all_signal_ids())}  generated in {gen_s:.2f}s")
    if history is not None:
        print(f"history rows: {len(history):,}")

    reference, reference_with_history = numpy_reference(model)
    reference(signals.head(1000))  # warm-up
    score_accounts(signals.head(1000), model, history=None, model_version="v1")
    cm = compile_model(model)

    def engine_arithmetic() -> np.ndarray:
        prep = prepare_signals(signals, cm)
        return _core(prep.raw, prep.segment_code, calendar_stage(prep, cm), prep.multiplier, cm).composite

    steps: dict[str, Callable[[], Any]] = {
        "ref": lambda: reference(signals),
        "blk": lambda: reference(signals, CHUNK_ROWS),
        "core": engine_arithmetic,
        "full": lambda: score_accounts(signals, model, history=history, model_version="v1"),
    }
    if history is not None:
        steps["hist"] = lambda: reference_with_history(signals, history)
    wall = dict.fromkeys(steps, float("inf"))
    cpu = dict.fromkeys(steps, float("inf"))
    results: dict[str, Any] = {}
    for _ in range(max(args.repeat, 1)):
        for name, step in steps.items():
            results.pop(name, None)  # free the last result before its rerun (a frame sits in
            gc.collect()  # reference cycles: collect it too)
            w, c, results[name] = timed(step)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    ref, blk, core, out = (results[name] for name in ("ref", "blk", "core", "full"))
    ref_s, blk_s, core_s, full_s = (wall[name] for name in ("ref", "blk", "core", "full"))

    raw = out["raw_score"].to_numpy(dtype=float, na_value=np.nan)
    gated = out["stage_gate_blocked"].to_numpy()
    same = ~np.isnan(raw) & ~gated
    agree = max(
        np.nanmax(np.abs(core - ref)), np.nanmax(np.abs(blk - ref)), np.max(np.abs(raw[same] - ref[same]))
    )
    print(f"numpy reference, whole arrays   : {ref_s:6.2f}s")
    print(f"numpy reference, {CHUNK_ROWS // 1024}k-row blocks : {blk_s:6.2f}s")
    print(
        f"engine arithmetic               : {core_s:6.2f}s   ratio {core_s / ref_s:4.2f} / {core_s / blk_s:4.2f}"
        "  (vs whole / blocks; target <= 2)"
    )
    print(
        f"score_accounts, full rows       : {full_s:6.2f}s   ratio {full_s / ref_s:4.2f} / {full_s / blk_s:4.2f}"
    )
    ref_c, blk_c, core_c, full_c = (cpu[name] for name in ("ref", "blk", "core", "full"))
    print(
        f"CPU seconds: reference {ref_c:.2f} / blocks {blk_c:.2f}, arithmetic {core_c:.2f} "
        f"(ratio {core_c / ref_c:4.2f} / {core_c / blk_c:4.2f}), full {full_c:.2f} "
        f"(ratio {full_c / ref_c:4.2f} / {full_c / blk_c:4.2f})"
    )
    if args.repeat > 1:
        print(f"(fastest of {args.repeat} interleaved runs per figure)")
    print(f"max |engine - reference|        : {agree:.1e}")
    if history is not None:
        print_history_figures(out, results["hist"], same, wall, cpu, cm)
    print(f"scored: {np.mean(~np.isnan(raw)):.1%}  gate-held: {gated.mean():.1%}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024**2:.2f} GiB (target <= 4 GiB)")


if __name__ == "__main__":
    main()
