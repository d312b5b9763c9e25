"""Which failed requests HttpClient sends again, against the sandbox's injected faults.

A create that timed out may have happened: the sandbox's "timeout" fault stalls the request and then
serves it, as a slow vendor does. Sending it again would create a duplicate, so only idempotent
requests (GET, a search or batch read declared idempotent, a PATCH of absolute values) and requests
carrying the vendor's idempotency key are retried after a 5xx or a timeout. A 429 is retried always:
the vendor refused the request before acting on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from healthscore.sources import HubSpotSource, StripeSource
from healthscore.sources.base import HttpClient, RetryableError, RetryPolicy, SourceConnection
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.airflow_harness import crm_tasks

NOW = datetime(2026, 9, 30, 12, tzinfo=UTC)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
POLICY = RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05, timeout=0.3)
TASKS = "/crm/v3/objects/tasks"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=9, accounts=20, rate_limit_scale=1000))) as server:
        yield server


def set_faults(base: str, **faults: object) -> None:
    requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json=faults, timeout=5).raise_for_status()


@pytest.fixture
def hubspot(sandbox: ThreadedSandbox) -> Iterator[HubSpotSource]:
    conn = SourceConnection("crm_hubspot", sandbox.url, password=cred.HUBSPOT_TOKEN, extra={"sandbox": True})
    with HubSpotSource(conn, as_of=NOW, policy=POLICY) as source:
        yield source
    set_faults(sandbox.url)


def task(subject: str) -> dict:
    return {"properties": {"hs_timestamp": "2026-10-01T00:00:00.000Z", "hs_task_subject": subject,
                           "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO"}}


def tasks_named(base: str, subject: str) -> int:
    return sum(t["properties"].get("hs_task_subject") == subject for t in crm_tasks(base))


def test_a_timed_out_create_is_sent_once_and_so_created_once(sandbox: ThreadedSandbox,
                                                             hubspot: HubSpotSource) -> None:
    set_faults(sandbox.url, timeout_rate=1.0, timeout_seconds=0.6, apply_to_writes=True, seed=1)
    with pytest.raises(RetryableError):  # the answer never came in time
        hubspot.client.post_json(TASKS, task("timed out once"))
    assert hubspot.client.stats.requests == 1 and hubspot.client.stats.retries == 0
    set_faults(sandbox.url)
    time.sleep(0.8)  # the stalled request is served after the client gave up, as a slow vendor's is
    assert tasks_named(sandbox.url, "timed out once") == 1


def test_a_create_that_got_a_5xx_is_not_resent(sandbox: ThreadedSandbox, hubspot: HubSpotSource) -> None:
    set_faults(sandbox.url, error_5xx_rate=1.0, apply_to_writes=True, seed=2)
    with pytest.raises(RetryableError, match="-> 5"):
        hubspot.client.post_json(TASKS, task("5xx once"))
    assert hubspot.client.stats.requests == 1


def test_a_rate_limited_create_is_retried(sandbox: ThreadedSandbox, hubspot: HubSpotSource) -> None:
    set_faults(sandbox.url, rate_429_rate=1.0, apply_to_writes=True, seed=3)
    with pytest.raises(RetryableError, match="-> 429"):
        hubspot.client.post_json(TASKS, task("429 always"))
    assert hubspot.client.stats.requests == POLICY.attempts  # refused before acting: safe to resend
    set_faults(sandbox.url, rate_429_rate=0.3, apply_to_writes=True, seed=7)
    created = hubspot.client.post_json(TASKS, task("429 then created"))
    set_faults(sandbox.url)
    assert created["id"] and tasks_named(sandbox.url, "429 then created") == 1


def test_reads_sent_as_post_and_gets_are_retried(sandbox: ThreadedSandbox, hubspot: HubSpotSource) -> None:
    set_faults(sandbox.url, error_5xx_rate=0.5, apply_to_writes=True, seed=5)
    search = {"filterGroups": [], "limit": 1}
    for _ in range(6):
        hubspot.client.post_json(f"{TASKS}/search", search, idempotent=True)
        hubspot.client.get_json("/crm/v3/owners", params={"limit": 1})
    assert hubspot.client.stats.retries > 0  # half of them failed once or more and were sent again


def test_a_post_carrying_the_vendors_idempotency_key_is_retried(sandbox: ThreadedSandbox) -> None:
    stripe = StripeSource(SourceConnection("billing_stripe", sandbox.url, password=cred.STRIPE_SECRET_KEY,
                                           extra={"sandbox": True}), as_of=NOW, policy=POLICY)
    assert stripe.client.safe_to_resend("POST", {"Idempotency-Key": "k1"})
    assert not stripe.client.safe_to_resend("POST") and stripe.client.safe_to_resend("GET")
    stripe.close()
    # HubSpot honours no idempotency key, so a key on its create changes nothing ...
    conn = SourceConnection("crm_hubspot", sandbox.url, password=cred.HUBSPOT_TOKEN, extra={"sandbox": True})
    with HubSpotSource(conn, as_of=NOW, policy=POLICY) as hubspot:
        assert not hubspot.client.safe_to_resend("POST", {"Idempotency-Key": "k1"})
    # ... while a client for a vendor that honours one resends a keyed write after a 5xx.
    keyed = HttpClient(conn, headers={"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}, policy=POLICY,
                       idempotency_header="Idempotency-Key")
    set_faults(sandbox.url, error_5xx_rate=1.0, apply_to_writes=True, seed=6)
    try:
        with pytest.raises(RetryableError):
            keyed.post_json(TASKS, task("keyed"), headers={"Idempotency-Key": "task-keyed-1"})
        assert keyed.stats.requests == POLICY.attempts
    finally:
        set_faults(sandbox.url)
        keyed.close()
