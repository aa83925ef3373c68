#!/usr/bin/env bash
# Usage: scripts/train_st.sh TGT_LANG MODE
# ST + MT multitask from HuBERT ($HUBERT) and the pair's MT checkpoint
# ($MT_CHECKPOINT, default $CKPT_ROOT/en-TGT/mt/checkpoint_best.pt)
# -> $ST_DIR (default $CKPT_ROOT/en-TGT/st_MODE/). MODE names $CONFIG_DIR/st_MODE.args:
# baseline (keep rate 1.0, dense), fixed, schedule, paper, uniform, random.
# FINETUNE_FROM (optional): an ST checkpoint, e.g. the dense run's average,
# whose weights this run starts from (fairseq's --finetune-from-model:
# optimizer, learning-rate schedule and update count start afresh), with
# $CONFIG_DIR/finetune.args after the mode's arguments: the recipe in which
# reduced models keep listening (docs/recipe.md). A run that has its own
# checkpoint_last.pt continues from it instead, as fairseq does.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODE=${2:-}; check_mode "$MODE"
DATA=$DATA_ROOT/en-$TGT
config_args ARGS "$CONFIG_DIR/st.args" "$CONFIG_DIR/st_$MODE.args"
MT_CHECKPOINT=${MT_CHECKPOINT:-$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt}
[ -f "$MT_CHECKPOINT" ] || { echo "error: MT checkpoint $MT_CHECKPOINT not found (run scripts/train_mt.sh $TGT)" >&2; exit 2; }
START=()
if [ -n "${FINETUNE_FROM:-}" ]; then
  [ -f "$FINETUNE_FROM" ] || { echo "error: FINETUNE_FROM checkpoint $FINETUNE_FROM not found (train and average the run it names first)" >&2; exit 2; }
  # an MT-stage or HuBERT file, or another pair's run: one line, before training
  "$PY" -m npy_tome_layer.tools.inspect_checkpoint --expect-st --tgt-lang "$TGT" "$FINETUNE_FROM" \
    >/dev/null || exit 2
  config_args FINETUNE "$CONFIG_DIR/finetune.args"
  START=(--finetune-from-model "$FINETUNE_FROM" "${FINETUNE[@]}")
fi
output_folder "save folder" "${ST_DIR:-$CKPT_ROOT/en-$TGT/st_$MODE}"
fairseq_train "$DATA" --user-dir "$REPO/npy_tome_layer" --task speech_and_text_translation \
  --tgt-lang "$TGT" --text-data "$DATA/mt" --st-training --mt-finetune \
  --hubert-model-path "$HUBERT" --load-pretrained-mt-encoder-decoder-from "$MT_CHECKPOINT" \
  --save-dir "${ST_DIR:-$CKPT_ROOT/en-$TGT/st_$MODE}" \
  "${ARGS[@]}" "${START[@]}"
