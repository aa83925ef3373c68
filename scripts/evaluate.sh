#!/usr/bin/env bash
# Usage: scripts/evaluate.sh TGT_LANG CHECKPOINT
# fairseq-generate on tst-COMMON (configs: beam 8) with the language's length
# penalty from configs/lenpen.tsv; hypotheses and BLEU go to
# CHECKPOINT_DIR/generate-<checkpoint name>.txt, the BLEU line also to stdout.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
CKPT=${2:?usage: evaluate.sh TGT_LANG CHECKPOINT}
[ -f "$CKPT" ] || { echo "error: checkpoint $CKPT not found" >&2; exit 2; }
config_args ARGS "$CONFIG_DIR/generate.args"
# an MT-stage or HuBERT file, or another pair's checkpoint: one line, before decoding
"$PY" -m npy_tome_layer.tools.inspect_checkpoint --expect-st --tgt-lang "$TGT" "$CKPT" >/dev/null \
  || exit 2
LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' "$REPO/configs/lenpen.tsv")
[ -n "$LENPEN" ] || { echo "error: no length penalty for $TGT in configs/lenpen.tsv" >&2; exit 2; }
CKPT_DIR=$(dirname "$CKPT")
OUT=$CKPT_DIR/generate-$(basename "$CKPT" .pt).txt
output_folder "checkpoint folder" "$CKPT_DIR"  # generate-*.txt goes there
device_args=(); [ "$DEVICE" = cpu ] && device_args=(--cpu)
trap 'rm -f "$OUT.tmp"' EXIT  # a failed run leaves no half-written output
run "$BIN/fairseq-generate" "$DATA_ROOT/en-$TGT" --user-dir "$REPO/npy_tome_layer" \
  --task speech_and_text_translation --tgt-lang "$TGT" --path "$CKPT" --lenpen "$LENPEN" \
  "${device_args[@]}" "${ARGS[@]}" "${EXTRA[@]}" > "$OUT.tmp"
# an output without its BLEU line is no result (study.sh would keep it as one)
bleu=$(grep '^Generate' "$OUT.tmp") \
  || { echo "error: fairseq-generate wrote no BLEU line (Generate ...) for $CKPT; nothing kept" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"
echo "en-$TGT $(basename "$(dirname "$CKPT")")/$(basename "$CKPT") lenpen $LENPEN: $bleu"
