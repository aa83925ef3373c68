#!/usr/bin/env bash
# Usage: scripts/train_mt.sh TGT_LANG
# Fine-tune DeltaLM ($DELTALM) on the pair's text -> $CKPT_ROOT/en-TGT/mt/.
# fairseq resumes from checkpoint_last.pt when the directory already has one.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
DATA=$DATA_ROOT/en-$TGT
config_args ARGS "$CONFIG_DIR/mt.args"
output_folder "save folder" "$CKPT_ROOT/en-$TGT/mt"
fairseq_train "$DATA" --user-dir "$REPO/npy_tome_layer" --task speech_and_text_translation \
  --tgt-lang "$TGT" --text-data "$DATA/mt" --ext-mt-training \
  --pretrained-deltalm-checkpoint "$DELTALM" --save-dir "$CKPT_ROOT/en-$TGT/mt" \
  "${ARGS[@]}"
