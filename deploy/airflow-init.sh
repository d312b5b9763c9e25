#!/usr/bin/env bash
# One-shot initialisation of a healthscore deployment: the compose service airflow-init runs it, and so does
# deploy/native.py before it starts the components. Idempotent: every step is a no-op the second time.
#   1. the Airflow metadata DB migrated (airflow db migrate);
#   2. the warehouse migrated (Alembic, through the healthscore_warehouse connection);
#   3. the pools of airflow/pools.json and the connections of airflow/connections.json (with ${VARIABLES}
#      expanded from the environment) created or updated; connections set as AIRFLOW_CONN_* take precedence;
#   4. the admin password of the simple auth manager written from AIRFLOW_ADMIN_PASSWORD.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${HEALTHSCORE_PYTHON:-python}"

connections="$(mktemp --suffix .json)"
trap 'rm -f "$connections"' EXIT
"$python" - "$root/airflow/connections.json" "$connections" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(os.environ))
if missing:
    sys.exit(f"airflow-init: {sys.argv[1]} needs {', '.join(missing)} in the environment")
open(sys.argv[2], "w").write(re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], text))
PY
# The four commands in one interpreter (each `airflow ...` process would spend seconds importing Airflow):
# airflow db migrate; healthscore warehouse upgrade; airflow pools import; airflow connections import.
"$python" - "$root/airflow/pools.json" "$connections" <<'PY'
import sys
from airflow.cli.cli_parser import get_parser
from healthscore.cli import main as healthscore
parser = get_parser()
for argv in (["db", "migrate"], ["healthscore", "warehouse", "upgrade"], ["pools", "import", sys.argv[1]],
             ["connections", "import", "--overwrite", sys.argv[2]]):
    print(f"airflow-init: {' '.join(argv)}", flush=True)
    if argv[0] == "healthscore":
        healthscore(argv[1:])
    else:
        args = parser.parse_args(argv)
        args.func(args)
PY
echo "airflow-init: admin password"
"$python" - <<'PY'
import json, os, sys
path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
password = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or sys.exit("airflow-init: AIRFLOW_ADMIN_PASSWORD is not set")
users = [u.split(":")[0] for u in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",") if u]
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    json.dump({user: password for user in users}, handle)
PY
echo "airflow-init: done"
