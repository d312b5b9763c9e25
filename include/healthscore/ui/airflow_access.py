"""Airflow's own access checks as the Customer Health app's ``Access`` (plugin apps inherit no authentication).

- read: ``requires_access_view(AccessView.PLUGINS)``: anonymous 401; the UI's ``_token`` cookie or a bearer
  token from ``POST /auth/token`` works; every role that may see plugins may read.
- write (enter or revoke an override): ``requires_access_dag("PUT")`` on the daily DAG, the permission to change
  what that DAG produces. Under the simple auth manager the USER role and above have it and VIEWER lacks it;
  under FAB or Keycloak it is the DAG-level edit permission on ``customer_health_daily``, grantable per role.
- CSRF tokens are signed with Airflow's ``[api] secret_key`` (shared by every api-server worker), else the JWT
  secret.
"""

from __future__ import annotations

import hashlib

from fastapi import Depends

from healthscore.ui.app import Access, Viewer

DAG_ID = "customer_health_daily"


def _secret() -> bytes:
    from airflow.configuration import conf

    value = conf.get("api", "secret_key", fallback=None) or conf.get("api_auth", "jwt_secret", fallback=None)
    if not value:
        raise RuntimeError("Airflow has neither [api] secret_key nor [api_auth] jwt_secret to sign forms with")
    return hashlib.sha256(f"healthscore-ui|{value}".encode()).digest()


def airflow_access(dag_id: str = DAG_ID) -> Access:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagDetails
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag, requires_access_view

    def viewer(user: BaseUser = Depends(get_user)) -> Viewer:
        can_write = get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user)
        return Viewer(user.get_name(), bool(can_write))

    return Access(read=requires_access_view(AccessView.PLUGINS), write=requires_access_dag("PUT", param_dag_id=dag_id),
                  viewer=viewer, secret=_secret())
