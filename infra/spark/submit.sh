#!/usr/bin/env bash
# Run one corpus2vec Spark job on a cluster (or locally) with spark-submit.
#
#   infra/spark/submit.sh [options] JOB [JOB ARGS...]
#
#   JOB          tokenize | count | pairs  (the flags of `python -m corpus2vec.jobs.JOB --help`)
#   --master M   spark://host:7077 (standalone), yarn, k8s://https://host:6443, local[N]
#                (default: $C2V_SPARK_MASTER, else local[*])
#   --deploy-mode client|cluster   (default client: the driver runs here and reads the store)
#   --python P   Python on the executors (default: this venv's python, right for standalone on
#                one host; on YARN/k8s ship an environment: --archives env.tar.gz#env --python ./env/bin/python)
#   --conf K=V   extra Spark settings (repeatable); --archives A (repeatable)
#   --dry-run    print the spark-submit command and exit
#
# Example (standalone cluster, store on S3, credentials from the environment):
#   infra/spark/submit.sh --master spark://spark-master:7077 tokenize \
#       s3://crawl/CC-MAIN-2024-51/wet.paths.gz --out s3://c2v/store/manual/tokens --preset web
#
# Ships corpus2vec.jobs and the corpus2vec.model modules they import (config, schemas,
# storage; never the trainer) as one zip via --py-files (infra/spark/pyfiles.py)
# and uses infra/spark/spark-defaults.conf. The master is passed to the job too (--master),
# because jobs/session.py sets it on the SparkSession builder.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MASTER=${C2V_SPARK_MASTER:-local[*]}
DEPLOY_MODE=client
PYTHON_EXEC=${PYSPARK_PYTHON:-$(command -v python)}
DRY_RUN=0
EXTRA=()

usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --master) MASTER=$2; shift 2 ;;
    --deploy-mode) DEPLOY_MODE=$2; shift 2 ;;
    --python) PYTHON_EXEC=$2; shift 2 ;;
    --conf) EXTRA+=(--conf "$2"); shift 2 ;;
    --archives) EXTRA+=(--archives "$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --*) echo "submit.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
JOB=$1; shift
case "$JOB" in
  tokenize|count|pairs) ;;
  *) echo "submit.sh: unknown job '$JOB': use tokenize, count or pairs" >&2; exit 2 ;;
esac
case "$DEPLOY_MODE" in client|cluster) ;; *) echo "submit.sh: --deploy-mode is client or cluster" >&2; exit 2 ;; esac
if [ "$DEPLOY_MODE" = cluster ] && [[ "$MASTER" == spark://* || "$MASTER" == local* ]]; then
  echo "submit.sh: Spark runs Python drivers in cluster mode only on YARN and k8s; use --deploy-mode client" >&2
  exit 2
fi

SPARK_SUBMIT=${SPARK_HOME:+$SPARK_HOME/bin/spark-submit}
if [ -z "$SPARK_SUBMIT" ]; then  # the pyspark wheel ships spark-submit
  SPARK_SUBMIT="$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/bin/spark-submit"
fi

ZIP=${C2V_PYFILES_ZIP:-${TMPDIR:-/tmp}/corpus2vec-pyfiles-$$.zip}
CMD=(
  "$SPARK_SUBMIT"
  --master "$MASTER"
  --deploy-mode "$DEPLOY_MODE"
  --name "corpus2vec-$JOB"
  --properties-file "$HERE/spark-defaults.conf"
  --conf "spark.pyspark.python=$PYTHON_EXEC"
  --conf "spark.pyspark.driver.python=$PYTHON_EXEC"
  --py-files "$ZIP"
  ${EXTRA[@]+"${EXTRA[@]}"}
  "$HERE/run_job.py" "$JOB" "$@" --master "$MASTER"
)

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi

# the jobs and the modules they import (not the trainer) for the driver and the executors
python "$HERE/pyfiles.py" "$ZIP" >/dev/null
trap 'rm -f "$ZIP"' EXIT
"${CMD[@]}"
