#!/usr/bin/env bash
# make study: scripts/study.sh on the built-in corpus (setup as the demo's,
# scripts/demo_setup.sh), every mode x 3 seeds at the demo's sizes; prints
# the table and the elapsed time. Environment: that of demo_setup.sh and
# study.sh (STUDY_MODES, SEEDS, STUDY_ARGS); AVERAGE_LAST 3 as the demo.
start=$SECONDS
source "$(dirname "$0")/demo_setup.sh"
AVERAGE_LAST=${AVERAGE_LAST:-3} bash scripts/study.sh "$TGT"
echo "study finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
