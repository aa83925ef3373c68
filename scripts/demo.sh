#!/usr/bin/env bash
# The built-in demo: the same per-pair scripts a MuST-C user runs, on a small
# espeak-ng corpus in the MuST-C v1.0 layout with stand-in pretrained files
# (random weights, official formats):
#   prepare -> MT fine-tune -> ST baseline and pruned -> average -> evaluate
# then a table of BLEU, HuBERT frames kept and encoder time, measured now.
# With random weights and ~36 sentences the BLEU is near 0: the demo shows that
# every step works and what pruning saves, not translation quality.
# Environment: WORK (demo_work), TGT_LANG (de), HUBERT_SIZE (small: 12 x 384;
# base: the official 12 x 768; tiny in CI),
# DEMO_MODES ("baseline fixed"), TRAIN_TALKS (6), NPROC (1), CONFIG_DIR (configs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-$PWD/.venv/bin/python}
WORK=$(mkdir -p "${WORK:-demo_work}" && cd "${WORK:-demo_work}" && pwd)
TGT=${TGT_LANG:-de}
HUBERT_SIZE=${HUBERT_SIZE:-small}
MODES=${DEMO_MODES:-baseline fixed}
AVERAGE_LAST=${AVERAGE_LAST:-3}
export PRETRAINED=$WORK/pretrained_$HUBERT_SIZE
export HUBERT=$PRETRAINED/hubert.pt DELTALM=$PRETRAINED/deltalm.pt
export SPM_MODEL=$PRETRAINED/spm.model DELTALM_DICT=$PRETRAINED/dict.txt
export MUSTC_ROOT=$WORK/mustc DATA_ROOT=$WORK/data CKPT_ROOT=$WORK/checkpoints_$HUBERT_SIZE
export CONFIG_DIR=${CONFIG_DIR:-$PWD/configs/demo}
run() { echo "+ $*" >&2; "$@"; }

[ -f "$DELTALM" ] || run "$PY" -m npy_tome_layer.standins --out "$PRETRAINED" --hubert-size "$HUBERT_SIZE"
[ -d "$MUSTC_ROOT/en-$TGT" ] || run "$PY" -m npy_tome_layer.data.demo_corpus "$MUSTC_ROOT" \
  --tgt-lang "$TGT" --train-talks "${TRAIN_TALKS:-6}"
bash scripts/prepare_data.sh "$TGT"
bash scripts/train_mt.sh "$TGT"
runs=()
for mode in $MODES; do
  bash scripts/train_st.sh "$TGT" "$mode"
  bash scripts/average_checkpoints.sh "$TGT" "$mode" "$AVERAGE_LAST"
  ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
  bash scripts/evaluate.sh "$TGT" "$ckpt"
  runs+=(--run "$mode=$ckpt:$(dirname "$ckpt")/generate-$(basename "$ckpt" .pt).txt")
done
echo
echo "en-$TGT demo, HuBERT stand-in size '$HUBERT_SIZE' (random weights):"
run "$PY" -m npy_tome_layer.compare_runs --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON "${runs[@]}"
