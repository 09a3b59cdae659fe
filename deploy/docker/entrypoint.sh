#!/bin/sh
# The image's entrypoint: the first argument names the process, the rest go to it.
#   api      platform API on :8080 (loralab api; LORALAB_API__WORKERS processes, default 1)
#   worker   Celery worker (loralab worker; --queues cpu|cuda, metrics on :9101)
#   serve    prediction service on :8000 (loralab serve)
#   ui       Streamlit web UI on :8501 (LORALAB_UI_API_URL: the API it talks to)
#   migrate  bring the platform database to the newest Alembic revision, then exit
#   mlflow   the MLflow CLI (mlflow server ...)
# Anything else runs as given (loralab users create ..., sh, python ...).
set -eu
process=${1:-api}
[ $# -gt 0 ] && shift
case "$process" in
  api)
    exec loralab api --host "${LORALAB_API__HOST:-0.0.0.0}" --port "${LORALAB_API__PORT:-8080}" "$@" ;;
  worker)
    exec loralab worker "$@" ;;
  serve)
    exec loralab serve "$@" ;;
  ui)
    app=$(python -c 'import importlib.util as u; print(u.find_spec("loralab.entrypoints.ui.app").origin)')
    exec streamlit run "$app" --server.address 0.0.0.0 --server.port "${LORALAB_UI_PORT:-8501}" \
      --server.headless true --browser.gatherUsageStats false \
      -- --api-url "${LORALAB_UI_API_URL:-http://127.0.0.1:8080}" "$@" ;;
  migrate)
    exec python -c 'from loralab.infra.migrate import upgrade_database; from loralab.settings import load_settings; upgrade_database(load_settings().db_url); print("database at the newest migration")' ;;
  mlflow)
    exec mlflow "$@" ;;
  *)
    exec "$process" "$@" ;;
esac
