"""Well-known sandbox credentials, one per vendor API (documented in the README).

They only open the local sandbox; real vendors reject them. Pipelines never read them from here:
they come through Airflow connections like any real secret.
"""

from __future__ import annotations

HUBSPOT_TOKEN = "pat-sandbox-hubspot-healthscore"
ZENDESK_EMAIL = "revops@sandbox.healthscore.test"
ZENDESK_API_TOKEN = "zendesk-sandbox-token"
STRIPE_SECRET_KEY = "sk_test_healthscore_sandbox"
MIXPANEL_SERVICE_ACCOUNT = "healthscore-sandbox.mp-service-account"
MIXPANEL_SECRET = "mixpanel-sandbox-secret"
MIXPANEL_PROJECT_ID = "424242"
ADMIN_TOKEN = "sandbox-admin"
