#!/usr/bin/env bash
# Usage: scripts/evaluate.sh TGT_LANG CHECKPOINT
# fairseq-generate on tst-COMMON (configs: beam 8) with the language's length
# penalty from configs/lenpen.tsv; hypotheses and BLEU go to
# CHECKPOINT_DIR/generate-<checkpoint name>.txt, the BLEU line also to stdout.
# The output's first line records the checkpoint's sha256 ("# checkpoint
# sha256 HEX PATH"): compare_runs and study refuse a generate file of another
# checkpoint. Each run decodes to its own temporary (two runs of one checkpoint
# at once each keep a whole output, the last one's); fairseq-generate ends with
# this script however it ends, and a killed run's temporary is removed by the
# next.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
CKPT=${2:?usage: evaluate.sh TGT_LANG CHECKPOINT}
[ -f "$CKPT" ] || { echo "error: checkpoint $CKPT not found" >&2; exit 2; }
config_args ARGS "$CONFIG_DIR/generate.args"
# an MT-stage or HuBERT file, or another pair's checkpoint: one line, before decoding
"$PY" -m npy_tome_layer.tools.inspect_checkpoint --expect-st --tgt-lang "$TGT" "$CKPT" >/dev/null \
  || exit 2
LENPEN_TABLE=$REPO/configs/lenpen.tsv
LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' "$LENPEN_TABLE")
[ -n "$LENPEN" ] || { echo "error: no length penalty for $TGT in $LENPEN_TABLE" >&2; exit 2; }
case "$LENPEN" in
  *$'\n'*) echo "error: $LENPEN_TABLE has $(printf '%s\n' "$LENPEN" | wc -l) rows for $TGT; keep one" >&2; exit 2 ;;
esac
CKPT_DIR=$(dirname "$CKPT")
OUT=$CKPT_DIR/generate-$(basename "$CKPT" .pt).txt
output_folder "checkpoint folder" "$CKPT_DIR"  # generate-*.txt goes there
device_args=(); [ "$DEVICE" = cpu ] && device_args=(--cpu)
remove_killed_temporaries evaluate "$OUT"
TMP=$OUT.tmp-$$  # this run's own: a second run of the checkpoint writes its own
generate_pid=""
# a failed or stopped run leaves no half-written output and no decoding behind
stop() {
  if [ -n "$generate_pid" ]; then kill "$generate_pid" 2>/dev/null || true; fi
  rm -f "$TMP"
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
digest=$(sha256sum < "$CKPT")
printf '# checkpoint sha256 %s %s\n' "${digest%% *}" "$CKPT" > "$TMP"
generate=("$BIN/fairseq-generate" "$DATA_ROOT/en-$TGT" --user-dir "$REPO/npy_tome_layer"
  --task speech_and_text_translation --tgt-lang "$TGT" --path "$CKPT" --lenpen "$LENPEN"
  "${device_args[@]}" "${ARGS[@]}" "${EXTRA[@]}")
echo "+ ${generate[*]}" >&2
# in the background, so a TERM or INT reaches the trap at once (bash runs a
# trap only after a foreground command ends)
"$PY" -c "$ENDS_WITH_SCRIPT" "$$" "${generate[@]}" >> "$TMP" &
generate_pid=$!
wait "$generate_pid"
generate_pid=""
# an output without its BLEU line is no result (study.sh would keep it as one)
bleu=$(grep '^Generate' "$TMP") \
  || { echo "error: fairseq-generate wrote no BLEU line (Generate ...) for $CKPT; nothing kept" >&2; exit 1; }
mv "$TMP" "$OUT"
echo "en-$TGT $(basename "$(dirname "$CKPT")")/$(basename "$CKPT") lenpen $LENPEN: $bleu"
