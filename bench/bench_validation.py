"""Quality-gate cost per 100k rows, per suite: flatten (vendor JSON -> typed frame) and GX validation.

Why: the daily run validates every landed object and streams Mixpanel events through the gate in 100k-row
chunks, so validation time per 100k rows is what sizes the task. Prints figures, asserts nothing.

Records come from the sandbox through the real extractors (1% bad records), then are tiled to --rows with
unique ids (references to companies, customers and tickets are kept, so the referential checks see a
realistic mix). Timings are warm (the GX context and Data Docs site exist); the cold start is printed once.

    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/bench_validation.py
    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/bench_validation.py --rows 300000 --objects mixpanel.events
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from healthscore.sources import SourceConnection, client_class, registry
from healthscore.sources.schemas import flatten
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.faults import FaultConfig
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = int(datetime(2026, 9, 30, 12, tzinfo=UTC).timestamp())
OBJECTS = [f"{s.name}.{o.name}" for s in registry.sources() for o in s.extracted_objects]
LOGINS = {"hubspot": (None, cred.HUBSPOT_TOKEN), "zendesk": (cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
          "stripe": (None, cred.STRIPE_SECRET_KEY), "mixpanel": (cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET)}


def fetch(url: str, objects: list[str]) -> dict[str, list[dict]]:
    as_of = datetime.fromtimestamp(NOW, UTC)
    out = {}
    for name in objects:
        source, obj = name.split(".")
        login, password = LOGINS[source]
        conn = SourceConnection(source, url, login, password, {"sandbox": True, "project_id": cred.MIXPANEL_PROJECT_ID})
        with client_class(source)(conn, as_of=as_of) as src:
            out[name] = list(src.day_events(date(2026, 9, 29))) if source == "mixpanel" else list(src.records(obj))
    return out


def tile(name: str, records: list[dict], rows: int) -> list[dict]:
    """``rows`` records cycling through ``records``, each copy with a unique id."""
    out = []
    for i in range(rows):
        base = records[i % len(records)]
        copy_no = i // len(records)
        if name == "mixpanel.events":
            props = dict(base["properties"], **{"$insert_id": f"{base['properties']['$insert_id']}-{copy_no}"})
            out.append({"event": base["event"], "properties": props})
        elif isinstance(base["id"], int):
            out.append({**base, "id": base["id"] + copy_no * 10_000_000})
        else:
            out.append({**base, "id": f"{base['id']}-{copy_no}" if copy_no else base["id"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--objects", default=",".join(OBJECTS))
    parser.add_argument("--chunk", type=int, default=100_000, help="chunk size for the streamed events run")
    args = parser.parse_args()
    objects = args.objects.split(",")

    from healthscore.quality.gate import ValidationContext, validate, validate_chunks

    state = build_state(SandboxOptions(seed=11, accounts=args.accounts, now=NOW, rate_limit_scale=1000,
                                       faults=FaultConfig(bad_record_rate=0.01)))
    with ThreadedSandbox(state) as server:
        needed = sorted(set(objects) | {"hubspot.companies", "hubspot.owners", "stripe.customers", "zendesk.tickets"})
        records = fetch(server.url, needed)
    small = {name: flatten(*name.split("."), recs) for name, recs in records.items()}
    accounts = state.world.accounts
    docs = Path(tempfile.mkdtemp(prefix="bench_validation_")) / "data_docs"
    ctx = ValidationContext(
        run_id="bench", batch_date=date(2026, 9, 30), data_interval_end=datetime.fromtimestamp(NOW, UTC),
        data_docs_dir=docs, known_company_ids=set(small["hubspot.companies"]["record_id"]),
        known_owner_ids=set(small["hubspot.owners"]["record_id"]),
        known_organization_ids=set(accounts["zendesk_organization_id"].astype("int64")),
        known_customer_ids=set(small["stripe.customers"]["record_id"]),
        known_ticket_ids=set(small["zendesk.tickets"]["ticket_id"].dropna().astype(int)),
        volume_history={name: [args.rows] * 7 for name in objects})

    started = time.perf_counter()
    validate("hubspot", "owners", small["hubspot.owners"], ctx)
    print(f"cold start (import GX, context, suites, first docs build): {time.perf_counter() - started:.2f} s")
    print(f"{'suite':32} {'rows':>8} {'flatten s':>10} {'validate s':>11} {'s/100k':>8} {'quarantined':>12}")
    for name in objects:
        source, obj = name.split(".")
        raw = tile(name, records[name], args.rows)
        started = time.perf_counter()
        frame = flatten(source, obj, raw)
        flat_s = time.perf_counter() - started
        started = time.perf_counter()
        outcome = validate(source, obj, frame, ctx)
        val_s = time.perf_counter() - started
        per = (flat_s + val_s) * 100_000 / len(frame)
        print(f"{name:32} {len(frame):>8} {flat_s:>10.2f} {val_s:>11.2f} {per:>8.2f} "
              f"{outcome.reconciliation['quarantined']:>12}")
        if name == "mixpanel.events" and args.chunk < len(frame):
            started = time.perf_counter()
            chunks = (frame.iloc[i:i + args.chunk] for i in range(0, len(frame), args.chunk))
            merged = validate_chunks(source, obj, chunks, ctx)
            took = time.perf_counter() - started
            print(f"{'  ...in ' + str(args.chunk) + '-row chunks':32} {len(frame):>8} {'':>10} {took:>11.2f} "
                  f"{took * 100_000 / len(frame):>8.2f} {merged.reconciliation['quarantined']:>12}")
        del raw, frame
    print(f"Data Docs: {docs / 'index.html'}")


if __name__ == "__main__":
    main()
