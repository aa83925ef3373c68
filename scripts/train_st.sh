#!/usr/bin/env bash
# Usage: scripts/train_st.sh TGT_LANG {baseline|fixed|schedule}
# ST + MT multitask from HuBERT ($HUBERT) and the pair's MT checkpoint
# ($MT_CHECKPOINT, default $CKPT_ROOT/en-TGT/mt/checkpoint_best.pt)
# -> $CKPT_ROOT/en-TGT/st_MODE/. baseline = keep rate 1.0 (dense).
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODE=${2:-}
case "$MODE" in baseline|fixed|schedule) ;; *)
  echo "error: mode must be baseline, fixed or schedule, got '$MODE'" >&2; exit 2 ;; esac
DATA=$DATA_ROOT/en-$TGT
ARGS="$(config_args "$CONFIG_DIR/st.args") $(config_args "$CONFIG_DIR/st_$MODE.args")"
MT_CHECKPOINT=${MT_CHECKPOINT:-$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt}
[ -f "$MT_CHECKPOINT" ] || { echo "error: MT checkpoint $MT_CHECKPOINT not found (run scripts/train_mt.sh $TGT)" >&2; exit 2; }
fairseq_train "$DATA" --user-dir "$REPO/npy_tome_layer" --task speech_and_text_translation \
  --tgt-lang "$TGT" --text-data "$DATA/mt" --st-training --mt-finetune \
  --hubert-model-path "$HUBERT" --load-pretrained-mt-encoder-decoder-from "$MT_CHECKPOINT" \
  --save-dir "$CKPT_ROOT/en-$TGT/st_$MODE" \
  $ARGS
