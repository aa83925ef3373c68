#!/usr/bin/env bash
# The built-in demo: the same per-pair scripts a MuST-C user runs, on an
# espeak-ng corpus in the MuST-C v1.0 layout whose dev and tst-COMMON hold
# sentences never seen in training (new combinations of known words, spoken
# by unseen voices), with stand-ins for the downloads:
#   corpus + stand-ins -> prepare -> MT -> HuBERT pre-training stand-in
#   -> ST baseline / fixed / schedule -> average -> evaluate -> table -> sweeps
# The HuBERT stand-in starts from random weights; pruning by attention only
# means something once attention does, so the demo first trains it (a dense ST
# run on the train split) and starts every ST mode from that file, as the
# paper starts from hubert_base_ls960.pt.
# Environment: WORK (demo_work), TGT_LANG (de; es fr use the held-out grammar
# too), HUBERT_SIZE (demo: 12 x 64; tiny in CI), DEMO_MODES ("baseline fixed
# schedule"), TRAIN_TALKS (10), SEGMENTS (40 per talk), PRETRAIN_UPDATES (400),
# SWEEP (1: inference-time sweeps of the baseline and fixed checkpoints),
# SWEEP_ARGS (appended to the sweep's arguments),
# NPROC (1), CONFIG_DIR (configs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-$PWD/.venv/bin/python}
WORK=$(mkdir -p "${WORK:-demo_work}" && cd "${WORK:-demo_work}" && pwd)
TGT=${TGT_LANG:-de}
HUBERT_SIZE=${HUBERT_SIZE:-demo}
MODES=${DEMO_MODES:-baseline fixed schedule}
AVERAGE_LAST=${AVERAGE_LAST:-3}
SEGMENTS=${SEGMENTS:-40}
export PRETRAINED=$WORK/pretrained_$HUBERT_SIZE
export DELTALM=$PRETRAINED/deltalm.pt SPM_MODEL=$PRETRAINED/spm.model DELTALM_DICT=$PRETRAINED/dict.txt
export MUSTC_ROOT=$WORK/mustc DATA_ROOT=$WORK/data CKPT_ROOT=$WORK/checkpoints_$HUBERT_SIZE
export CONFIG_DIR=${CONFIG_DIR:-$PWD/configs/demo}
run() { echo "+ $*" >&2; "$@"; }
start=$SECONDS

[ -f "$DELTALM" ] || run "$PY" -m npy_tome_layer.standins --out "$PRETRAINED" --hubert-size "$HUBERT_SIZE"
[ -d "$MUSTC_ROOT/en-$TGT" ] || run "$PY" -m npy_tome_layer.data.demo_corpus "$MUSTC_ROOT" \
  --tgt-lang "$TGT" --train-talks "${TRAIN_TALKS:-10}" --segments-per-talk "$SEGMENTS"
bash scripts/prepare_data.sh "$TGT"
bash scripts/train_mt.sh "$TGT"

# HuBERT pre-training stand-in: dense ST on the train split, its HuBERT written
# in the official format; every ST mode below starts from it
export HUBERT=$PRETRAINED/hubert_pretrained.pt
if [ ! -f "$HUBERT" ]; then
  # (MT_CHECKPOINT before CKPT_ROOT: bash expands these left to right)
  HUBERT=$PRETRAINED/hubert.pt MT_CHECKPOINT=$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt \
    CKPT_ROOT=$WORK/hubert_pretraining_$HUBERT_SIZE \
    EXTRA_ARGS="--max-update ${PRETRAIN_UPDATES:-400} --no-epoch-checkpoints ${EXTRA_ARGS:-}" \
    bash scripts/train_st.sh "$TGT" baseline
  run "$PY" -m npy_tome_layer.standins --out "$HUBERT" --hubert "$PRETRAINED/hubert.pt" \
    --hubert-from-st "$WORK/hubert_pretraining_$HUBERT_SIZE/en-$TGT/st_baseline/checkpoint_last.pt"
fi

runs=()
for mode in $MODES; do
  bash scripts/train_st.sh "$TGT" "$mode"
  bash scripts/average_checkpoints.sh "$TGT" "$mode" "$AVERAGE_LAST"
  ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
  bash scripts/evaluate.sh "$TGT" "$ckpt"
  runs+=(--run "$mode=$ckpt:$(dirname "$ckpt")/generate-$(basename "$ckpt" .pt).txt")
done
echo
echo "en-$TGT demo, HuBERT stand-in '$HUBERT_SIZE'; BLEU on held-out sentences and voices:"
run "$PY" -m npy_tome_layer.compare_runs --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON "${runs[@]}"

if [ "${SWEEP:-1}" = 1 ]; then
  LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' configs/lenpen.tsv)
  for mode in baseline fixed; do
    ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
    [ -f "$ckpt" ] || continue
    echo
    echo "Inference-time pruning of the $mode checkpoint (no retraining):"
    # the batch limit of evaluate.sh: the pruned model's output depends on the
    # batching (fairseq's frame mask gives a padded row one frame more)
    run "$PY" -m npy_tome_layer.sweep --checkpoint "$ckpt" --data "$DATA_ROOT/en-$TGT" \
      --subset tst-COMMON --beam 8 --lenpen "$LENPEN" --max-tokens 400000 --repeats 2 --cpu \
      --out "$WORK/sweep_$mode" ${SWEEP_ARGS:-}
  done
fi
echo
echo "demo finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
