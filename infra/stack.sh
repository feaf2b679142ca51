#!/usr/bin/env bash
# Local development stack, loopback only: a Prefect server (SQLite), a Spark standalone
# master + worker from the pyspark install, and an S3 endpoint (moto server).
#
#   infra/stack.sh start  [prefect|spark|s3|all]
#   infra/stack.sh stop   [prefect|spark|s3|all]
#   infra/stack.sh status [prefect|spark|s3|all]
#
# Ports (override with environment variables): PREFECT_PORT=4200, SPARK_MASTER_PORT=7077,
# SPARK_UI_PORT=8080, SPARK_WORKER_UI_PORT=8081, S3_PORT=5000. State (pid files, logs) lives
# in $C2V_STACK_DIR (default ~/.local/state/corpus2vec/stack). Run inside the project's venv.
set -euo pipefail

HOST=127.0.0.1
STATE=${C2V_STACK_DIR:-$HOME/.local/state/corpus2vec/stack}
PREFECT_PORT=${PREFECT_PORT:-4200}
SPARK_MASTER_PORT=${SPARK_MASTER_PORT:-7077}
SPARK_UI_PORT=${SPARK_UI_PORT:-8080}
SPARK_WORKER_UI_PORT=${SPARK_WORKER_UI_PORT:-8081}
S3_PORT=${S3_PORT:-5000}
mkdir -p "$STATE"

spark_class() {  # the spark-class launcher of the venv's pyspark, as a command for launch
  local home
  home=$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
  echo env "SPARK_HOME=$home" "SPARK_LOCAL_IP=$HOST" "$home/bin/spark-class"
}

launch() {  # name, command...: start in the background, remember the pid
  local name=$1; shift
  if is_running "$name"; then echo "$name: already running (pid $(cat "$STATE/$name.pid"))"; return; fi
  nohup "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  echo "$name: started (pid $!, log $STATE/$name.log)"
}

is_running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

halt() {
  local name=$1
  if is_running "$name"; then
    local pid; pid=$(cat "$STATE/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "$name: stopped"
  else
    echo "$name: not running"
  fi
  rm -f "$STATE/$name.pid"
}

wait_port() {  # port, name: wait until something listens on HOST:port
  for _ in $(seq 1 150); do
    if python -c "import socket,sys; s=socket.socket(); s.settimeout(0.3); sys.exit(s.connect_ex(('$HOST', $1)))"; then
      echo "$2: listening on $HOST:$1"; return 0
    fi
    sleep 0.2
  done
  echo "$2: nothing listens on $HOST:$1 after 30s; see $STATE/$2.log" >&2
  return 1
}

start_prefect() {
  # the UI must call this server's API, not the default port 4200
  PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_API_URL="http://$HOST:$PREFECT_PORT/api" \
    launch prefect prefect server start --host $HOST --port "$PREFECT_PORT"
  wait_port "$PREFECT_PORT" prefect
  echo "  export PREFECT_API_URL=http://$HOST:$PREFECT_PORT/api   # UI: http://$HOST:$PREFECT_PORT"
}

start_spark() {
  local cmd
  read -r -a cmd <<<"$(spark_class)"
  launch spark-master "${cmd[@]}" org.apache.spark.deploy.master.Master \
    --host $HOST --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_UI_PORT"
  wait_port "$SPARK_MASTER_PORT" spark-master
  launch spark-worker "${cmd[@]}" org.apache.spark.deploy.worker.Worker "spark://$HOST:$SPARK_MASTER_PORT" \
    --host $HOST --webui-port "$SPARK_WORKER_UI_PORT"
  wait_port "$SPARK_WORKER_UI_PORT" spark-worker
  echo "  export C2V_SPARK_MASTER=spark://$HOST:$SPARK_MASTER_PORT"
}

start_s3() {
  launch s3 python -m moto.server -H $HOST -p "$S3_PORT"
  wait_port "$S3_PORT" s3
  echo "  export AWS_ENDPOINT_URL=http://$HOST:$S3_PORT AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_DEFAULT_REGION=us-east-1"
}

status_of() { if is_running "$1"; then echo "$1: running (pid $(cat "$STATE/$1.pid"))"; else echo "$1: stopped"; fi; }

action=${1:-status}
target=${2:-all}
case "$target" in
  prefect) services=(prefect) ;;
  spark) services=(spark) ;;
  s3) services=(s3) ;;
  all) services=(prefect spark s3) ;;
  *) echo "unknown service '$target': use prefect, spark, s3 or all" >&2; exit 2 ;;
esac

for svc in "${services[@]}"; do
  case "$action" in
    start) "start_$svc" ;;
    stop) if [ "$svc" = spark ]; then halt spark-worker; halt spark-master; else halt "$svc"; fi ;;
    status) if [ "$svc" = spark ]; then status_of spark-master; status_of spark-worker; else status_of "$svc"; fi ;;
    *) echo "unknown action '$action': use start, stop or status" >&2; exit 2 ;;
  esac
done
