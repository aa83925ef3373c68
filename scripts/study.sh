#!/usr/bin/env bash
# Usage: scripts/study.sh TGT_LANG
# Every mode judged at its best: each mode in STUDY_MODES (names of
# $CONFIG_DIR/st_MODE.args; default baseline fixed local fold ctc) is trained
# for every seed in SEEDS (default 1 2) until dev BLEU stops rising - the mode's
# arguments, then $CONFIG_DIR/study.args (the study's stopping rule and its
# learning curves: validation on dev and tst-COMMON), then EXTRA_ARGS - and
# judged by one rule: fairseq's checkpoint_best.pt (best dev BLEU), evaluated on
# tst-COMMON as evaluate.sh does. python -m npy_tome_layer.tools.study then
# writes study.json, study.md, study.png, curves.png, positions.png and
# frames_by_length.png to $CKPT_ROOT/en-TGT/study/ (one run per RUN_seedS
# directory there, with its fairseq log, train.log). Re-running continues: a
# finished training (marker .trained) and evaluation output are kept.
# Two recipes: REDUCED_FROM (default baseline; empty: none) is trained first in
# every seed and every other mode starts from its best checkpoint of the same
# seed (train_st.sh's FINETUNE_FROM); each mode of FROM_STANDINS (default
# none) is trained again from the stand-ins, as the paper's recipe does, as
# the run MODE_from_standins. The training seed varies; --token-reduction-seed
# (the random baseline's frame choice) stays at its default unless EXTRA_ARGS
# sets it. STUDY_ARGS is appended to the report's arguments; STUDY_DIR
# replaces $CKPT_ROOT/en-TGT/study. The coverage mode's share
# (--pruning-coverage) is COVERAGE, or chosen on dev before its first run:
# the share at which the first seed's baseline keeps the frames the first
# seed's fixed keeps (tools/choose_coverage; written to $STUDY/coverage.txt
# and kept), so it compares at equal frames. STUDY_JOBS (default 1) trains
# that many seeds at once, each as its own process with an equal share of the
# CPU threads (OMP_NUM_THREADS, unless set): on a CPU a small model trains
# faster as two one-thread processes than as one two-thread process; a seed's
# coverage run waits for the first seed's choice.
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
TGT=${1:-}; check_lang "$TGT"
MODES=${STUDY_MODES:-baseline fixed local fold ctc}
SEEDS=${SEEDS:-1 2}
FROM_STANDINS=${FROM_STANDINS:-}
STUDY=${STUDY_DIR:-$CKPT_ROOT/en-$TGT/study}
BEST=checkpoint_best.pt  # the one rule every run is judged by: fairseq's best dev BLEU
OUTPUT=generate-${BEST%.pt}.txt  # its evaluation (evaluate.sh's name)
export MT_CHECKPOINT=${MT_CHECKPOINT:-$CKPT_ROOT/en-$TGT/mt/checkpoint_best.pt}
for mode in $MODES $FROM_STANDINS; do check_mode "$mode"; done
config_args STUDY_TRAINING "$CONFIG_DIR/study.args"
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
JOBS=${STUDY_JOBS:-1}; whole_number STUDY_JOBS "$JOBS" 1; JOBS=$((10#$JOBS))
first_seed_job=  # the first seed's process while seeds train at once
choose_coverage() {  # the coverage mode's --pruning-coverage, chosen once on dev
  if [ -n "${COVERAGE:-}" ] || [ -s "$STUDY/coverage.txt" ]; then return 0; fi
  if [ "$seed" != "$first_seed" ] && [ -n "$first_seed_job" ]; then
    # seeds at once: the first seed's process chooses it from its own runs
    while [ ! -s "$STUDY/coverage.txt" ] && kill -0 "$first_seed_job" 2>/dev/null; do sleep 5; done
    [ -s "$STUDY/coverage.txt" ] && return 0
    echo "error: seed $seed's coverage run: seed $first_seed ended without choosing the coverage" >&2
    exit 2
  fi
  for need in baseline fixed; do
    [ -f "$STUDY/${need}_seed$first_seed/$BEST" ] || {
      echo "error: the coverage mode needs the $need mode before it (STUDY_MODES), or COVERAGE" >&2
      exit 2; }
  done
  run "$PY" -m npy_tome_layer.tools.choose_coverage --data "$DATA_ROOT/en-$TGT" --subset dev \
    --checkpoint "$STUDY/baseline_seed$first_seed/$BEST" \
    --match "$STUDY/fixed_seed$first_seed/$BEST" > "$STUDY/coverage.txt.tmp"
  mv "$STUDY/coverage.txt.tmp" "$STUDY/coverage.txt"
}

# RUN_NAME MODE START_FROM SEED: train (until dev BLEU stops rising) and evaluate
# one run, or keep what a finished one left
study_run() {
  local name=$1 mode=$2 start_from=$3 seed=$4 dir mode_args="" coverage started
  dir=$STUDY/${name}_seed$seed
  local ckpt=$dir/$BEST out=$dir/$OUTPUT
  if [ -f "$out" ]; then
    echo "[study] $name seed $seed: $out exists, kept" >&2
  else
    # a finished run is not trained again: fairseq does not keep its early-stopping
    # count, so a restarted run would train on past its stopping point
    if [ ! -f "$dir/.trained" ]; then
      if [ "$mode" = coverage ]; then
        choose_coverage  # not inside $(...): a failure there must stop the study
        coverage=${COVERAGE:-$(awk '{print $2}' "$STUDY/coverage.txt")}
        [ -n "$coverage" ] || { echo "error: $STUDY/coverage.txt names no coverage" >&2; exit 2; }
        mode_args="--pruning-coverage $coverage"
      fi
      mkdir -p "$dir"
      started=$SECONDS
      # fairseq's log, kept: its validation lines are the run's learning curve
      ST_DIR=$dir EXTRA_ARGS="${STUDY_TRAINING[*]} $EXTRA_ARGS --seed $seed $mode_args" \
        FINETUNE_FROM=$start_from bash "$REPO/scripts/train_st.sh" "$TGT" "$mode" 2>&1 \
        | tee -a "$dir/train.log"
      echo "[study] training took $((SECONDS - started)) s" >> "$dir/train.log"
      touch "$dir/.trained"
    fi
    bash "$REPO/scripts/evaluate.sh" "$TGT" "$ckpt"
  fi
}

train_seed() {  # SEED: every mode of one seed, in order
  local seed=$1 mode start_from
  for mode in $MODES; do
    start_from=
    if [ -n "$REDUCED_FROM" ] && [ "$mode" != "$REDUCED_FROM" ]; then
      start_from=$STUDY/${REDUCED_FROM}_seed$seed/$BEST
    fi
    study_run "$mode" "$mode" "$start_from" "$seed"
  done
  for mode in $FROM_STANDINS; do
    study_run "${mode}_from_standins" "$mode" "" "$seed"
  done
}

if [ "$JOBS" -eq 1 ]; then
  # seeds outermost: an interrupted study has every mode at the first seeds
  for seed in $SEEDS; do train_seed "$seed"; done
else
  # each seed's share of the threads, for its trainings only (the report after them
  # decodes and times with the machine's threads)
  threads=${OMP_NUM_THREADS:-$(( $(nproc) / JOBS ))}; threads=$(( threads > 0 ? threads : 1 ))
  jobs_running=() failed=()
  # a background job of a script ignores Ctrl-C, and killing it would orphan its
  # training: however the study ends, what its seeds started ends with it
  kill_tree() { local child; for child in $(pgrep -P "$1"); do kill_tree "$child"; done; kill "$1" 2>/dev/null || true; }
  end_seeds() { local job; for job in "${jobs_running[@]}"; do kill_tree "${job#*:}"; done; }
  trap end_seeds EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  wait_oldest() { wait "${jobs_running[0]#*:}" || failed+=("${jobs_running[0]%%:*}"); jobs_running=("${jobs_running[@]:1}"); }
  for seed in $SEEDS; do
    while [ "${#jobs_running[@]}" -ge "$JOBS" ]; do wait_oldest; done  # a slot for the next seed
    (export OMP_NUM_THREADS=$threads; train_seed "$seed") &
    [ -n "$first_seed_job" ] || first_seed_job=$!
    jobs_running+=("$seed:$!")
  done
  while [ "${#jobs_running[@]}" -gt 0 ]; do wait_oldest; done
  trap - EXIT INT TERM
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "error: the study's seed(s) ${failed[*]} failed (their lines above); finished runs are kept" >&2
    exit 1
  fi
fi
run_names=$MODES
for mode in $FROM_STANDINS; do run_names+=" ${mode}_from_standins"; done
runs=()
for seed in $SEEDS; do
  for name in $run_names; do
    dir=$STUDY/${name}_seed$seed
    runs+=(--run "$name" "$seed" "$dir/$BEST" "$dir/$OUTPUT" --log "$name" "$seed" "$dir/train.log")
  done
done
read -r -d '' -a study_args <<< "${STUDY_ARGS:-}" || true  # words, never file patterns
LENPEN=$(awk -v l="$TGT" '$1 == l {print $2}' "$REPO/configs/lenpen.tsv")
device_args=(); [ "$DEVICE" = cpu ] && device_args=(--cpu)
# the no-audio floor decodes as evaluate.sh does (configs' generate.args: beam 8)
run "$PY" -m npy_tome_layer.tools.study --data "$DATA_ROOT/en-$TGT" --subset tst-COMMON \
  --out "$STUDY" --beam 8 --lenpen "$LENPEN" "${device_args[@]}" "${runs[@]}" "${study_args[@]}"
