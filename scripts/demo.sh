#!/usr/bin/env bash
# The built-in demo: the same per-pair scripts a MuST-C user runs, on an
# synthesized corpus in the MuST-C v1.0 layout whose dev and tst-COMMON hold
# sentences never seen in training (new combinations of known words, spoken
# by people never heard in train), with stand-ins for the downloads (scripts/demo_setup.sh):
#   setup -> ST baseline / fixed / schedule -> average -> evaluate -> table [-> sweep]
# Environment: that of demo_setup.sh, and DEMO_MODES ("baseline fixed
# schedule"), AVERAGE_LAST (3), SWEEP (0; 1 adds an inference-time sweep of the
# checkpoints of SWEEP_MODES, default baseline, at keep rates 1.0 0.9 0.8 from
# layer 0 for each reduction of SWEEP_REDUCTIONS, default prune uniform local merge
# adjacent fold: off by default so the demo stays within 15 minutes), SWEEP_ARGS
# (appended to the sweep's arguments),
# COMPARE_ARGS (appended to compare_runs' arguments), REDUCED_FROM (baseline:
# every other mode starts from that mode's averaged checkpoint, trained first,
# with configs' finetune.args (train_st.sh's FINETUNE_FROM); empty: every mode
# trains from the stand-ins, as the paper's recipe does).
# Each step prints a line when it starts and when it ends (scripts/stage.sh); its
# output goes to $WORK/logs/STEP.log. The demo ends with its table and where the
# plots are.
start=$SECONDS
STAGES_START=$start
# shellcheck source=scripts/demo_setup.sh
source "$(dirname "$0")/demo_setup.sh"
# shellcheck source=scripts/env.sh
source scripts/env.sh  # the per-pair scripts' helpers, with demo_setup.sh's paths
MODES=${DEMO_MODES:-baseline fixed schedule}
AVERAGE_LAST=${AVERAGE_LAST:-3}

REDUCED_FROM=${REDUCED_FROM-baseline}
if [ -n "$REDUCED_FROM" ]; then  # that mode first: the others start from it
  # shellcheck disable=SC2086  # MODES is a list of words
  MODES=$(modes_starting_with "$REDUCED_FROM" $MODES)
fi
LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' configs/lenpen.tsv)

runs=()
for mode in $MODES; do
  start_from=
  if [ -n "$REDUCED_FROM" ] && [ "$mode" != "$REDUCED_FROM" ]; then
    start_from=$CKPT_ROOT/en-$TGT/st_$REDUCED_FROM/avg_last_$AVERAGE_LAST.pt
  fi
  stage "train_st_$mode" "ST training, $mode${start_from:+ (from the $REDUCED_FROM run)}" \
    env FINETUNE_FROM="$start_from" bash scripts/train_st.sh "$TGT" "$mode"
  stage "average_$mode" "average of the last $AVERAGE_LAST checkpoints, $mode" \
    bash scripts/average_checkpoints.sh "$TGT" "$mode" "$AVERAGE_LAST"
  ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
  stage "evaluate_$mode" "beam search on tst-COMMON, $mode" bash scripts/evaluate.sh "$TGT" "$ckpt"
  runs+=(--run "$mode=$ckpt:$(dirname "$ckpt")/generate-$(basename "$ckpt" .pt).txt")
done

read -r -d '' -a compare_args <<< "${COMPARE_ARGS:-}" || true  # words, never file patterns
table=$WORK/demo_table.md
compare() {
  # the no-audio floor decodes as evaluate.sh does (configs' generate.args: beam 8)
  run "$PY" -m npy_tome_layer.tools.compare_runs --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON \
    "${runs[@]}" --beam 8 --lenpen "$LENPEN" --max-tokens 400000 --cpu "${compare_args[@]}" > "$table"
}
stage compare "the table: BLEU beside the no-audio floor, frames kept, encoder time" compare

# which frames each run's HuBERT keeps, on the first talk of tst-COMMON
plots=$WORK/plots
mkdir -p "$plots"
talk=$(find "$MUSTC_ROOT/en-$TGT/data/tst-COMMON/wav" -name '*.wav' | sort | head -n 1)
draw_kept_frames() {
  for mode in $MODES; do
    run "$PY" -m npy_tome_layer.tools.visualize_pruning --wav "$talk" \
      --checkpoint "$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt" --out "$plots/kept_frames_$mode.png"
  done
}
stage plots "plots: which frames each run keeps, on $(basename "$talk")" draw_kept_frames

sweeps=()
if [ "${SWEEP:-0}" = 1 ]; then
  read -r -d '' -a sweep_args <<< "${SWEEP_ARGS:-}" || true
  read -r -d '' -a sweep_reductions <<< "${SWEEP_REDUCTIONS:-prune uniform local merge adjacent fold}" \
    || true
  for mode in ${SWEEP_MODES:-baseline}; do
    ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
    [ -f "$ckpt" ] || continue
    # evaluate.sh's batch limit (models built before batch invariance depend on it)
    stage "sweep_$mode" "inference-time sweep of the $mode checkpoint (no retraining)" \
      run "$PY" -m npy_tome_layer.tools.sweep --checkpoint "$ckpt" --data "$DATA_ROOT/en-$TGT" \
      --subset tst-COMMON --beam 8 --lenpen "$LENPEN" --max-tokens 400000 --repeats 2 --cpu \
      --rates 1.0 0.9 0.8 --init-layers 0 --reductions "${sweep_reductions[@]}" \
      --out "$WORK/sweep_$mode" "${sweep_args[@]}"
    sweeps+=("$mode")
  done
fi

echo
echo "en-$TGT demo, HuBERT stand-in '$HUBERT_SIZE'; BLEU on held-out sentences and voices:"
cat "$table"
for mode in "${sweeps[@]}"; do
  echo
  echo "Inference-time pruning of the $mode checkpoint (no retraining; $(shown_path "$WORK/sweep_$mode")/):"
  cat "$WORK/sweep_$mode/sweep.md"
done
echo
echo "plots: $(shown_path "$plots")/kept_frames_MODE.png (which frames each run keeps)"
for mode in "${sweeps[@]}"; do
  echo "       $(shown_path "$WORK/sweep_$mode")/sweep.png (BLEU against speed, each reduction)"
done
echo "logs:  $(shown_path "$LOGS")/"
echo "demo finished in $(duration $((SECONDS - start)))"
