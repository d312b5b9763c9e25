#!/bin/bash
# First start of the compose postgres service (/docker-entrypoint-initdb.d): the warehouse gets its own database
# and owner, apart from the Airflow metadata DB (POSTGRES_DB). Its schema is migrated by airflow-init (Alembic).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v wh_db="$WAREHOUSE_DB_NAME" -v wh_user="$WAREHOUSE_DB_USER" -v wh_password="$WAREHOUSE_DB_PASSWORD" <<'SQL'
CREATE ROLE :"wh_user" LOGIN PASSWORD :'wh_password';
CREATE DATABASE :"wh_db" OWNER :"wh_user";
SQL
