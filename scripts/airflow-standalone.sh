#!/usr/bin/env bash
# Local Airflow for the nightly DAG: `airflow standalone` (scheduler, dag-processor, triggerer,
# API server + UI) with everything kept inside the project in .airflow/ (git-ignored):
# SQLite metadata DB, LocalExecutor with small parallelism, no example DAGs, dags folder = dags/.
#
#   make airflow                      # UI and REST API on http://localhost:8080
#   AIRFLOW_PORT=8090 make airflow    # another port (the execution API URL follows it; not 8793:
#                                   # that is the worker log server's)
#
# Log in as `admin`; the generated password is in .airflow/simple_auth_manager_passwords.json.generated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PORT="${AIRFLOW_PORT:-8080}"

# standalone starts its components as `airflow <command>`: the project's venv must come first.
export PATH="$VENV/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW_PARALLELISM:-2}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
# Task processes report to the execution API; its URL does not follow [api] port by itself.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"

# The DAG resolves relative data/runs paths against the project; models load offline.
export RECSYS_HOME="$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

mkdir -p "$AIRFLOW_HOME"
echo "AIRFLOW_HOME=$AIRFLOW_HOME  dags=$AIRFLOW__CORE__DAGS_FOLDER  UI/API: http://localhost:$PORT"
echo "admin password file: $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
exec airflow standalone
