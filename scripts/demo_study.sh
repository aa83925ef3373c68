#!/usr/bin/env bash
# make study: scripts/study.sh on the built-in corpus at the study's size - TRAIN_TALKS 12,
# DEV_TALKS 4, TEST_TALKS 16 talks of SEGMENTS 40 sentences (480 / 160 / 640 sentences; dev and
# tst-COMMON held out, by voices never heard in train) - set up as the demo's
# (scripts/demo_setup.sh) in WORK (default study_work: the demo's corpus is smaller), once per
# HuBERT stand-in in STUDY_STANDINS (default self_supervised; supervised too), each in
# $CKPT_ROOT/en-TGT/study_STANDIN_UPDATES/. Every mode of STUDY_MODES x SEEDS trains until dev
# BLEU stops rising (configs/demo/study.args); prints the tables and the elapsed time.
# Environment: that of demo_setup.sh and study.sh (STUDY_MODES, SEEDS, FROM_STANDINS,
# REDUCED_FROM, STUDY_ARGS, STUDY_JOBS: on a CPU by default as many seeds at once as it has
# cores).
start=$SECONDS
export WORK=${WORK:-study_work} TRAIN_TALKS=${TRAIN_TALKS:-12} DEV_TALKS=${DEV_TALKS:-4}
export TEST_TALKS=${TEST_TALKS:-16} SEGMENTS=${SEGMENTS:-40}
# shellcheck source=scripts/demo_setup.sh
source "$(dirname "$0")/demo_setup.sh"
STANDINS=${STUDY_STANDINS:-self_supervised}
if [ -z "${STUDY_JOBS:-}" ]; then  # on a CPU, the seeds at once: one process per core
  read -r -d '' -a seed_list <<< "${SEEDS:-1 2}" || true
  cores=$(nproc)
  device=${DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
  STUDY_JOBS=1
  [ "$device" = cpu ] && STUDY_JOBS=$(( cores < ${#seed_list[@]} ? cores : ${#seed_list[@]} ))
  export STUDY_JOBS=$(( STUDY_JOBS > 0 ? STUDY_JOBS : 1 ))
fi
for standin in $STANDINS; do standin_label "$standin" >/dev/null; done
for standin in $STANDINS; do
  build_standin "$standin"
  HUBERT=$(standin_path "$standin") STUDY_DIR=$CKPT_ROOT/en-$TGT/study_$(standin_label "$standin") \
    bash scripts/study.sh "$TGT"
done
for standin in $STANDINS; do
  echo
  echo "HuBERT stand-in: $standin ($(basename "$(standin_path "$standin")"))"
  cat "$CKPT_ROOT/en-$TGT/study_$(standin_label "$standin")/study.md"
done
echo "study finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
