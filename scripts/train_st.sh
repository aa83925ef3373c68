#!/usr/bin/env bash
# Usage: scripts/train_st.sh TGT_LANG MODE
# ST + MT multitask from HuBERT ($HUBERT) and the pair's MT checkpoint
# ($MT_CHECKPOINT, default $CKPT_ROOT/en-TGT/mt/checkpoint_best.pt)
# -> $ST_DIR (default $CKPT_ROOT/en-TGT/st_MODE/). MODE names $CONFIG_DIR/st_MODE.args:
# baseline (keep rate 1.0, dense), fixed, schedule, paper, uniform, random.
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODE=${2:-}; check_mode "$MODE"
DATA=$DATA_ROOT/en-$TGT
ARGS="$(config_args "$CONFIG_DIR/st.args") $(config_args "$CONFIG_DIR/st_$MODE.args")"
MT_CHECKPOINT=${MT_CHECKPOINT:-$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt}
[ -f "$MT_CHECKPOINT" ] || { echo "error: MT checkpoint $MT_CHECKPOINT not found (run scripts/train_mt.sh $TGT)" >&2; exit 2; }
fairseq_train "$DATA" --user-dir "$REPO/npy_tome_layer" --task speech_and_text_translation \
  --tgt-lang "$TGT" --text-data "$DATA/mt" --st-training --mt-finetune \
  --hubert-model-path "$HUBERT" --load-pretrained-mt-encoder-decoder-from "$MT_CHECKPOINT" \
  --save-dir "${ST_DIR:-$CKPT_ROOT/en-$TGT/st_$MODE}" \
  $ARGS
