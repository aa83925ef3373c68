#!/usr/bin/env bash
# make study: scripts/study.sh on the built-in corpus (setup as the demo's,
# scripts/demo_setup.sh), every mode x 3 seeds at the demo's sizes, once per
# HuBERT stand-in in STUDY_STANDINS (default "self_supervised supervised"),
# each in $CKPT_ROOT/en-TGT/study_STANDIN_UPDATES/ (the stand-in's training
# updates: HUBERT_PRETRAIN_UPDATES or PRETRAIN_UPDATES); prints the tables and the elapsed
# time. Environment: that of demo_setup.sh and study.sh (STUDY_MODES, SEEDS,
# STUDY_ARGS); AVERAGE_LAST 3 as the demo.
start=$SECONDS
# shellcheck source=scripts/demo_setup.sh
source "$(dirname "$0")/demo_setup.sh"
STANDINS=${STUDY_STANDINS:-self_supervised supervised}
for standin in $STANDINS; do standin_label "$standin" >/dev/null; done
for standin in $STANDINS; do
  build_standin "$standin"
  HUBERT=$(standin_path "$standin") STUDY_DIR=$CKPT_ROOT/en-$TGT/study_$(standin_label "$standin") \
    AVERAGE_LAST=${AVERAGE_LAST:-3} bash scripts/study.sh "$TGT"
done
for standin in $STANDINS; do
  echo
  echo "HuBERT stand-in: $standin ($(basename "$(standin_path "$standin")"))"
  cat "$CKPT_ROOT/en-$TGT/study_$(standin_label "$standin")/study.md"
done
echo "study finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
