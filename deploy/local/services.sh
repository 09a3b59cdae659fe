#!/usr/bin/env bash
# Start or stop the local platform: Redis (only if none answers), the MLflow server, a Celery
# worker, the platform API. `stop` stops only what `start` started (pid files in $RUN).
#   deploy/local/services.sh start|stop|status
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
RUN=results/services
REDIS_PORT=${REDIS_PORT:-6379}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
API_PORT=${API_PORT:-8080}
UI_PORT=${UI_PORT:-8501}
mkdir -p "$RUN"

export LORALAB_MLFLOW__TRACKING_URI=${LORALAB_MLFLOW__TRACKING_URI:-http://127.0.0.1:$MLFLOW_PORT}
# Redis listens on loopback only and wants a password, made once like the secret key below
[ -s "$RUN/redis_password" ] || (umask 077; $BIN/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$RUN/redis_password")
REDIS_PASSWORD=$(cat "$RUN/redis_password")
export LORALAB_QUEUE__BROKER_URL=${LORALAB_QUEUE__BROKER_URL:-redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0}
# GET /metrics of the API wants this bearer token (deploy/monitoring/prometheus reads the file)
[ -s "$RUN/metrics_token" ] || (umask 077; $BIN/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$RUN/metrics_token")
export LORALAB_OBSERVABILITY__METRICS_TOKEN=${LORALAB_OBSERVABILITY__METRICS_TOKEN:-$(cat "$RUN/metrics_token")}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
if [ -z "${LORALAB_AUTH__SECRET_KEY:-}" ] && ! grep -qs '^LORALAB_AUTH__SECRET_KEY=' .env; then
  # a local secret, made once, readable only by you
  [ -s "$RUN/secret_key" ] || (umask 077; $BIN/python -c 'import secrets; print(secrets.token_urlsafe(48))' > "$RUN/secret_key")
  export LORALAB_AUTH__SECRET_KEY=$(cat "$RUN/secret_key")
fi

running() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_for() {  # name, command that succeeds when ready
  for _ in $(seq 1 60); do if eval "$2" >/dev/null 2>&1; then echo "  $1 ready"; return 0; fi; sleep 1; done
  echo "  $1 did not become ready: see $RUN/$1.log" >&2; return 1
}

start_one() {  # name, command...
  local name=$1; shift
  if running "$name"; then echo "  $name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  nohup "$@" > "$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
  echo "  $name started (pid $!, log $RUN/$name.log)"
}

start() {
  echo "starting loralab services"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "  redis already answers on :$REDIS_PORT (left alone; set LORALAB_QUEUE__BROKER_URL if it wants a password)"
  else
    # the password is in a config file only you can read, never on a command line
    (umask 077; printf 'requirepass %s\n' "$REDIS_PASSWORD" > "$RUN/redis.conf")
    start_one redis redis-server "$RUN/redis.conf" --bind 127.0.0.1 --protected-mode yes \
      --port "$REDIS_PORT" --dir "$RUN" --appendonly yes --save ""
    wait_for redis "REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -p $REDIS_PORT ping | grep -q PONG"
  fi
  start_one mlflow $BIN/mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --backend-store-uri "sqlite:///$PWD/results/mlflow.db" \
    --artifacts-destination "$PWD/results/mlartifacts"
  wait_for mlflow "curl -sf http://127.0.0.1:$MLFLOW_PORT/health"
  $BIN/loralab users list >/dev/null  # brings the platform database to the newest migration
  start_one worker $BIN/celery -A loralab.entrypoints.worker.main worker -Q cpu \
    --concurrency 1 --loglevel INFO
  # loralab api: uvicorn without proxy headers (the client is the peer; trusted proxies are
  # api.trusted_proxies); API_WORKERS (or LORALAB_API__WORKERS) processes on one port
  start_one api $BIN/loralab api --host 127.0.0.1 --port "$API_PORT" ${API_WORKERS:+--workers $API_WORKERS}
  wait_for api "curl -sf http://127.0.0.1:$API_PORT/health"
  start_one ui $BIN/streamlit run src/loralab/entrypoints/ui/app.py --server.address 127.0.0.1 \
    --server.port "$UI_PORT" --server.headless true --browser.gatherUsageStats false \
    -- --api-url "http://127.0.0.1:$API_PORT"
  wait_for ui "curl -sf http://127.0.0.1:$UI_PORT/_stcore/health"
  echo "API:    http://127.0.0.1:$API_PORT/docs   (first admin: .venv/bin/loralab users create NAME --admin)"
  echo "MLflow: http://127.0.0.1:$MLFLOW_PORT"
  echo "Web UI: http://127.0.0.1:$UI_PORT"
}

stop() {
  for name in ui api worker mlflow redis; do
    if running "$name"; then
      kill "$(cat "$RUN/$name.pid")" && echo "  $name stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  for name in redis mlflow worker api ui; do
    if running "$name"; then echo "  $name: running (pid $(cat "$RUN/$name.pid"))"; else echo "  $name: not started here"; fi
  done
}

"${1:-status}"
