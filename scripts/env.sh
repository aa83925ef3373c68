# shellcheck shell=bash
# Sourced by the per-pair scripts: paths from the environment, with defaults,
# and small helpers. Every variable below can be set before calling a script.
# No command substitution here or in the scripts may fail unnoticed: a failing
# $(...) stops a script only as the whole right-hand side of a plain assignment
# (x=$(...), not local x=$(...), not inside a command's arguments), so what can
# fail is read in the main shell (config_args, check_mode) or assigned plainly.
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
# as decimal numbers from here on: $((08 * 2)) would be an octal error
NPROC=$((10#$NPROC)) NNODES=$((10#$NNODES)) NODE_RANK=$((10#$NODE_RANK)) MASTER_PORT=$((10#$MASTER_PORT))
WORLD=$((NNODES * NPROC))                         # workers over all machines
# PY is the project's environment: a python without torch (PY=/usr/bin/python3)
# is one line here, not an ImportError traceback from the first tool
if [ -z "${DEVICE:-}" ]; then
  DEVICE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null) \
    || { echo "error: PY=$PY cannot import torch (not the project's environment? scripts/install.sh makes $REPO/.venv)" >&2; exit 2; }
fi
case "$DEVICE" in
  cpu|cuda) ;;
  *) echo "error: DEVICE must be cpu or cuda, got '${DEVICE//[![:print:]]/?}'" >&2; exit 2 ;;
esac
EXTRA_ARGS=${EXTRA_ARGS:-}                        # appended to every fairseq call
# its words, split at blanks and line breaks (never file patterns: [10,] stays
# [10,]); read -d '' reads to the end (and so returns 1)
read -r -d '' -a EXTRA <<< "$EXTRA_ARGS" || true

run() { echo "+ $*" >&2; "$@"; }

# "$PY" -c "$ENDS_WITH_SCRIPT" SHELL_PID CMD ARGS... &: CMD in the background,
# killed (SIGKILL) when this shell ends however it ends - kill -9 runs no trap,
# and an orphaned fairseq-generate would decode to the end, an orphaned
# fairseq-train train on into its --save-dir. Linux's PR_SET_PDEATHSIG, which
# outlives exec; the PID check covers a shell that died before the prctl.
# Ctrl-C still reaches CMD (a background job of a script starts with SIGINT
# ignored: restored here).
# shellcheck disable=SC2034  # used by the scripts that source this file
ENDS_WITH_SCRIPT='import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    if os.getppid() != int(sys.argv[1]):
        sys.exit(1)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[2], sys.argv[2:])'

# run_bound CMD ARGS...: run's, with CMD ending when this script ends
# (the shell's PID read before the fork: an async command's words expand in the child)
run_bound() { local shell=$BASHPID; echo "+ $*" >&2; "$PY" -c "$ENDS_WITH_SCRIPT" "$shell" "$@" & wait "$!"; }

# remove_killed_temporaries TAG FILE: FILE.tmp-PID left by a killed run (no such
# process here, untouched for a minute: a run on another machine sharing the
# folder has a PID that means nothing here)
remove_killed_temporaries() {
  local tmp pid
  for tmp in "$2.tmp-"*; do
    pid=${tmp##*.tmp-}
    case "$pid" in ''|*[!0-9]*) continue ;; esac  # (also the pattern itself: no match)
    # (find's output only: where it fails the file is kept, the safe side)
    if [ -f "$tmp" ] && ! kill -0 "$pid" 2>/dev/null && [ -n "$(find "$tmp" -mmin +1)" ]; then
      echo "[$1] removing $tmp, left by a killed run" >&2
      rm -f "$tmp"
    fi
  done
}

# config_args NAME FILE...: the one reader of config files (scripts/config_args.sh)
# shellcheck source=scripts/config_args.sh
source "$REPO/scripts/config_args.sh"

# $CONFIG_DIR/cuda.args, where there is one, joins every fairseq-train call on CUDA
CUDA_ARGS=()
if [ "$DEVICE" != cpu ] && { [ -e "$CONFIG_DIR/cuda.args" ] || [ -L "$CONFIG_DIR/cuda.args" ]; }; then
  config_args CUDA_ARGS "$CONFIG_DIR/cuda.args"
fi

# output_folder WHAT FOLDER: FOLDER exists (made where missing) and takes a new
# file, or one line naming it, exit 2: before the work, not at its first save
# (a read-only or full file system, a file in the way, no permission).
output_folder() {
  local probe="$2/.write-test-$$"
  if ! mkdir -p -- "$2" 2>/dev/null || ! { : > "$probe"; } 2>/dev/null; then
    echo "error: $1 $2 is not a folder this user can write in" >&2
    exit 2
  fi
  rm -f -- "$probe"
}

# modes_starting_with FIRST MODE...: FIRST, then the other MODEs in order (the
# mode the others start from, REDUCED_FROM, is trained first)
modes_starting_with() {
  local first=$1 mode
  shift
  printf '%s' "$first"
  for mode in "$@"; do [ "$mode" = "$first" ] || printf ' %s' "$mode"; done
}

check_lang() {
  case "${1:-}" in
    de|es|fr|it|nl|pt|ro|ru) ;;
    *) echo "error: target language must be one of de es fr it nl pt ro ru, got '${1:-}'" >&2; exit 2 ;;
  esac
}

# A training mode is the name of a $CONFIG_DIR/st_MODE.args file.
check_mode() {
  local modes="" file
  for file in "$CONFIG_DIR"/st_*.args; do
    [ -f "$file" ] || continue  # (the pattern itself when nothing matches)
    file=${file##*/st_}
    modes="$modes${file%.args} "
  done
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
  local nodes=()
  [ -x "$BIN/fairseq-train" ] \
    || { echo "error: no fairseq-train beside PY=$PY ($BIN): not the project's environment? (scripts/install.sh makes $REPO/.venv)" >&2; exit 2; }
  per_worker_update_freq "$@"
  if [ "$NNODES" -gt 1 ]; then
    nodes=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
           --master_port "$MASTER_PORT")
  else
    nodes=(--standalone)
  fi
  # one worker: a killed script takes its training with it (several workers start as
  # they always did: a kill -9 of the script leaves them, docs/reliability.md)
  if [ "$DEVICE" = cpu ] && [ "$WORLD" -le 1 ]; then
    run_bound "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" --cpu "${EXTRA[@]}"
  elif [ "$WORLD" -le 1 ]; then
    run_bound "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" "${CUDA_ARGS[@]}" "${EXTRA[@]}"
  elif [ "$DEVICE" = cpu ]; then
    FAIRSEQ_TRAIN="$BIN/fairseq-train" run "$BIN/torchrun" "${nodes[@]}" --nproc_per_node "$NPROC" \
      --no-python "$REPO/scripts/fairseq_train_worker.sh" "${TRAIN_ARGS[@]}" --cpu \
      --distributed-world-size "$WORLD" --distributed-backend gloo \
      --distributed-init-method env:// --distributed-no-spawn --ddp-backend legacy_ddp "${EXTRA[@]}"
  elif [ "$NNODES" -gt 1 ]; then
    # fairseq spawns min(visible GPUs, world size) processes: show it NPROC GPUs
    CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((NPROC - 1)))} \
      run "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" --distributed-world-size "$WORLD" \
      --distributed-init-method "tcp://$MASTER_ADDR:$MASTER_PORT" \
      --distributed-rank $((NODE_RANK * NPROC)) --ddp-backend legacy_ddp "${CUDA_ARGS[@]}" "${EXTRA[@]}"
  else
    run "$BIN/fairseq-train" "${TRAIN_ARGS[@]}" --distributed-world-size "$NPROC" --ddp-backend legacy_ddp \
      "${CUDA_ARGS[@]}" "${EXTRA[@]}"
  fi
}
