#!/usr/bin/env bash
# Usage: scripts/average_checkpoints.sh TGT_LANG MODE [N=10]
# Mean of the last N epoch checkpoints of $ST_DIR (default $CKPT_ROOT/en-TGT/st_MODE)
# -> avg_last_N.pt there.
# An existing average is kept (delete it to recompute). The temporary file of a
# killed average (avg_last_N.pt.tmp-PID: no such process here, untouched for a
# minute) is removed.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODE=${2:?usage: average_checkpoints.sh TGT_LANG MODE [N]}; N=${3:-10}
whole_number N "$N" 1
DIR=${ST_DIR:-$CKPT_ROOT/en-$TGT/st_$MODE}
remove_killed_temporaries average "$DIR/avg_last_$N.pt"
if [ -f "$DIR/avg_last_$N.pt" ]; then echo "[average] $DIR/avg_last_$N.pt exists, kept" >&2; exit 0; fi
run "$PY" -m npy_tome_layer.tools.average_checkpoints --checkpoint-dir "$DIR" \
  --num-epoch-checkpoints "$N" --output "$DIR/avg_last_$N.pt"
