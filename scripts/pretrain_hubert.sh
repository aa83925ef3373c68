#!/usr/bin/env bash
# Usage: scripts/pretrain_hubert.sh TGT_LANG OUT.pt
# HuBERT's first pre-training iteration on the audio of $DATA_ROOT/en-TGT's
# train split (train rows only: dev and tst-COMMON are never seen), with the
# architecture of $HUBERT and random weights:
#   1. labels: MFCCs with deltas, k-means into KMEANS_CLUSTERS (default 50)
#      units, one wav file per utterance, a share of train kept for validation
#      (python -m npy_tome_layer.tools.hubert_labels);
#   2. fairseq-train --task hubert_pretraining --criterion hubert with
#      $CONFIG_DIR/hubert.args for HUBERT_PRETRAIN_UPDATES updates (default 1000).
# OUT.pt is the checkpoint fairseq's trainer writes (cfg.task hubert_pretraining,
# labels ["km"], the units' dictionary in task_state): every tool that takes
# hubert_base_ls960.pt takes it. Work folder $CKPT_ROOT/en-TGT/hubert_pretraining
# (labels/, checkpoints/, train.log, accuracy.tsv: masked-prediction accuracy on
# the validation rows after each epoch); re-running continues.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
OUT=${2:-}
[ -n "$OUT" ] || { echo "error: usage: scripts/pretrain_hubert.sh TGT_LANG OUT.pt" >&2; exit 2; }
OUT_DIR=$(dirname "$OUT")
[ -d "$OUT_DIR" ] || { echo "error: OUT.pt $OUT: folder $OUT_DIR does not exist" >&2; exit 2; }
[ -f "$HUBERT" ] || { echo "error: HUBERT $HUBERT not found (its architecture is the one pre-trained)" >&2; exit 2; }
KMEANS_CLUSTERS=${KMEANS_CLUSTERS:-50}
HUBERT_PRETRAIN_UPDATES=${HUBERT_PRETRAIN_UPDATES:-1000}
whole_number KMEANS_CLUSTERS "$KMEANS_CLUSTERS" 2
whole_number HUBERT_PRETRAIN_UPDATES "$HUBERT_PRETRAIN_UPDATES" 1
config_args HUBERT_ARGS "$CONFIG_DIR/hubert.args"  # before anything runs
WORKDIR=$CKPT_ROOT/en-$TGT/hubert_pretraining
LABELS=$WORKDIR/labels
output_folder "work folder" "$WORKDIR"
output_folder "OUT.pt folder" "$OUT_DIR"  # written after the training: checked before it

if [ -f "$LABELS/dict.km.txt" ]; then
  made=$(wc -l < "$LABELS/dict.km.txt")
  [ "$made" -eq "$((10#$KMEANS_CLUSTERS))" ] || {
    echo "error: $LABELS holds labels of $made clusters, KMEANS_CLUSTERS is $KMEANS_CLUSTERS (remove $WORKDIR to start again)" >&2
    exit 2; }
  echo "[pretrain_hubert] $LABELS exists, kept" >&2
else
  run "$PY" -m npy_tome_layer.tools.hubert_labels --data "$DATA_ROOT/en-$TGT" --out "$LABELS" \
    --clusters "$KMEANS_CLUSTERS"
fi
arch=$("$PY" -m npy_tome_layer.tools.hubert_labels --arch-flags "$HUBERT")
mapfile -t ARCH <<< "$arch"

fairseq_train "$LABELS" --user-dir "$REPO/npy_tome_layer" "${HUBERT_ARGS[@]}" \
  "${ARCH[@]}" --save-dir "$WORKDIR/checkpoints" --max-update "$HUBERT_PRETRAIN_UPDATES" \
  | tee -a "$WORKDIR/train.log"

# masked-prediction accuracy (correct_m_0) of each validation, by update
awk '/\| valid \|/ {
       u = ""; a = ""
       for (i = 1; i < NF; i++) { if ($i == "num_updates") u = $(i + 1); if ($i == "correct_m_0") a = $(i + 1) }
       if (u != "" && a != "") print u "\t" a }' "$WORKDIR/train.log" \
  | sort -n -u -k1,1 | { echo -e "updates\tvalid_masked_accuracy"; cat; } > "$WORKDIR/accuracy.tsv"
echo "[pretrain_hubert] masked-prediction accuracy on the validation rows ($WORKDIR/accuracy.tsv):" >&2
cat "$WORKDIR/accuracy.tsv" >&2

trap 'rm -f "$OUT.tmp-$$"' EXIT  # a failed copy (a full disk) leaves no partial file
cp "$WORKDIR/checkpoints/checkpoint_last.pt" "$OUT.tmp-$$"
mv "$OUT.tmp-$$" "$OUT"
echo "[pretrain_hubert] wrote $OUT" >&2
