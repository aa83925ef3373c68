#!/usr/bin/env bash
# Smallest real end-to-end run on the built-in corpus (espeak-ng speech in the
# MuST-C layout, stand-in pretrained files with random weights):
# prepare -> MT fine-tune from DeltaLM -> ST dense and pruned -> generate + BLEU.
# With random-weight stand-ins and a 36-sentence corpus the BLEU is near 0: the
# point is that every step a MuST-C user runs works. Paths via environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
WORK=${WORK:-demo_work}
TGT=${TGT_LANG:-de}
UPDATES=${UPDATES:-30}
mkdir -p "$WORK"
run() { echo "+ $*" >&2; "$@"; }

if [ ! -f "$WORK/pretrained/deltalm.pt" ]; then
  run "$PY" -m npy_tome_layer.standins --out "$WORK/pretrained"
fi
[ -d "$WORK/mustc/en-$TGT" ] || run "$PY" -m npy_tome_layer.data.demo_corpus "$WORK/mustc" --tgt-lang "$TGT"
run "$PY" -m npy_tome_layer.data.prepare_mustc --mustc-root "$WORK/mustc" --tgt-lang "$TGT" \
  --out "$WORK/data" --spm-model "$WORK/pretrained/spm.model" --dict "$WORK/pretrained/dict.txt"

TINY="--encoder-embed-dim 64 --encoder-ffn-embed-dim 128 --encoder-layers 2 --decoder-layers 2
      --encoder-attention-heads 4 --decoder-attention-heads 4"
COMMON="$WORK/data --user-dir npy_tome_layer --task speech_and_text_translation --tgt-lang $TGT
        --text-data $WORK/data/mt --criterion speech_and_text_translation --label-smoothing 0.1
        --optimizer adam --lr 5e-4 --cpu --no-progress-bar --log-interval 10 --num-workers 0
        --seed 1 --required-batch-size-multiple 1 --max-update $UPDATES $TINY"

[ -f "$WORK/ckpt_mt/checkpoint_last.pt" ] || run "$BIN/fairseq-train" $COMMON --mt-finetune \
  --arch deltalm_base --pretrained-deltalm-checkpoint "$WORK/pretrained/deltalm.pt" \
  --max-tokens 1000 --valid-subset valid --save-dir "$WORK/ckpt_mt" --no-epoch-checkpoints

for mode in dense:1.0 pruned:0.9; do
  name=${mode%%:*}; rate=${mode##*:}
  [ -f "$WORK/ckpt_$name/checkpoint_last.pt" ] || run "$BIN/fairseq-train" $COMMON \
    --st-training --mt-finetune --arch hubert_transformer_pruning_layer \
    --hubert-model-path "$WORK/pretrained/hubert.pt" --pruning-rate "$rate" --conv-channels 64 \
    --load-pretrained-mt-encoder-decoder-from "$WORK/ckpt_mt/checkpoint_last.pt" \
    --max-tokens 200000 --max-tokens-text 500 --valid-subset dev \
    --save-dir "$WORK/ckpt_$name" --no-epoch-checkpoints
  run "$BIN/fairseq-generate" "$WORK/data" --user-dir npy_tome_layer \
    --task speech_and_text_translation --gen-subset tst-COMMON \
    --path "$WORK/ckpt_$name/checkpoint_last.pt" --beam 8 --lenpen 1.2 --scoring sacrebleu \
    --max-tokens 200000 --cpu --max-len-a 0 --max-len-b 30 --required-batch-size-multiple 1 \
    > "$WORK/generate_$name.txt"
  echo "$name (keep rate $rate): $(grep '^Generate' "$WORK/generate_$name.txt")"
done
