#!/usr/bin/env bash
# Usage: scripts/study.sh TGT_LANG
# Rank training settings with several seeds: every mode in STUDY_MODES (names of
# $CONFIG_DIR/st_MODE.args; default baseline fixed schedule paper local coverage uniform random)
# is trained for every seed in SEEDS (default 1 2 3) from the same HuBERT and MT
# files, averaged (last AVERAGE_LAST epoch checkpoints, default 10) and evaluated
# on tst-COMMON as evaluate.sh does; then python -m npy_tome_layer.tools.study writes
# study.json, study.md and study.png to $CKPT_ROOT/en-TGT/study/ (one run per
# MODE_seedS directory there). Re-running continues: a finished training
# (marker .trained), average and evaluation output are kept. The training seed
# varies; --token-reduction-seed (the random baseline's frame choice) stays at
# its default unless EXTRA_ARGS sets it. STUDY_ARGS is appended to the
# report's arguments; STUDY_DIR replaces $CKPT_ROOT/en-TGT/study. The coverage
# mode's share (--pruning-coverage) is COVERAGE, or chosen on dev before its
# first run: the share at which the first seed's baseline keeps the frames the
# first seed's fixed keeps (tools/choose_coverage; written to
# $STUDY/coverage.txt and kept), so it compares at equal frames.
# REDUCED_FROM (default baseline; empty: every mode from the stand-ins, the
# paper's recipe): every other mode of a seed starts from that mode's averaged
# checkpoint of the same seed, trained first (train_st.sh's FINETUNE_FROM).
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODES=${STUDY_MODES:-baseline fixed schedule paper local coverage uniform random}
SEEDS=${SEEDS:-1 2 3}
AVERAGE_LAST=${AVERAGE_LAST:-10}
STUDY=${STUDY_DIR:-$CKPT_ROOT/en-$TGT/study}
export MT_CHECKPOINT=${MT_CHECKPOINT:-$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt}
for mode in $MODES; do check_mode "$mode"; done
REDUCED_FROM=${REDUCED_FROM-baseline}
if [ -n "$REDUCED_FROM" ]; then  # that mode first in every seed: the others start from it
  check_mode "$REDUCED_FROM"
  # shellcheck disable=SC2086  # MODES is a list of words
  MODES=$(modes_starting_with "$REDUCED_FROM" $MODES)
fi
for seed in $SEEDS; do
  case "$seed" in ''|*[!0-9]*) echo "error: SEEDS must be whole numbers, got '$seed'" >&2; exit 2 ;; esac
done
[ -f "$MT_CHECKPOINT" ] || { echo "error: MT checkpoint $MT_CHECKPOINT not found (run scripts/train_mt.sh $TGT)" >&2; exit 2; }

read -r first_seed _ <<< "$SEEDS" || true  # (SEEDS=" 1 2" or tab-separated: still 1)
[ -n "${first_seed:-}" ] || { echo "error: SEEDS names no seed" >&2; exit 2; }
choose_coverage() {  # the coverage mode's --pruning-coverage, chosen once on dev
  if [ -n "${COVERAGE:-}" ] || [ -s "$STUDY/coverage.txt" ]; then return 0; fi
  for need in baseline fixed; do
    [ -f "$STUDY/${need}_seed$first_seed/avg_last_$AVERAGE_LAST.pt" ] || {
      echo "error: the coverage mode needs the $need mode before it (STUDY_MODES), or COVERAGE" >&2
      exit 2; }
  done
  run "$PY" -m npy_tome_layer.tools.choose_coverage --data "$DATA_ROOT/en-$TGT" --subset dev \
    --checkpoint "$STUDY/baseline_seed$first_seed/avg_last_$AVERAGE_LAST.pt" \
    --match "$STUDY/fixed_seed$first_seed/avg_last_$AVERAGE_LAST.pt" > "$STUDY/coverage.txt.tmp"
  mv "$STUDY/coverage.txt.tmp" "$STUDY/coverage.txt"
}

runs=()
# seeds outermost: an interrupted study has every mode at the first seeds
for seed in $SEEDS; do
  for mode in $MODES; do
    dir=$STUDY/${mode}_seed$seed
    ckpt=$dir/avg_last_$AVERAGE_LAST.pt
    out=$dir/generate-avg_last_$AVERAGE_LAST.txt
    if [ -f "$out" ]; then
      echo "[study] $mode seed $seed: $out exists, kept" >&2
    else
      # a finished run is not trained again: fairseq does not keep its early-stopping
      # count, and more epochs would rotate the checkpoints an average was made of
      if [ ! -f "$dir/.trained" ]; then
        mode_args=""
        if [ "$mode" = coverage ]; then
          choose_coverage  # not inside $(...): a failure there must stop the study
          coverage=${COVERAGE:-$(awk '{print $2}' "$STUDY/coverage.txt")}
          [ -n "$coverage" ] || { echo "error: $STUDY/coverage.txt names no coverage" >&2; exit 2; }
          mode_args="--pruning-coverage $coverage"
        fi
        start_from=
        if [ -n "$REDUCED_FROM" ] && [ "$mode" != "$REDUCED_FROM" ]; then
          start_from=$STUDY/${REDUCED_FROM}_seed$seed/avg_last_$AVERAGE_LAST.pt
        fi
        ST_DIR=$dir EXTRA_ARGS="$EXTRA_ARGS --seed $seed $mode_args" FINETUNE_FROM=$start_from \
          bash "$REPO/scripts/train_st.sh" "$TGT" "$mode"
        touch "$dir/.trained"
      fi
      ST_DIR=$dir bash "$REPO/scripts/average_checkpoints.sh" "$TGT" "$mode" "$AVERAGE_LAST"
      bash "$REPO/scripts/evaluate.sh" "$TGT" "$ckpt"
    fi
    runs+=(--run "$mode" "$seed" "$ckpt" "$out")
  done
done
read -r -d '' -a study_args <<< "${STUDY_ARGS:-}" || true  # words, never file patterns
LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' "$REPO/configs/lenpen.tsv")
device_args=(); [ "$DEVICE" = cpu ] && device_args=(--cpu)
# the no-audio floor decodes as evaluate.sh does (configs' generate.args: beam 8)
run "$PY" -m npy_tome_layer.tools.study --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON \
  --out "$STUDY" --beam 8 --lenpen "$LENPEN" "${device_args[@]}" "${runs[@]}" "${study_args[@]}"
