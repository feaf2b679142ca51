#!/usr/bin/env bash
# SGNS training across nodes with torchrun: run this on every node with the same arguments.
#
#   NNODES=4 NODE_RANK=$i MASTER_ADDR=10.0.0.5 infra/torchrun/multinode.sh \
#       --pairs s3://c2v/store/stages/pairs/KEY --vocab s3://c2v/store/stages/vocab/KEY \
#       --out s3://c2v/store/stages/train/KEY [--preset web] [--set k=v ...] [--dry-run]
#
# Environment:
#   NNODES          number of nodes (default 1)
#   NODE_RANK       this node, 0..NNODES-1 (default 0); node 0 hosts the rendezvous
#   MASTER_ADDR     address of node 0, reachable from every node (default 127.0.0.1)
#   MASTER_PORT     rendezvous port on node 0 (default 29500)
#   NPROC_PER_NODE  ranks per node (default: the config's train.nproc; one per GPU on GPU nodes)
#   MAX_RESTARTS    torchrun restarts of all ranks after a failure (default 3); training resumes
#                   from {out}/checkpoints, so --out must be storage every node sees (s3://...)
#   NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME   the NIC to use when nodes have several
#
# The training config comes from the same presets and --set overrides as `corpus2vec train`
# (model/config.py), so a cluster run and a laptop run of one preset train the same model.
# --dry-run prints the torchrun command instead of running it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$(command -v python)}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
MAX_RESTARTS=${MAX_RESTARTS:-3}
PRESET=tiny
SETS=()
PAIRS=; VOCAB=; OUT=; DRY_RUN=0

usage() { sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --preset) PRESET=$2; shift 2 ;;
    --set) SETS+=("$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "multinode.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for name in PAIRS VOCAB OUT; do
  [ -n "${!name}" ] || { echo "multinode.sh: --$(echo "$name" | tr 'A-Z' 'a-z') is required" >&2; exit 2; }
done
if ! [[ "$NNODES" =~ ^[1-9][0-9]*$ && "$NODE_RANK" =~ ^[0-9]+$ ]] || [ "$NODE_RANK" -ge "$NNODES" ]; then
  echo "multinode.sh: need NNODES >= 1 and 0 <= NODE_RANK < NNODES (got $NNODES, $NODE_RANK)" >&2
  exit 2
fi
if [ "$NNODES" -gt 1 ] && [[ "$OUT" != *://* || "$OUT" == file://* ]]; then
  echo "multinode.sh: with NNODES > 1, --out must be shared storage (s3://...), not $OUT" >&2
  exit 2
fi

# TrainConfig as JSON from the preset and overrides (validated; a bad --set fails here, on every node)
CONFIG=$(cd "$ROOT" && "$PYTHON" -c '
import dataclasses, json, sys
from corpus2vec.model.config import load_config
print(json.dumps(dataclasses.asdict(load_config(sys.argv[1], sys.argv[2:]).train)))
' "$PRESET" ${SETS[@]+"${SETS[@]}"})
NPROC_PER_NODE=${NPROC_PER_NODE:-$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["nproc"])' "$CONFIG")}

CMD=(
  "$PYTHON" -m torch.distributed.run
  --nnodes="$NNODES"
  --node-rank="$NODE_RANK"
  --nproc-per-node="$NPROC_PER_NODE"
  --master-addr="$MASTER_ADDR"
  --master-port="$MASTER_PORT"
  --max-restarts="$MAX_RESTARTS"
  -m corpus2vec.model.train
  --pairs "$PAIRS" --vocab "$VOCAB" --out "$OUT"
  --config "$CONFIG"
)

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
cd "$ROOT"
export PYTHONUNBUFFERED=1  # corpus2vec must be installed on every node (README: Set up)
# one core share per local rank for OpenMP/MKL/numba, as model/launch.py does on one node
CORES=$(nproc)
SHARE=$(( CORES / NPROC_PER_NODE > 0 ? CORES / NPROC_PER_NODE : 1 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$SHARE} MKL_NUM_THREADS=${MKL_NUM_THREADS:-$SHARE} NUMBA_NUM_THREADS=${NUMBA_NUM_THREADS:-$SHARE}
if [ "$NNODES" = 1 ]; then export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo}; fi
exec "${CMD[@]}"
