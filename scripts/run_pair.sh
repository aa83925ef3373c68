#!/usr/bin/env bash
# Usage: scripts/run_pair.sh TGT_LANG [MODES="baseline fixed schedule"]
# Everything for one MuST-C pair: prepare -> MT -> ST per mode -> average -> evaluate.
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODES=${2:-baseline fixed schedule}
AVERAGE_LAST=${AVERAGE_LAST:-10}
S=$REPO/scripts
bash "$S/prepare_data.sh" "$TGT"
bash "$S/train_mt.sh" "$TGT"
for mode in $MODES; do
  bash "$S/train_st.sh" "$TGT" "$mode"
  bash "$S/average_checkpoints.sh" "$TGT" "$mode" "$AVERAGE_LAST"
  bash "$S/evaluate.sh" "$TGT" "$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt"
done
