# Sourced by demo.sh and demo_study.sh: the built-in corpus and the stand-ins
# for the downloads, prepared the way a MuST-C user prepares a pair:
#   corpus + stand-ins -> prepare -> MT -> HuBERT pre-training stand-in.
# The HuBERT stand-in starts from random weights; pruning by attention only
# means something once attention does, so it is first trained (a dense ST run
# on the train split) and every ST run starts from that file, as the paper
# starts from hubert_base_ls960.pt. Sets PY, WORK, TGT, HUBERT_SIZE and the
# per-pair scripts' variables (PRETRAINED, HUBERT, DELTALM, ..., CONFIG_DIR).
# Environment: WORK (demo_work), TGT_LANG (de; es fr use the held-out grammar
# too), HUBERT_SIZE (demo: 12 x 64; tiny in CI), TRAIN_TALKS (10), SEGMENTS
# (40 per talk), PRETRAIN_UPDATES (400), NPROC (1), CONFIG_DIR (configs/demo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PY=${PY:-$PWD/.venv/bin/python}
WORK=$(mkdir -p "${WORK:-demo_work}" && cd "${WORK:-demo_work}" && pwd)
TGT=${TGT_LANG:-de}
HUBERT_SIZE=${HUBERT_SIZE:-demo}
SEGMENTS=${SEGMENTS:-40}
export PRETRAINED=$WORK/pretrained_$HUBERT_SIZE
export DELTALM=$PRETRAINED/deltalm.pt SPM_MODEL=$PRETRAINED/spm.model DELTALM_DICT=$PRETRAINED/dict.txt
export MUSTC_ROOT=$WORK/mustc DATA_ROOT=$WORK/data CKPT_ROOT=$WORK/checkpoints_$HUBERT_SIZE
export CONFIG_DIR=${CONFIG_DIR:-$PWD/configs/demo}
run() { echo "+ $*" >&2; "$@"; }

[ -f "$DELTALM" ] || run "$PY" -m npy_tome_layer.demo.standins --out "$PRETRAINED" --hubert-size "$HUBERT_SIZE"
[ -d "$MUSTC_ROOT/en-$TGT" ] || run "$PY" -m npy_tome_layer.demo.corpus "$MUSTC_ROOT" \
  --tgt-lang "$TGT" --train-talks "${TRAIN_TALKS:-10}" --segments-per-talk "$SEGMENTS"
bash scripts/prepare_data.sh "$TGT"
bash scripts/train_mt.sh "$TGT"

export HUBERT=$PRETRAINED/hubert_pretrained.pt
if [ ! -f "$HUBERT" ]; then
  # (MT_CHECKPOINT before CKPT_ROOT: bash expands these left to right)
  HUBERT=$PRETRAINED/hubert.pt MT_CHECKPOINT=$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt \
    CKPT_ROOT=$WORK/hubert_pretraining_$HUBERT_SIZE \
    EXTRA_ARGS="--max-update ${PRETRAIN_UPDATES:-400} --no-epoch-checkpoints ${EXTRA_ARGS:-}" \
    bash scripts/train_st.sh "$TGT" baseline
  run "$PY" -m npy_tome_layer.demo.standins --out "$HUBERT" --hubert "$PRETRAINED/hubert.pt" \
    --hubert-from-st "$WORK/hubert_pretraining_$HUBERT_SIZE/en-$TGT/st_baseline/checkpoint_last.pt"
fi
