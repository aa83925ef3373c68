#!/usr/bin/env bash
# Usage (on a GPU machine, from the repo root; without a package index, with the bundle made
# by gpu_bundle.sh in .gpu_bundle/):
#   scripts/gpu_check.sh
#   DEVICE=cpu scripts/gpu_check.sh     # the same steps at tiny size on the CPU (CI runs this)
# One command that proves the GPU path and brings back the numbers:
#   0. installs fairseq and its missing dependencies from $BUNDLE (.gpu_bundle/)
#      into $SITE when fairseq is not importable (fairseq is built from its sdist
#      against the machine's torch, without its CUDA-only extensions);
#   1. the tests marked cuda (pytest -m cuda; TEST_DEVICE=$DEVICE);
#   1b. the benchmark grid's base-size rows (width 768, batch 1/8/32, 10 s, keep
#      rates 0.9/0.8 from layer 0, every rate-driven reduction against fairseq's
#      dense HubertModel) under fp16 and under bf16 autocast: time and peak CUDA
#      memory (grid_<precision>.md/.json/.png);
#   2. a few fairseq-train ST updates with --fp16 and with --amp (fp32 weights,
#      half-precision autocast) on the demo's stand-ins (loss finite, checkpoint
#      written), then fairseq-generate on each (on the CPU fp32 only: --fp16 needs
#      CUDA; fairseq 0.12's --bf16 is a TPU run, so bf16 is checked in 1b and 4);
#   3. the encoder benchmark (base size, fp16, 10 s and 20 s x 8, rates 1.0 0.9
#      0.8, init layers 0 and 4, alternatives, training step dense vs pruned);
#   4. the attention paths of the pruning layers in bf16: fairseq dense vs the
#      explicit vs the fused path at 0.9 and 0.8 from layer 0, inference 30 s x 8
#      and training steps 10 s and 30 s x 8 (time and peak CUDA memory).
# Writes summary.md (all tables and results), results.json (the benchmark's)
# and details.tar.gz (logs, plots) into $OUT if set, else gpu_results/.
# Every step runs even if one before it failed; the exit status says whether all passed.
# STEPS="install cuda_tests grid" runs only those steps (names as in the summary; "grid"
# stands for grid_fp16 and grid_bf16): the CUDA tests and the grid fit in 10 minutes of
# device time, the training and older benchmark steps after them may not.
set -uo pipefail
# paths given relative to where the script was called from
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=${DEVICE:-cuda}
RESULTS=$(absolute "${OUT:-$REPO/gpu_results}")
BUNDLE=$(absolute "${BUNDLE:-$REPO/.gpu_bundle}")
SITE=$(absolute "${SITE:-/tmp/npy_tome_layer_site}")
if [ -z "${PY:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
case "$PY" in */*) PY=$(absolute "$PY") ;; esac
# a machine that cannot run the CUDA steps is said at once, before anything is
# made or run (every step would fail, or be skipped and called passed)
case "$DEVICE" in
  cpu) ;;
  cuda)
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      echo "error: torch ($PY) sees no CUDA GPU on this machine; DEVICE=cpu scripts/gpu_check.sh runs the steps on the CPU" >&2
      exit 2
    fi ;;
  *) echo "error: DEVICE must be cpu or cuda, got '${DEVICE//[![:print:]]/?}'" >&2; exit 2 ;;
esac
if [ -z "${WORK:-}" ]; then  # (not nested in $(...), where a failing mktemp went unnoticed)
  WORK=$(mktemp -d) || { echo "error: mktemp -d failed (is /tmp full or read-only?); set WORK" >&2; exit 2; }
  # a folder of this run's: its logs and outputs leave in details.tar.gz
  trap 'rm -rf "$WORK"' EXIT
fi
WORK=$(absolute "$WORK")
cd "$REPO" || exit 2
# shellcheck source=scripts/config_args.sh
source "$REPO/scripts/config_args.sh"
# the ST step's flags, read before anything runs (a missing file: one line, exit 2)
config_args ST_ARGS "$REPO/configs/demo/st.args" "$REPO/configs/demo/st_fixed.args"
mkdir -p "$RESULTS" "$WORK/logs"
SUMMARY=$RESULTS/summary.md
export PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS
failed=()
say() { echo "$*" | tee -a "$SUMMARY"; }
STEPS=${STEPS:-all}
wanted() {  # wanted NAME: whether $STEPS asks for this step
  [ "$STEPS" = all ] && return 0
  local s; for s in $STEPS; do [ "$s" = "$1" ] || [ "$s" = "${1%%_*}" ] && return 0; done
  return 1
}
step() {  # step NAME COMMAND...: run, log to $WORK/logs/NAME.log, record the outcome
  local name=$1; shift
  if ! wanted "$name"; then say "- $name: not asked for (STEPS=$STEPS)"; return 0; fi
  echo "[gpu_check] $name: $*" >&2
  if "$@" >"$WORK/logs/$name.log" 2>&1; then
    say "- $name: passed ($((SECONDS - start)) s so far)"
  else
    say "- $name: FAILED (exit $?), log tail:"; tail -n 25 "$WORK/logs/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    failed+=("$name")
  fi
}

if [ "$DEVICE" = cpu ]; then
  SIZE=tiny; BENCH=(--size tiny --durations 1 --batches 2 --rates 1.0 0.9 --init-layers 0
                    --repeats 1 --alternatives-duration 1 --alternatives-batch 2
                    --train-step --train-step-duration 1 --train-step-batch 2 --device cpu
                    --dtype fp32)
  PATHS=(--size tiny --no-grid --no-alternatives --attention-paths --paths-duration 1
         --paths-batch 2 --paths-train-durations 1 --train-step-batch 2 --repeats 1
         --device cpu --dtype fp32)
  PRECISIONS=(fp32)  # fairseq's --fp16 needs CUDA
  GRID=(--grid --widths 32 --batches 1 2 --seconds 0.5 --rates 0.9 --reductions prune uniform
        --repeats 2 --budget 60 --device cpu)
  GRID_PRECISIONS=(fp32)
  TRAIN_DEVICE=(--cpu)
else
  SIZE=demo; BENCH=(--size base --durations 10 20 --batches 8 --rates 1.0 0.9 0.8 --init-layers 0 4
                    --repeats 5 --train-step --train-step-duration 10 --train-step-batch 8
                    --device cuda --dtype fp16)
  PATHS=(--size base --no-grid --no-alternatives --attention-paths --paths-duration 30
         --paths-batch 8 --paths-train-durations 10 30 --train-step-batch 8 --repeats 3
         --device cuda --dtype bf16)
  PRECISIONS=(fp16 amp)  # fairseq's --bf16 sets --tpu: not a CUDA run
  # the grid's base-size rows; a budget of 2 minutes per precision plans the repeats
  GRID=(--grid --widths 768 --batches 1 8 32 --seconds 10 --rates 0.9 0.8 --repeats 10
        --budget 120 --device cuda)
  GRID_PRECISIONS=(fp16 bf16)
  TRAIN_DEVICE=()
fi

: >"$SUMMARY"
say "# gpu_check ($DEVICE), $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say '```'
"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
EOF
say '```'

install() {
  if "$PY" -c "import fairseq, hydra, bitarray, soundfile" 2>/dev/null; then
    echo "fairseq already importable: nothing to install"; return 0
  fi
  ls "$BUNDLE"/*.whl "$BUNDLE"/fairseq_fixed-*.tar.gz >/dev/null || {
    echo "error: no bundle in $BUNDLE (run scripts/gpu_bundle.sh where pip works)"; return 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$BUNDLE"/*.whl || return 1
  # without CUDA_HOME fairseq's setup.py skips its CUDA kernels (unused here)
  env -u CUDA_HOME MAX_JOBS="${MAX_JOBS:-16}" "$PY" -m pip install -q --no-index --no-deps \
    --no-build-isolation --no-cache-dir --target "$SITE" "$BUNDLE"/fairseq_fixed-*.tar.gz || return 1
  "$PY" -c "import fairseq, hydra, soundfile; print('fairseq', fairseq.__version__)"
}
say ""
say "## Steps"
step install install

step cuda_tests env TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -m cuda -p no:cacheprovider \
  "$REPO/tests/test_cuda.py"
say ""
say "cuda tests: $(grep -E '[0-9]+ (passed|failed|skipped)' "$WORK/logs/cuda_tests.log" 2>/dev/null | tail -n 1)"

# right after the tests: a run cut short by its time limit still brings the grid back
for precision in "${GRID_PRECISIONS[@]}"; do
  step "grid_$precision" "$PY" -m npy_tome_layer.tools.benchmark "${GRID[@]}" --dtype "$precision" \
    --out "$WORK/grid_$precision"
  if [ -f "$WORK/grid_$precision/grid.md" ]; then
    say ""
    cat "$WORK/grid_$precision/grid.md" >>"$SUMMARY"
    for ext in md json png; do
      cp "$WORK/grid_$precision/grid.$ext" "$RESULTS/grid_$precision.$ext"
    done
  fi
done

corpus() {  # stand-ins (random weights) and the demo corpus, prepared
  "$PY" -m npy_tome_layer.demo.standins --out "$WORK/pretrained" --hubert-size "$SIZE" || return 1
  if [ -d "$BUNDLE/mustc/en-de" ]; then
    echo "corpus from the bundle: $BUNDLE/mustc"  # speech synthesized by gpu_bundle.sh
    cp -r "$BUNDLE/mustc" "$WORK/mustc"
  else
    "$PY" -m npy_tome_layer.demo.corpus "$WORK/mustc" --tgt-lang de --train-talks 1 \
      --segments-per-talk 8 || return 1
  fi
  "$PY" -m npy_tome_layer.tools.prepare_mustc --mustc-root "$WORK/mustc" --tgt-lang de \
    --out "$WORK/data" --spm-model "$WORK/pretrained/spm.model" --dict "$WORK/pretrained/dict.txt"
}
step corpus corpus

train_and_generate() {  # PRECISION: a few ST updates, then beam search on the checkpoint
  local save=$WORK/st_$1 flag=()
  [ "$1" = fp32 ] || flag=(--"$1")
  "$PY" -m fairseq_cli.train "$WORK/data" --user-dir "$REPO/npy_tome_layer" \
    --task speech_and_text_translation --tgt-lang de --text-data "$WORK/data/mt" \
    --st-training --mt-finetune --hubert-model-path "$WORK/pretrained/hubert.pt" \
    --pretrained-deltalm-checkpoint "$WORK/pretrained/deltalm.pt" \
    "${ST_ARGS[@]}" \
    --max-update 4 --max-epoch 4 --no-epoch-checkpoints --disable-validation --save-dir "$save" \
    --log-interval 1 ${TRAIN_DEVICE[@]+"${TRAIN_DEVICE[@]}"} ${flag[@]+"${flag[@]}"} || return 1
  "$PY" - "$save/checkpoint_last.pt" <<'EOF' || return 1
import sys, torch
from npy_tome_layer.io.checkpoints import load_checkpoint  # weights-only, allow-listed
state = load_checkpoint(sys.argv[1])
history = state["optimizer_history"][-1]
print(f"checkpoint: {sys.argv[1]}, num_updates {history['num_updates']}")
assert history["num_updates"] >= 1
assert all(torch.isfinite(v.float()).all() for v in state["model"].values() if v.is_floating_point())
EOF
  "$PY" -m fairseq_cli.generate "$WORK/data" --user-dir "$REPO/npy_tome_layer" \
    --task speech_and_text_translation --tgt-lang de --gen-subset tst-COMMON \
    --path "$save/checkpoint_last.pt" --beam 4 --max-tokens 400000 --max-len-a 0 --max-len-b 20 \
    --required-batch-size-multiple 1 --scoring sacrebleu ${TRAIN_DEVICE[@]+"${TRAIN_DEVICE[@]}"} \
    ${flag[@]+"${flag[@]}"}
}
for precision in "${PRECISIONS[@]}"; do
  step "train_$precision" train_and_generate "$precision"
  wanted "train_$precision" || continue
  log=$WORK/logs/train_$precision.log
  loss=$(grep -oE "[| ]loss[ =]([0-9.]+(e[-+0-9]+)?|nan|inf)" "$log" | tail -n 1)
  bleu=$(grep -oE "BLEU = [0-9.]+" "$log" | tail -n 1)
  say "  $precision: last logged${loss:- loss not found}; generate: ${bleu:-no BLEU line}"
  case "$loss" in *nan*|*inf*|"") failed+=("loss_$precision") ;; esac
done

step benchmark "$PY" -m npy_tome_layer.tools.benchmark --out "$WORK/bench" "${BENCH[@]}"
if [ -f "$WORK/bench/benchmark.md" ]; then
  say ""
  cat "$WORK/bench/benchmark.md" >>"$SUMMARY"
  cp "$WORK/bench/results.json" "$RESULTS/results.json"
fi

step attention_paths "$PY" -m npy_tome_layer.tools.benchmark --out "$WORK/paths" "${PATHS[@]}"
if [ -f "$WORK/paths/benchmark.md" ]; then
  say ""
  cat "$WORK/paths/benchmark.md" >>"$SUMMARY"
  cp "$WORK/paths/results.json" "$RESULTS/attention_paths.json"
fi

say ""
if [ ${#failed[@]} -eq 0 ]; then
  say "finished in $((SECONDS - start)) s; failed: none"
else
  say "finished in $((SECONDS - start)) s; failed: ${failed[*]}"
fi
details=(logs)
for folder in bench paths grid_fp32 grid_fp16 grid_bf16; do [ ! -d "$WORK/$folder" ] || details+=("$folder"); done
tar -czf "$RESULTS/details.tar.gz" -C "$WORK" "${details[@]}"
echo "[gpu_check] wrote $SUMMARY, $RESULTS/results.json, $RESULTS/details.tar.gz" >&2
[ ${#failed[@]} -eq 0 ]
