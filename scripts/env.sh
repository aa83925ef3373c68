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
NPROC=${NPROC:-1}                                 # training workers (processes)
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

# fairseq-train, on NPROC workers through fairseq's own torch.distributed
# support: on CUDA fairseq spawns one process per GPU itself; on CPU torchrun
# starts the workers and fairseq joins them over gloo (fairseq's torchrun
# detection divides by the CUDA device count and pytorch_ddp passes
# device_ids=[0]; both fail on CPU, hence env:// and legacy_ddp).
fairseq_train() {
  local device_args=()
  [ "$DEVICE" = cpu ] && device_args=(--cpu)
  if [ "$NPROC" -le 1 ]; then
    run "$BIN/fairseq-train" "$@" "${device_args[@]}" $EXTRA_ARGS
  elif [ "$DEVICE" = cpu ]; then
    FAIRSEQ_TRAIN="$BIN/fairseq-train" run "$BIN/torchrun" --standalone --nproc_per_node "$NPROC" \
      --no-python "$REPO/scripts/fairseq_train_worker.sh" "$@" --cpu \
      --distributed-world-size "$NPROC" --distributed-backend gloo \
      --distributed-init-method env:// --distributed-no-spawn --ddp-backend legacy_ddp $EXTRA_ARGS
  else
    run "$BIN/fairseq-train" "$@" --distributed-world-size "$NPROC" $EXTRA_ARGS
  fi
}
