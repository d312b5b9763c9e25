"""Data quality gate: GX expectation suites per source, quarantine, blocking policy, Data Docs, alerts.

``policy`` (dimensions per source, thresholds), ``suites`` (the declarative checks), ``gate`` (validate,
merge, ValidationContext/Outcome), ``docs`` (the cached GX context writing Data Docs) and ``notify`` (the
Airflow notifier). Nothing here imports pandas or Great Expectations at import time.
"""
