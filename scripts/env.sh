# Sourced by the per-pair scripts: paths from the environment, with defaults,
# and small helpers. Every variable below can be set before calling a script.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
BIN=$(dirname "$PY")
MUSTC_ROOT=${MUSTC_ROOT:-$REPO/mustc}            # holds en-de/, en-fr/, ... (MuST-C v1.0)
PRETRAINED=${PRETRAINED:-$REPO/pretrained}
HUBERT=${HUBERT:-$PRETRAINED/hubert_base_ls960.pt}
DELTALM=${DELTALM:-$PRETRAINED/deltalm-base.pt}
SPM_MODEL=${SPM_MODEL:-$PRETRAINED/spm.model}     # DeltaLM's sentencepiece model
DELTALM_DICT=${DELTALM_DICT:-$PRETRAINED/dict.txt}
DATA_ROOT=${DATA_ROOT:-$REPO/data}                # prepared data: $DATA_ROOT/en-XX/
CKPT_ROOT=${CKPT_ROOT:-$REPO/checkpoints}         # runs: $CKPT_ROOT/en-XX/{mt,st_baseline,...}/
CONFIG_DIR=${CONFIG_DIR:-$REPO/configs/mustc}
NPROC=${NPROC:-1}                                 # training workers (processes) per machine
NNODES=${NNODES:-1}                               # machines taking part in one training run
NODE_RANK=${NODE_RANK:-0}                         # this machine's index, 0 .. NNODES-1
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}             # node 0's address, reachable from every node
MASTER_PORT=${MASTER_PORT:-29500}                 # a free port on node 0
# NAME VALUE MIN [MAX]: a whole number in range, or one line and exit 2
whole_number() {
  case "$2" in
    ''|*[!0-9]*) echo "error: $1 must be a whole number, got '${2//[![:print:]]/?}'" >&2; exit 2 ;;
  esac
  # more than 9 significant digits would wrap around in shell arithmetic
  local significant; significant=$(printf %s "$2" | sed 's/^0*//')
  if [ "${#significant}" -gt 9 ] || [ "$((10#$2))" -lt "$3" ] || { [ -n "${4:-}" ] && [ "$((10#$2))" -gt "$4" ]; }; then
    echo "error: $1 must be in [$3, ${4:-...}], got '$2'" >&2; exit 2
  fi
}
whole_number NPROC "$NPROC" 1
whole_number NNODES "$NNODES" 1
whole_number NODE_RANK "$NODE_RANK" 0   # read only with NNODES > 1: in range there
[ "$((10#$NNODES))" -eq 1 ] || whole_number NODE_RANK "$NODE_RANK" 0 $((10#$NNODES - 1))
whole_number MASTER_PORT "$MASTER_PORT" 1 65535
WORLD=$((10#$NNODES * 10#$NPROC))                 # workers over all machines
DEVICE=${DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
EXTRA_ARGS=${EXTRA_ARGS:-}                        # appended to every fairseq call

run() { echo "+ $*" >&2; "$@"; }

# arguments of a config file: comment lines dropped, one line per group
config_args() {
  [ -f "$1" ] || { echo "error: config file $1 not found" >&2; exit 2; }
  grep -v '^[[:space:]]*#' "$1" | tr '\n' ' '
}

check_lang() {
  case "${1:-}" in
    de|es|fr|it|nl|pt|ro|ru) ;;
    *) echo "error: target language must be one of de es fr it nl pt ro ru, got '${1:-}'" >&2; exit 2 ;;
  esac
}

# A training mode is the name of a $CONFIG_DIR/st_MODE.args file.
check_mode() {
  local modes
  modes=$(cd "$CONFIG_DIR" 2>/dev/null && ls st_*.args 2>/dev/null | sed 's/^st_//; s/\.args$//' | tr '\n' ' ')
  if [ -z "${1:-}" ] || [ ! -f "$CONFIG_DIR/st_$1.args" ]; then
    echo "error: mode '${1:-}': config file $CONFIG_DIR/st_${1:-MODE}.args not found (modes there: ${modes:-none})" >&2
    exit 2
  fi
}

# The configs give --update-freq as worker-batches per update over all
# workers (the paper: 4 GPUs x 2 = 8); fairseq's --update-freq is per worker,
# so divide by the workers of all machines (rounded up) to keep the effective batch.
# Sets the array TRAIN_ARGS.
per_worker_update_freq() {
  TRAIN_ARGS=()
  while [ $# -gt 0 ]; do
    if [ "$1" = --update-freq ] && [ $# -ge 2 ]; then
      TRAIN_ARGS+=(--update-freq "$(( ($2 + WORLD - 1) / WORLD ))"); shift 2
    else
      TRAIN_ARGS+=("$1"); shift
    fi
  done
}

# fairseq-train on NPROC workers per machine, NNODES machines, through
# fairseq's own torch.distributed support. On CPU torchrun starts the workers
# (one node: --standalone; several: node 0 at MASTER_ADDR:MASTER_PORT) and
# fairseq joins them over gloo (fairseq's torchrun detection divides by the
# CUDA device count and pytorch_ddp passes device_ids=[0]; both fail on CPU,
# hence env://). On CUDA fairseq spawns one process per GPU itself; several
# nodes meet at tcp://MASTER_ADDR:MASTER_PORT, each starting at rank
# NODE_RANK * NPROC. Always legacy_ddp, as the paper: MT batches and layerdrop
# leave parameters without gradients, which pytorch_ddp rejects. On CUDA,
# $CONFIG_DIR/cuda.args is added (fp16).
fairseq_train() {
  local device_args=() cuda_args="" nodes=()
  per_worker_update_freq "$@"
  if [ "$DEVICE" = cpu ]; then
    device_args=(--cpu)
  elif [ -f "$CONFIG_DIR/cuda.args" ]; then
    cuda_args=$(config_args "$CONFIG_DIR/cuda.args")
  fi
  if [ "$NNODES" -gt 1 ]; then
    nodes=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
           --master_port "$MASTER_PORT")
  else
    nodes=(--standalone)
  fi
  if [ "$WORLD" -le 1 ]; then
    run "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" ${device_args[@]+"${device_args[@]}"} $cuda_args \
      $EXTRA_ARGS
  elif [ "$DEVICE" = cpu ]; then
    FAIRSEQ_TRAIN="$BIN/fairseq-train" run "$BIN/torchrun" "${nodes[@]}" --nproc_per_node "$NPROC" \
      --no-python "$REPO/scripts/fairseq_train_worker.sh" "${TRAIN_ARGS[@]}" --cpu \
      --distributed-world-size "$WORLD" --distributed-backend gloo \
      --distributed-init-method env:// --distributed-no-spawn --ddp-backend legacy_ddp $EXTRA_ARGS
  elif [ "$NNODES" -gt 1 ]; then
    # fairseq spawns min(visible GPUs, world size) processes: show it NPROC GPUs
    CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((NPROC - 1)))} \
      run "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" --distributed-world-size "$WORLD" \
      --distributed-init-method "tcp://$MASTER_ADDR:$MASTER_PORT" \
      --distributed-rank $((NODE_RANK * NPROC)) --ddp-backend legacy_ddp $cuda_args $EXTRA_ARGS
  else
    run "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" --distributed-world-size "$NPROC" --ddp-backend legacy_ddp \
      $cuda_args $EXTRA_ARGS
  fi
}
