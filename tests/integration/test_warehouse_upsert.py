"""bulk_upsert / replace_partition on real SQLite and PostgreSQL (COPY path) databases."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from healthscore.warehouse import (
    bulk_upsert,
    canonical_json,
    dumps_json,
    landing_table,
    make_engine,
    replace_partition,
    upgrade,
)
from healthscore.warehouse import rowbatch as rowbatch_module
from healthscore.warehouse import upsert as upsert_module
from healthscore.warehouse.models import HealthScore, MixpanelUsageDaily, ModelVersion, SourceCursor
from healthscore.warehouse.types import dumps_json_many, json_column_serialiser

KEYS = ["account_id", "as_of_date", "model_version"]
DAY = dt.date(2026, 3, 1)
UTC = dt.UTC


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[sa.Engine]:
    upgrade(warehouse_url)
    eng = make_engine(warehouse_url)
    with eng.begin() as conn:
        conn.execute(sa.insert(ModelVersion), [{"version": "v1", "config_hash": "h1", "config_yaml": "a: 1"}])
    yield eng
    eng.dispose()


def _score_row(account: str, score: float | None, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "account_id": account,
        "as_of_date": DAY,
        "model_version": "v1",
        "score": score,
        "unscored_reason": None if score is not None else "insufficient data",
        "band": None if score is None else ("Healthy" if score >= 75 else "At Risk"),
        "dimension_scores": {"usage": score, "engagement": None, "nested": {"list": [1, 2.5, "x"]}},
        "trend_30d": None,
        "is_shadow": False,
        "computed_at": dt.datetime(2026, 3, 2, 1, 2, 3, 456789, tzinfo=UTC),
    }
    row.update(extra)
    return row


def _scores(conn: sa.Connection) -> dict[str, sa.Row]:
    rows = conn.execute(sa.select(HealthScore.__table__).order_by(HealthScore.account_id)).all()
    return {r.account_id: r for r in rows}


def test_insert_then_update_without_duplicates(engine: sa.Engine) -> None:
    first = [_score_row("a1", 80.0), _score_row("a2", 40.0), _score_row("a3", None)]
    with engine.begin() as conn:
        assert bulk_upsert(conn, HealthScore, first, KEYS) == 3
    with engine.connect() as conn:
        before = _scores(conn)
    assert set(before) == {"a1", "a2", "a3"}

    second = [
        _score_row("a1", 60.5, trend_30d=-19.5, is_shadow=True),
        _score_row("a4", 90.0),
    ]
    with engine.begin() as conn:
        assert bulk_upsert(conn, HealthScore, second, KEYS) == 2
    with engine.connect() as conn:
        after = _scores(conn)
        assert conn.scalar(sa.select(sa.func.count()).select_from(HealthScore)) == 4
    assert after["a1"].id == before["a1"].id  # updated in place, not re-inserted
    assert (after["a1"].score, after["a1"].band, after["a1"].trend_30d, after["a1"].is_shadow) == (
        60.5,
        "At Risk",
        -19.5,
        True,
    )
    assert after["a2"] == before["a2"]  # untouched


def test_json_dates_nulls_booleans_round_trip(engine: sa.Engine) -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    row = _score_row(
        "a1",
        None,
        dimension_scores={
            "usage": 0.5,
            "text": 'tab\there "quoted" \\ back, newline\n, ünïcode',
            "none": None,
        },
        contributions=None,
        attribution={"nan_becomes_null": float("nan")},
        computed_at=dt.datetime(2026, 3, 2, 7, 0, tzinfo=tz),
        override_band=None,
        days_in_stage=12,
    )
    with engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [row], KEYS)
    with engine.connect() as conn:
        got = _scores(conn)["a1"]
        null_json = conn.scalar(
            sa.select(sa.func.count()).select_from(HealthScore).where(HealthScore.contributions.is_(None))
        )
    assert got.as_of_date == DAY and isinstance(got.as_of_date, dt.date)
    assert got.computed_at == dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert got.computed_at.utcoffset() == dt.timedelta(0)
    assert got.dimension_scores == row["dimension_scores"]
    assert got.attribution == {"nan_becomes_null": None}
    assert got.contributions is None and null_json == 1  # SQL NULL, not the JSON literal null
    assert got.score is None and got.unscored_reason == "insufficient data"
    assert got.is_shadow is False and got.days_in_stage == 12


def test_dataframe_input_with_pandas_missing_values(engine: sa.Engine) -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3"],
            "as_of_date": pd.to_datetime(["2026-03-01"] * 3),  # datetime64 into a DATE column
            "model_version": "v1",
            "score": [81.25, np.nan, 12.0],
            "unscored_reason": [None, "new account", None],
            "days_in_stage": pd.array([3, pd.NA, 7], dtype="Int64"),
            "is_shadow": np.array([False, True, False]),
            "dimension_scores": [{"usage": 1.0}, None, {"usage": np.float64(0.25), "n": np.int64(3)}],
            "computed_at": pd.to_datetime(
                ["2026-03-02 03:00", "2026-03-02 03:30", "2026-03-02 04:00"]
            ).tz_localize("Europe/Paris"),
        }
    )
    with engine.begin() as conn:
        assert bulk_upsert(conn, HealthScore, frame, KEYS) == 3
    with engine.connect() as conn:
        got = _scores(conn)
    assert got["a1"].as_of_date == DAY
    assert got["a1"].score == 81.25 and got["a2"].score is None
    assert got["a2"].days_in_stage is None and got["a3"].days_in_stage == 7
    assert [got[a].is_shadow for a in ("a1", "a2", "a3")] == [False, True, False]
    assert got["a2"].dimension_scores is None
    assert got["a3"].dimension_scores == {"usage": 0.25, "n": 3}
    assert got["a1"].computed_at == dt.datetime(2026, 3, 2, 2, 0, tzinfo=UTC)

    missing_ts = frame.iloc[[0]].assign(trend_30d=np.nan, computed_at=pd.NaT)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # NaT is NULL, not "use default"
        bulk_upsert(conn, HealthScore, missing_ts, KEYS)


def test_duplicate_keys_in_one_call_last_wins(engine: sa.Engine) -> None:
    rows = [_score_row("a1", 10.0), _score_row("a2", 20.0), _score_row("a1", 30.0)]
    with engine.begin() as conn:
        assert bulk_upsert(conn, HealthScore, rows, KEYS) == 2
        assert {r.account_id: r.score for r in _scores(conn).values()} == {"a1": 30.0, "a2": 20.0}


def test_update_columns_subset_and_insert_only(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [_score_row("a1", 50.0, band="Moderate")], KEYS)
        bulk_upsert(
            conn, HealthScore, [_score_row("a1", 99.0, band="Healthy")], KEYS, update_columns=["band"]
        )
        got = _scores(conn)["a1"]
        assert (got.score, got.band) == (50.0, "Healthy")
        assert bulk_upsert(conn, HealthScore, [_score_row("a1", 1.0), _score_row("a2", 2.0)], KEYS, []) == 1
        assert {r.account_id: r.score for r in _scores(conn).values()} == {"a1": 50.0, "a2": 2.0}


def test_failure_inside_the_transaction_keeps_previous_state(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [_score_row("a1", 80.0), _score_row("a2", 70.0)], KEYS)
    with engine.connect() as conn:
        before = _scores(conn)

    with pytest.raises(RuntimeError, match="crash after upsert"), engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [_score_row("a1", 1.0), _score_row("a9", 2.0)], KEYS)
        replace_partition(conn, landing_table("hubspot", "companies"), {"batch_date": DAY}, [])
        raise RuntimeError("crash after upsert")

    # A database error part-way (score out of range) also rolls the whole unit back.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [_score_row("a1", 5.0)], KEYS)
        bulk_upsert(conn, HealthScore, [_score_row("a2", 500.0)], KEYS)

    with engine.connect() as conn:
        assert _scores(conn) == before


def test_onupdate_timestamp_and_rejects_unknown_columns(engine: sa.Engine) -> None:
    old = dt.datetime(2020, 1, 1, tzinfo=UTC)
    day = dt.date(2026, 3, 1)
    key = {"source": "hubspot", "object": "companies", "batch_date": day}
    cursor = {**key, "cursor_value": "1", "updated_at": old}
    with engine.begin() as conn:
        bulk_upsert(conn, SourceCursor, [cursor], ["source", "object", "batch_date"])
        bulk_upsert(conn, SourceCursor, [{**key, "cursor_value": "2"}], ["source", "object", "batch_date"])
        row = conn.execute(sa.select(SourceCursor.__table__)).one()
    assert row.cursor_value == "2" and row.updated_at > old  # refreshed although not supplied

    with pytest.raises(ValueError, match="not in table"), engine.begin() as conn:
        bulk_upsert(conn, SourceCursor, [{**key, "typo": 1}], ["source", "object", "batch_date"])


def _landing_rows(batch_date: dt.date, ids: list[str], version: int = 1) -> list[dict[str, object]]:
    rows = []
    for rid in ids:
        payload = canonical_json(
            {"id": rid, "properties": {"name": f"Co {rid}", "v": version, "é": [1, None]}}
        )
        rows.append(
            {
                "record_id": rid,
                "source_updated_at": dt.datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
                "payload": payload,
                "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
            }
        )
    return rows


def _landed(conn: sa.Connection, table: sa.Table) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.batch_date, table.c.record_id))]


def test_replace_partition_is_idempotent(engine: sa.Engine) -> None:
    table = landing_table("hubspot", "companies")
    other_day = DAY - dt.timedelta(days=1)
    with engine.begin() as conn:
        assert replace_partition(conn, table, {"batch_date": other_day}, _landing_rows(other_day, ["x"])) == 1
        assert replace_partition(conn, table, {"batch_date": DAY}, _landing_rows(DAY, ["1", "2", "3"])) == 3
    with engine.connect() as conn:
        first = _landed(conn, table)

    with engine.begin() as conn:  # re-landing the same batch: byte-identical, nothing appended
        replace_partition(conn, table, {"batch_date": DAY.isoformat()}, _landing_rows(DAY, ["1", "2", "3"]))
    with engine.connect() as conn:
        assert _landed(conn, table) == first

    with engine.begin() as conn:  # a corrected batch replaces the old one entirely
        replace_partition(conn, table, {"batch_date": DAY}, _landing_rows(DAY, ["2", "4"], version=2))
    with engine.connect() as conn:
        rows = _landed(conn, table)
    assert [(r[1], r[0]) for r in rows] == [(other_day, "x"), (DAY, "2"), (DAY, "4")]
    assert all('"v":2' in r[3] for r in rows if r[1] == DAY)
    assert rows[0] == first[0]  # the other partition is untouched

    with pytest.raises(ValueError, match="outside the partition"), engine.begin() as conn:
        replace_partition(
            conn, table, {"batch_date": DAY}, [dict(_landing_rows(DAY, ["z"])[0], batch_date=other_day)]
        )


def test_replace_partition_dataframe_and_duplicate_ids(engine: sa.Engine) -> None:
    frame = pd.DataFrame(
        {
            "company_id": ["c1", "c1", "c2"],
            "event_date": [DAY, DAY, DAY],
            "active_users": [1, 5, 2],
            "event_count": np.array([10, 50, 20], dtype=np.int64),
            "feature_counts": [{"login": 1}, {"login": 5, "export": 2}, {}],
            "distinct_features": [1, 2, 0],
        }
    )
    with engine.begin() as conn:
        assert replace_partition(conn, MixpanelUsageDaily, {"batch_date": DAY}, frame) == 2
        rows = conn.execute(sa.select(MixpanelUsageDaily.__table__).order_by("company_id")).all()
    assert [(r.company_id, r.active_users, r.event_count, r.feature_counts) for r in rows] == [
        ("c1", 5, 50, {"login": 5, "export": 2}),
        ("c2", 2, 20, {}),
    ]
    assert rows[0].batch_date == DAY and rows[0].duplicates_dropped == 0  # server default applied


def test_dict_rows_with_pandas_and_numpy_scalars(engine: sa.Engine) -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["a1", "a2"],
            "as_of_date": ["2026-03-01", "2026-03-01"],  # ISO strings into a DATE column
            "model_version": ["v1", "v1"],
            "score": [np.float64(55.5), np.nan],
            "unscored_reason": [None, "churned"],  # to_dict gives NaN (str dtype) or None for the gap
            "days_in_stage": [4.0, np.nan],  # int column widened to float by the gap
            "computed_at": ["2026-03-02T10:00:00+01:00", "2026-03-02T10:00:00"],  # naive = UTC
        }
    )
    records = frame.to_dict("records")
    with engine.begin() as conn:
        assert bulk_upsert(conn, HealthScore, records, KEYS) == 2
        got = _scores(conn)
    assert (got["a1"].score, got["a1"].unscored_reason, got["a1"].days_in_stage) == (55.5, None, 4)
    assert (got["a2"].score, got["a2"].unscored_reason, got["a2"].days_in_stage) == (None, "churned", None)
    assert got["a1"].computed_at == dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert got["a2"].computed_at == dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    with pytest.raises(ValueError, match="non-integral"), engine.begin() as conn:
        bulk_upsert(conn, HealthScore, [_score_row("a3", 1.0, days_in_stage=2.5)], KEYS)


def test_types_without_binary_copy_fall_back_to_text_copy(engine: sa.Engine) -> None:
    """numeric / jsonb columns (not used by the models today) still load, through text COPY."""
    metadata = sa.MetaData()
    table = sa.Table(
        "scratch_ledger",
        metadata,
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column(
            "tags", sa.JSON(none_as_null=True).with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
        ),
        sa.Column("booked_on", sa.Date),
    )
    metadata.create_all(engine)
    rows = [
        {"entry_id": "e1", "amount": Decimal("1234.50"), "tags": {"k": ["v", 1]}, "booked_on": DAY},
        {"entry_id": "e2", "amount": None, "tags": None, "booked_on": None},
    ]
    with engine.begin() as conn:
        assert bulk_upsert(conn, table, rows, ["entry_id"]) == 2
        assert (
            replace_partition(conn, table, {"booked_on": DAY}, [dict(rows[0], amount=Decimal("1.10"))]) == 1
        )
        got = {r.entry_id: r for r in conn.execute(sa.select(table))}
    assert got["e1"].amount == Decimal("1.10") and got["e1"].tags == {"k": ["v", 1]}
    assert got["e2"].amount is None and got["e2"].tags is None


# ------------------------------------------------------------------ bulk JSON serialisation, big batches

# Floats that msgspec and repr spell differently (exponents, 1e-5 <= x < 1e-4) or that are easy to get
# wrong (shortest round-trip, signed zero, subnormals, NaN/inf -> null).
TRICKY_FLOATS = [0.1, 1 / 3, -2 / 3, 1e-7, 1e-5, 0.00009999, 1.5e-4, 0.0001, 1e15, 1e16, 1.2345678901234568e16,
                 9999999999999998.0, 2.0**53, 2.0**60, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                 -1e-300, 0.0, -0.0, 100.0, float("nan"), float("inf"), float("-inf")]  # fmt: skip
SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY_FLOATS),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
)
KEYS_ = st.one_of(
    st.sampled_from(["usage", "e1", "0.0000", "é", "naïve", "x y", "null", "", "a:b", "c,d"]), st.text()
)
JSON_VALUES = st.one_of(
    st.none(),
    st.dictionaries(KEYS_, SCALARS, max_size=6),  # the bulk path's shape (when keys are plain)
    st.dictionaries(
        st.text(max_size=3), st.recursive(SCALARS | st.text(), lambda c: st.lists(c, max_size=3))
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=30), st.randoms(use_true_random=False))
def test_bulk_json_is_dumps_json_byte_for_byte(values: list[object], rnd) -> None:
    expected = [None if v is None else dumps_json(v) for v in values]
    assert dumps_json_many(values) == expected
    serialise = json_column_serialiser(values)
    if serialise is not None:  # and then any subset serialises the same
        subset = [v for v in values if rnd.random() < 0.5]
        assert serialise(subset) == [None if v is None else dumps_json(v) for v in subset]


def test_bulk_json_tricky_values() -> None:
    flat = [{"usage": f, "e1": -f, "0.0000": f / 3} for f in TRICKY_FLOATS] + [
        {},
        None,
        {"b": True, "n": None},
    ]
    assert dumps_json_many(flat) == [None if v is None else dumps_json(v) for v in flat]
    assert dumps_json_many(flat)[:2] == [
        '{"usage": 0.1, "e1": -0.1, "0.0000": 0.03333333333333333}',
        '{"usage": 0.3333333333333333, "e1": -0.3333333333333333, "0.0000": 0.1111111111111111}',
    ]
    assert dumps_json_many([{"a": 1e16, "b": 1e-05, "c": float("nan")}]) == [
        '{"a": 1e+16, "b": 1e-05, "c": null}'
    ]
    odd = [{"a": {"nested": 1e-7}}, {"é": [1, 2.5, "x"]}, {1: 2}, {"t": dt.date(2026, 1, 1)}, {"d": Decimal("1.50")},
           {"s": {3, 1}}, {"np": np.float64(0.3)}, {"big": 2**70}, {"k:v": 1.0}, {'q"': 1.0}]  # fmt: skip
    assert dumps_json_many(odd) == [dumps_json(v) for v in odd]
    assert json_column_serialiser(odd) is None and json_column_serialiser([{"big": 2**70}]) is None
    with pytest.raises(ValueError, match="digits"):  # what dumps_json raises, not a msgspec error
        dumps_json_many([{"huge": 10**5000}])


def _big_batch(n: int, score: float) -> list[dict[str, object]]:
    rows = []
    for i in range(n):
        f = TRICKY_FLOATS[i % len(TRICKY_FLOATS)]
        rows.append(
            _score_row(
                f"acc-{i % (n - 5):03d}",  # the last 5 rows repeat earlier keys: last one wins
                score,
                dimension_scores={"usage": f, "engagement": i / 7, "value": None} if i % 6 else None,
                contributions={"usage": -f, "n": i * 0.1},
                attribution={"top": ["usage", f], "rank": i},  # not the bulk path's shape
                trend_30d=float(i),
            )
        )
    return rows


def _table_text(conn: sa.Connection) -> list[tuple[object, ...]]:
    """Every stored value as the database prints it (JSON as its exact text), ordered by id."""
    table = HealthScore.__table__
    return [
        tuple(r)
        for r in conn.execute(sa.select(*(sa.cast(c, sa.Text) for c in table.c)).order_by(table.c.id))
    ]


def test_big_batches_merge_in_chunks_with_the_same_result(engine: sa.Engine, monkeypatch) -> None:
    """Chunked staging (pipelined merges, deferred JSON and DataFrame conversions, writer thread) stores
    exactly what one statement does: same ids, values and JSON text, and the same returned counts."""
    first, second = _big_batch(60, 10.0), _big_batch(70, 20.0)  # the second updates 55 rows, adds 10
    third = pd.DataFrame(_big_batch(80, 30.0))  # updates 65, adds 10; str, float, datetime64 dtypes
    third.loc[[11, 12, 76], ["score", "unscored_reason"]] = [np.nan, "new account"]  # 76 overrides 1
    third.loc[10, "computed_at"] = pd.NaT

    def load() -> tuple[list[int], list[tuple[object, ...]]]:
        with engine.begin() as conn:
            conn.execute(sa.delete(HealthScore))
            counts = [bulk_upsert(conn, HealthScore, rows, KEYS) for rows in (first, second)]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # NULL computed_at
            bulk_upsert(conn, HealthScore, third, KEYS)
        with engine.begin() as conn:
            counts.append(bulk_upsert(conn, HealthScore, third.drop(index=10), KEYS))
            stored = _table_text(conn)
        return counts, [row[1:] for row in stored]  # ids: compared relative to the first one below

    def ids() -> list[int]:
        with engine.connect() as conn:
            return list(conn.scalars(sa.select(HealthScore.id).order_by(HealthScore.id)))

    counts, whole = load()
    whole_ids = ids()
    monkeypatch.setattr(upsert_module, "COPY_PIPELINE_ROWS", 7)
    monkeypatch.setattr(rowbatch_module, "COPY_SERIALISE_ROWS", 4)
    monkeypatch.setattr(upsert_module, "COPY_QUEUED_MIN_ROWS", 1)
    assert load() == (counts, whole) and counts == [55, 65, 74]
    assert str(third["computed_at"].dtype) == "datetime64[us, UTC]"
    chunked_ids = ids()
    assert [i - chunked_ids[0] for i in chunked_ids] == [i - whole_ids[0] for i in whole_ids]
    stored = {row[0]: row for row in whole}  # account_id -> row
    last = third.drop_duplicates("account_id", keep="last").set_index("account_id")
    assert [stored[f"acc-{i:03d}"][3] for i in (1, 11, 12)] == [None, None, None]
    assert float(stored["acc-013"][3]) == 30.0
    assert stored["acc-007"][8] == dumps_json(last.loc["acc-007", "dimension_scores"])  # dumps_json's text


def test_a_bad_value_anywhere_in_a_big_batch_writes_nothing(engine: sa.Engine, monkeypatch) -> None:
    monkeypatch.setattr(upsert_module, "COPY_PIPELINE_ROWS", 7)
    rows = _big_batch(60, 10.0)
    rows[-1]["days_in_stage"] = 2.5
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="non-integral"):
            bulk_upsert(conn, HealthScore, rows, KEYS)
        # Checked before anything was written: the transaction is still usable and empty-handed.
        assert conn.scalar(sa.select(sa.func.count()).select_from(HealthScore)) == 0
