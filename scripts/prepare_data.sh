#!/usr/bin/env bash
# Usage: scripts/prepare_data.sh TGT_LANG
# MuST-C v1.0 $MUSTC_ROOT/en-TGT -> $DATA_ROOT/en-TGT/{SPLIT.tsv, config.yaml, mt/}.
# Finished outputs are kept; re-running only adds what is missing.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
run "$PY" -m npy_tome_layer.tools.prepare_mustc --mustc-root "$MUSTC_ROOT" --tgt-lang "$TGT" \
  --out "$DATA_ROOT/en-$TGT" --spm-model "$SPM_MODEL" --dict "$DELTALM_DICT"
