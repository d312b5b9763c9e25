# The healthscore image: the official Airflow image of the pinned version, with requirements.txt and the package.
# Built by `docker compose build` (docker-compose.yaml: `build: .`).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

# requirements.txt pins every package. Installing it together with apache-airflow==<the image's version> is how the
# Airflow image documents extending it: pip can never move Airflow or its providers away from the versions the
# image was built and constrained with (tests/unit/test_compose.py checks the pins agree).
COPY --chown=airflow:0 requirements.txt /opt/healthscore/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/healthscore/requirements.txt \
    && pip check

# The product package, installed (not mounted), so every component and task imports it.
COPY --chown=airflow:0 pyproject.toml /opt/healthscore/pyproject.toml
COPY --chown=airflow:0 include /opt/healthscore/include
RUN pip install --no-cache-dir --no-deps /opt/healthscore

# DAGs, plugins, pools/connections and airflow_local_settings.py (the warm start) in their Airflow places; compose
# also mounts dags/ and plugins/ for development. The volume mount points exist so fresh volumes are airflow's.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 airflow/config /opt/airflow/config
COPY --chown=airflow:0 airflow/pools.json airflow/connections.json /opt/airflow/airflow/
COPY --chown=airflow:0 deploy/airflow-init.sh /opt/airflow/deploy/airflow-init.sh
RUN mkdir -p /opt/airflow/auth /opt/airflow/logs \
    /opt/airflow/data/reports /opt/airflow/data/data_docs /opt/airflow/data/archive /opt/airflow/data/outbox
ENV GX_ANALYTICS_ENABLED=false
