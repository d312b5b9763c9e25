"""Sandbox serving throughput: records/s through full pagination of every list API, one server core.

Target (issue 2): >= 5,000 records/s. Prints figures; asserts nothing.
    python bench/bench_sandbox_serving.py [--accounts 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import requests

from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = datetime(2026, 9, 30, 12, tzinfo=UTC)
TARGET = 5_000


def drain_hubspot(http: requests.Session, base: str, obj: str) -> int:
    n, params = 0, {"limit": 100, "properties": "name,arr,licensed_seats,hubspot_owner_id"}
    while True:
        body = http.get(f"{base}/crm/v3/objects/{obj}", params=params,
                        headers={"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}).json()
        n += len(body["results"])
        if "paging" not in body:
            return n
        params["after"] = body["paging"]["next"]["after"]


def drain_stripe(http: requests.Session, base: str, obj: str) -> int:
    n, params = 0, {"limit": 100}
    while True:
        body = http.get(f"{base}/v1/{obj}", params=params,
                        headers={"Authorization": f"Bearer {cred.STRIPE_SECRET_KEY}"}).json()
        n += len(body["data"])
        if not body["has_more"]:
            return n
        params["starting_after"] = body["data"][-1]["id"]


def drain_zendesk(http: requests.Session, base: str, _obj: str) -> int:
    n, url, params = 0, f"{base}/api/v2/incremental/tickets/cursor.json", {"start_time": 0, "include": "metric_sets"}
    auth = (f"{cred.ZENDESK_EMAIL}/token", cred.ZENDESK_API_TOKEN)
    while True:
        body = http.get(url, params=params, auth=auth).json()
        n += len(body["tickets"])
        if body["end_of_stream"]:
            return n
        url, params = body["after_url"], None


def drain_mixpanel(http: requests.Session, base: str, _obj: str) -> int:
    resp = http.get(f"{base}/api/2.0/export", auth=(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET),
                    params={"from_date": "2026-09-29", "to_date": "2026-09-29", "project_id": cred.MIXPANEL_PROJECT_ID})
    return sum(1 for line in resp.iter_lines() if line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20_000)
    args = parser.parse_args()
    started = time.perf_counter()
    state = build_state(SandboxOptions(seed=42, accounts=args.accounts, now=int(NOW.timestamp()),
                                       rate_limit_scale=1e6))
    print(f"portfolio: {args.accounts} accounts built in {time.perf_counter() - started:.1f} s")
    cases = [("hubspot companies", drain_hubspot, "companies"), ("hubspot contacts", drain_hubspot, "contacts"),
             ("zendesk tickets", drain_zendesk, "tickets"), ("stripe invoices", drain_stripe, "invoices"),
             ("stripe subscriptions", drain_stripe, "subscriptions"), ("mixpanel export (1 day)", drain_mixpanel, "")]
    with ThreadedSandbox(state) as server, requests.Session() as http:
        total_n, total_s = 0, 0.0
        for label, drain, obj in cases:
            drain(http, server.url, obj)  # first pass builds and caches the as-of view
            t0 = time.perf_counter()
            n = drain(http, server.url, obj)
            elapsed = time.perf_counter() - t0
            total_n, total_s = total_n + n, total_s + elapsed
            print(f"{label:26s} {n:>9,d} records {elapsed:7.2f} s {n / elapsed:>10,.0f} rec/s"
                  f"  ratio to target {n / elapsed / TARGET:5.2f}")
        print(f"{'all paginated APIs':26s} {total_n:>9,d} records {total_s:7.2f} s {total_n / total_s:>10,.0f} rec/s"
              f"  ratio to target {total_n / total_s / TARGET:5.2f}")
    print("note: client and server share this process and its GIL, so the server has at most one core")


if __name__ == "__main__":
    main()
