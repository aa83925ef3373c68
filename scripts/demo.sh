#!/usr/bin/env bash
# The built-in demo: the same per-pair scripts a MuST-C user runs, on an
# synthesized corpus in the MuST-C v1.0 layout whose dev and tst-COMMON hold
# sentences never seen in training (new combinations of known words, spoken
# by people never heard in train), with stand-ins for the downloads (scripts/demo_setup.sh):
#   setup -> ST baseline / fixed / schedule -> average -> evaluate -> table [-> sweep]
# Environment: that of demo_setup.sh, and DEMO_MODES ("baseline fixed
# schedule"), AVERAGE_LAST (3), SWEEP (0; 1 adds an inference-time sweep of the
# checkpoints of SWEEP_MODES, default baseline, at keep rates 1.0 0.9 0.8 from
# layer 0: off by default so the demo stays within 15 minutes), SWEEP_ARGS
# (appended to the sweep's arguments),
# COMPARE_ARGS (appended to compare_runs' arguments).
start=$SECONDS
source "$(dirname "$0")/demo_setup.sh"
MODES=${DEMO_MODES:-baseline fixed schedule}
AVERAGE_LAST=${AVERAGE_LAST:-3}

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
run "$PY" -m npy_tome_layer.tools.compare_runs --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON "${runs[@]}" \
  ${COMPARE_ARGS:-}

if [ "${SWEEP:-0}" = 1 ]; then
  LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' configs/lenpen.tsv)
  for mode in ${SWEEP_MODES:-baseline}; do
    ckpt=$CKPT_ROOT/en-$TGT/st_$mode/avg_last_$AVERAGE_LAST.pt
    [ -f "$ckpt" ] || continue
    echo
    echo "Inference-time pruning of the $mode checkpoint (no retraining):"
    # evaluate.sh's batch limit (models built before batch invariance depend on it)
    run "$PY" -m npy_tome_layer.tools.sweep --checkpoint "$ckpt" --data "$DATA_ROOT/en-$TGT" \
      --subset tst-COMMON --beam 8 --lenpen "$LENPEN" --max-tokens 400000 --repeats 2 --cpu \
      --rates 1.0 0.9 0.8 --init-layers 0 --out "$WORK/sweep_$mode" ${SWEEP_ARGS:-}
  done
fi
echo
echo "demo finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
