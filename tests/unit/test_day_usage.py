"""DayUsage: one day's Mixpanel events folded per company, exactly, whatever the chunking."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import pytest

import healthscore.pipeline.extract as extract
from healthscore.batch import Batch
from healthscore.pipeline.extract import DayUsage

DAY = date(2026, 9, 29)
BATCH = Batch(DAY, datetime(2026, 9, 30, tzinfo=UTC), "run-1")
BASE_TS = int(datetime(2026, 9, 29, tzinfo=UTC).timestamp())


def event(insert_id: str, name: str, company: str, user: str, second: int, **props: float) -> dict:
    return {"event": name, "properties": {"$insert_id": insert_id, "time": BASE_TS + second, "distinct_id": user,
                                          "company_id": company, **props}}


def fold(events: list[dict], chunk: int, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setattr(extract, "EVENT_CHUNK", chunk)
    usage = DayUsage(DAY)
    for e in events:
        usage.add(e)
    usage.flush()
    return usage.rows(BATCH)


def expected_rows(events: list[dict]) -> list[dict]:
    """The same aggregates the slow, obvious way."""
    seen, unique = set(), []
    for e in events:
        if e["properties"]["$insert_id"] not in seen:
            seen.add(e["properties"]["$insert_id"])
            unique.append(e)
    by_company: dict[str, list[dict]] = defaultdict(list)
    for e in unique:
        by_company[e["properties"]["company_id"]].append(e)
    rows = []
    for company in sorted(by_company):
        group = by_company[company]
        names = Counter(e["event"] for e in group)
        nps = sorted((e["properties"]["time"], e["properties"]["nps_score"]) for e in group
                     if "nps_score" in e["properties"])
        csat = [e["properties"]["csat_score"] for e in group if "csat_score" in e["properties"]]
        rows.append({
            "company_id": company, "event_date": DAY, "batch_date": DAY,
            "active_users": len({e["properties"]["distinct_id"] for e in group if e["event"] != "Page Viewed"}),
            "event_count": len(group), "logins": names["Login"], "feature_counts": dict(sorted(names.items())),
            "distinct_features": len(names), "insert_ids_seen": len(group), "duplicates_dropped": 0,
            "nps_responses": len(nps), "nps_sum": float(sum(s for _, s in nps)),
            "nps_latest": nps[-1][1] if nps else None, "csat_responses": len(csat), "csat_sum": float(sum(csat)),
        })
    rows[0]["duplicates_dropped"] = len(events) - len(unique)
    return rows


def test_hand_made_day(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        event("a", "Login", "c2", "u1", 10),
        event("b", "Page Viewed", "c2", "u9", 11),  # a page view alone does not make u9 active
        event("c", "Report Exported", "c2", "u2", 12),
        event("a", "Login", "c2", "u1", 10),  # duplicate $insert_id
        event("d", "NPS Survey Answered", "c1", "u3", 50, nps_score=9.0),
        event("e", "NPS Survey Answered", "c1", "u4", 20, nps_score=3.0),  # earlier answer, arrives later
        event("f", "CSAT Survey Answered", "c1", "u3", 30, csat_score=4.0),
    ]
    rows = fold(events, chunk=2, monkeypatch=monkeypatch)
    assert [r["company_id"] for r in rows] == ["c1", "c2"]
    c1, c2 = rows
    assert (c1["nps_responses"], c1["nps_sum"], c1["nps_latest"]) == (2, 12.0, 9.0)
    assert (c1["csat_responses"], c1["csat_sum"]) == (1, 4.0)
    assert c2["active_users"] == 2 and c2["event_count"] == 3 and c2["logins"] == 1
    assert c2["feature_counts"] == {"Login": 1, "Page Viewed": 1, "Report Exported": 1}
    assert c1["duplicates_dropped"] == 1 and c2["duplicates_dropped"] == 0
    assert rows == expected_rows(events)


@pytest.mark.parametrize("chunk", [1, 7, 100, 10_000])
def test_chunking_never_changes_the_rows(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(chunk)
    names = ["Login", "Page Viewed", "Dashboard Viewed", "Report Exported", "NPS Survey Answered"]
    events = []
    for i in range(600):
        name = rng.choice(names)
        props = {"nps_score": float(rng.randint(0, 10))} if name == "NPS Survey Answered" else {}
        if rng.random() < 0.05:
            props["csat_score"] = float(rng.randint(1, 5))
        events.append(event(f"id{i}", name, f"c{rng.randint(1, 12)}", f"u{rng.randint(1, 30)}",
                            rng.randint(0, 86_399), **props))
    events += rng.sample(events, 40)  # re-delivered events
    assert fold(events, chunk, monkeypatch) == expected_rows(events)
