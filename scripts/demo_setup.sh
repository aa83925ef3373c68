# shellcheck shell=bash
# Sourced by demo.sh and demo_study.sh: the built-in corpus and the stand-ins
# for the downloads, prepared the way a MuST-C user prepares a pair:
#   corpus + stand-ins -> prepare -> MT -> HuBERT stand-in.
# The HuBERT stand-in starts from random weights; pruning by attention only
# means something once attention does, so it is first trained, and every ST run
# starts from that file, as the paper starts from hubert_base_ls960.pt. Two
# ways (HUBERT_STANDIN), compared by make study:
#   self_supervised: HuBERT's own pre-training (masked prediction of k-means
#     units of MFCCs) on the train split's audio, scripts/pretrain_hubert.sh
#     for HUBERT_PRETRAIN_UPDATES (1000) updates;
#   supervised: a dense ST run on the train split for PRETRAIN_UPDATES (400)
#     updates, its HuBERT kept.
# Each step is a stage (scripts/stage.sh): one line when it starts, one when it
# ends, its output in $WORK/logs/STEP.log.
# Sets PY, WORK, LOGS, TGT, HUBERT_SIZE, HUBERT_STANDIN, the per-pair scripts'
# variables (PRETRAINED, HUBERT, DELTALM, ..., CONFIG_DIR) and the functions
# stage, standin_label / standin_path / build_standin NAME.
# Environment: WORK (demo_work), TGT_LANG (de; es fr use the held-out grammar
# too), HUBERT_SIZE (demo: 12 x 64; tiny in CI), TRAIN_TALKS (10), DEV_TALKS
# (1), TEST_TALKS (1), SEGMENTS (40 per talk; a WORK folder keeps the corpus
# it was made with: other sizes need another), HUBERT_STANDIN (self_supervised), HUBERT_PRETRAIN_UPDATES
# (1000), PRETRAIN_UPDATES (400), NPROC (1), CONFIG_DIR (configs/demo).
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
LOGS=$WORK/logs
mkdir -p "$LOGS"
STAGES_START=${STAGES_START:-$SECONDS}
# shellcheck source=scripts/stage.sh
source scripts/stage.sh
echo "$(stage_clock) en-$TGT on the built-in corpus, in $(shown_path "$WORK")/ (every step's full log in $(shown_path "$LOGS")/)"

[ -f "$DELTALM" ] || stage standins "stand-ins for the downloads (DeltaLM, sentencepiece, HuBERT shapes)" \
  run "$PY" -m npy_tome_layer.demo.standins --out "$PRETRAINED" --hubert-size "$HUBERT_SIZE"
# the corpus's size: talks of train, dev and tst-COMMON, sentences per talk
CORPUS_SIZE="${TRAIN_TALKS:-10} ${DEV_TALKS:-1} ${TEST_TALKS:-1} $SEGMENTS"
if [ ! -d "$MUSTC_ROOT/en-$TGT" ]; then
  read -r train_talks dev_talks test_talks _ <<< "$CORPUS_SIZE"
  stage corpus "corpus: synthesized speech in the MuST-C layout" \
    run "$PY" -m npy_tome_layer.demo.corpus "$MUSTC_ROOT" --tgt-lang "$TGT" \
    --train-talks "$train_talks" --dev-talks "$dev_talks" --test-talks "$test_talks" \
    --segments-per-talk "$SEGMENTS"
  echo "$CORPUS_SIZE" > "$MUSTC_ROOT/en-$TGT/corpus_size.txt"
elif [ -f "$MUSTC_ROOT/en-$TGT/corpus_size.txt" ] \
    && [ "$(cat "$MUSTC_ROOT/en-$TGT/corpus_size.txt")" != "$CORPUS_SIZE" ]; then
  echo "error: $(shown_path "$MUSTC_ROOT/en-$TGT") holds a corpus of $(cat "$MUSTC_ROOT/en-$TGT/corpus_size.txt") (train, dev, tst-COMMON talks; sentences per talk), this run asks for $CORPUS_SIZE: another WORK folder, or the same sizes" >&2
  exit 2
fi
stage prepare "preparation (manifests, sentencepiece, MT data)" bash scripts/prepare_data.sh "$TGT"
stage train_mt "MT fine-tuning of the DeltaLM stand-in" bash scripts/train_mt.sh "$TGT"

HUBERT_STANDIN=${HUBERT_STANDIN:-self_supervised}
export HUBERT_PRETRAIN_UPDATES=${HUBERT_PRETRAIN_UPDATES:-1000}
PRETRAIN_UPDATES=${PRETRAIN_UPDATES:-400}
standin_label() {  # the stand-in's name and its budget: two budgets never share a file
  case "$1" in
    self_supervised) echo "self_supervised_$HUBERT_PRETRAIN_UPDATES" ;;
    supervised) echo "supervised_$PRETRAIN_UPDATES" ;;
    *) echo "error: HUBERT_STANDIN must be self_supervised or supervised, got '$1'" >&2; return 2 ;;
  esac
}
standin_path() {
  local label; label=$(standin_label "$1")
  echo "$PRETRAINED/hubert_$label.pt"
}
build_standin() {
  local out label; out=$(standin_path "$1"); label=$(standin_label "$1")
  [ ! -f "$out" ] || return 0
  # one work folder per stand-in and budget: a run continued from a longer one
  # would stop at once and be written as the shorter
  local work=$WORK/hubert_pretraining_$HUBERT_SIZE/$label
  if [ "$1" = self_supervised ]; then
    stage "hubert_$label" "HuBERT stand-in pre-training (masked prediction, train audio)" \
      env HUBERT="$PRETRAINED/hubert.pt" CKPT_ROOT="$work" bash scripts/pretrain_hubert.sh "$TGT" "$out"
  else
    stage "hubert_$label" "supervised HuBERT stand-in (a dense ST run on the train split)" \
      supervised_standin "$work" "$out"
  fi
}
supervised_standin() {  # WORK_FOLDER OUT
  # the demo's MT checkpoint, named before CKPT_ROOT changes for the run
  local mt=$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt
  HUBERT=$PRETRAINED/hubert.pt MT_CHECKPOINT=$mt \
    CKPT_ROOT=$1 EXTRA_ARGS="--max-update $PRETRAIN_UPDATES --no-epoch-checkpoints ${EXTRA_ARGS:-}" \
    bash scripts/train_st.sh "$TGT" baseline
  run "$PY" -m npy_tome_layer.demo.standins --out "$2" --hubert "$PRETRAINED/hubert.pt" \
    --hubert-from-st "$1/en-$TGT/st_baseline/checkpoint_last.pt"
}
HUBERT=$(standin_path "$HUBERT_STANDIN")
export HUBERT
build_standin "$HUBERT_STANDIN"
