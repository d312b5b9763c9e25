"""Customer Health inside the Airflow UI: the product's web app, mounted and protected by Airflow.

Thin on purpose: pages, queries and access rules live in ``healthscore.ui``. The app is served under
``/customer-health`` by the api-server; the external view with ``url_route`` shows it inside the Airflow UI.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from healthscore.ui.airflow_access import airflow_access
from healthscore.ui.app import create_app

URL_PREFIX = "/customer-health"

app = create_app(airflow_access())


class CustomerHealthPlugin(AirflowPlugin):
    """Registers the app and its page in the Airflow navigation."""

    name = "customer_health"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Customer Health"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {"name": "Customer Health", "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "customer-health",
         "category": "browse"},
    ]
