#!/usr/bin/env bash
# Usage: scripts/run_pair.sh TGT_LANG [MODES="baseline fixed schedule"]
# Everything for one MuST-C pair: prepare -> MT -> ST per mode -> average -> evaluate.
# REDUCED_FROM (default baseline): that mode is trained first and every other mode
# starts from its average (train_st.sh's FINETUNE_FROM, configs' finetune.args), the
# recipe in which reduced models keep listening (docs/recipe.md); empty
# (REDUCED_FROM=): every mode from HuBERT and the MT checkpoint, the paper's recipe.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODES=${2:-baseline fixed schedule}
AVERAGE_LAST=${AVERAGE_LAST:-10}
S=$REPO/scripts
REDUCED_FROM=${REDUCED_FROM-baseline}
if [ -n "$REDUCED_FROM" ]; then
  check_mode "$REDUCED_FROM"
  # shellcheck disable=SC2086  # MODES is a list of words
  MODES=$(modes_starting_with "$REDUCED_FROM" $MODES)
fi
bash "$S/prepare_data.sh" "$TGT"
bash "$S/train_mt.sh" "$TGT"
for mode in $MODES; do
  start_from=
  if [ -n "$REDUCED_FROM" ] && [ "$mode" != "$REDUCED_FROM" ]; then
    start_from=$CKPT_ROOT/en-$TGT/st_$REDUCED_FROM/avg_last_$AVERAGE_LAST.pt
  fi
  FINETUNE_FROM=$start_from bash "$S/train_st.sh" "$TGT" "$mode"
  bash "$S/average_checkpoints.sh" "$TGT" "$mode" "$AVERAGE_LAST"
  bash "$S/evaluate.sh" "$TGT" "$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt"
done
