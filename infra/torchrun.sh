#!/bin/bash
# A training stage on many nodes with torchrun: run this on every node, each with its NODE_RANK.
#
#   NNODES=4 NODE_RANK=0 HEAD=10.0.0.1 GPUS=8 infra/torchrun.sh          # node 0 (HEAD is its address)
#   NNODES=4 NODE_RANK=1 HEAD=10.0.0.1 GPUS=8 infra/torchrun.sh          # node 1, and so on
#   STAGE=train_sr ...                                                     # the super-resolution stage
#
# params.yaml must agree: <stage>.num_nodes = NNODES, <stage>.devices = GPUS, <stage>.strategy: ddp.
# The stage runs with the command dvc.yaml gives it; on node 0, `dvc commit` then records rank 0's outputs.
set -euo pipefail

: "${NNODES:?how many nodes}" "${NODE_RANK:?this node's rank, 0..NNODES-1}" "${HEAD:?node 0's address}"
GPUS="${GPUS:-8}"
PORT="${PORT:-29500}"
STAGE="${STAGE:-train_ldm}"

cd "${LDM_WORKDIR:-$(dirname "$0")/..}"
source .venv/bin/activate
export DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TORCH_HOME="$PWD/.cache/torch" HF_HOME="$PWD/.cache/huggingface"

ldm params check   # Lightning refuses to start when num_nodes x devices is not the world size it is given
CMD=$(dvc repro --dry --force --single-item "$STAGE" | sed -n 's/^> //p')
MODULE_ARGS=${CMD#python -m }   # "stages.train_ldm --params ..."
echo "$STAGE: node $NODE_RANK of $NNODES, $GPUS processes, rendezvous $HEAD:$PORT"

# shellcheck disable=SC2086 # the stage's arguments, split as dvc.yaml writes them
torchrun --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$GPUS" \
  --rdzv-backend c10d --rdzv-endpoint "$HEAD:$PORT" --rdzv-id "ldm-$STAGE" -m $MODULE_ARGS
if [ "$NODE_RANK" = 0 ]; then
  dvc commit --force "$STAGE"
fi
