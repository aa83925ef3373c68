# shellcheck shell=bash
# Sourced by demo_setup.sh: the demo's steps as stages. A stage prints one line when
# it starts (with the path of its log) and one when it ends (with its duration);
# everything its commands print goes to the log, but for this project's own warnings
# (lines starting "warning: "), which are shown after the stage's end line.
#   stage NAME TITLE COMMAND...   runs COMMAND (a program or a shell function) with
#                                 its output in $LOGS/NAME.log; TITLE is what the lines say
# A stage that trains shows its progress: the updates done (the log's last
# num_updates) of those asked for (the last --max-update of the command line the
# scripts print, "+ ... fairseq-train ..."), in place on a terminal, else one line
# as it passes a quarter, a half and three quarters of them (so the count of lines
# does not grow on a slow machine). A failing stage prints the last LOG_TAIL (20)
# lines of its log and the log's path, and the calling script stops with its status.
# Needs LOGS (a folder) and STAGES_START (the $SECONDS the lines count from).
LOG_TAIL=${LOG_TAIL:-20}
case "$LOG_TAIL" in
  ''|*[!0-9]*) echo "error: LOG_TAIL must be a whole number, got '${LOG_TAIL//[![:print:]]/?}'" >&2
               exit 2 ;;
esac

# minutes and seconds: 75 -> "1 min 15 s", 9 -> "9 s"
duration() {
  if [ "$1" -ge 60 ]; then echo "$(($1 / 60)) min $(($1 % 60)) s"; else echo "$1 s"; fi
}

# the line prefix: time since the demo started, as [ m:ss]
stage_clock() {
  local t=$((SECONDS - STAGES_START))
  printf '[%3d:%02d]' $((t / 60)) $((t % 60))
}

# a path as the user typed it: relative to the current folder where it is inside it
shown_path() { case "$1" in "$PWD"/*) echo "${1#"$PWD"/}" ;; *) echo "$1" ;; esac; }

# "UPDATES TOTAL" of the training the log shows, or nothing before it starts
training_counts() {
  local total updates
  total=$(sed -n 's/^+ .*--max-update \([0-9][0-9]*\).*/\1/p' "$1" | tail -n 1)
  updates=$(grep -o 'num_updates[ =][0-9]*' "$1" | tail -n 1 | tr -dc 0-9)
  [ -z "$total" ] || [ "$total" -eq 0 ] || echo "$((10#${updates:-0})) $((10#$total))"
}

# watch_progress LOG TITLE: until killed, or the script that started it ends
# (an interrupted demo: a background job ignores the terminal's Ctrl-C), the
# training progress of LOG
watch_progress() {
  local counts updates total quarter shown=0
  while sleep 2 && kill -0 $$ 2>/dev/null; do
    counts=$(training_counts "$1" 2>/dev/null) || true
    [ -n "$counts" ] || continue
    read -r updates total <<< "$counts"
    if [ -t 1 ]; then
      printf '\r\033[K%s %s: %s/%s updates' "$(stage_clock)" "$2" "$updates" "$total"
    else
      quarter=$((updates * 4 / total))
      if [ "$quarter" -gt "$shown" ] && [ "$quarter" -lt 4 ]; then
        echo "$(stage_clock) $2: $updates/$total updates"
        shown=$quarter
      fi
    fi
  done
}

stage() {
  local name=$1 title=$2 log began=$SECONDS status watcher
  shift 2
  log=$LOGS/$name.log
  echo "$(stage_clock) $title ... (log: $(shown_path "$log"))"
  watch_progress "$log" "$title" &
  watcher=$!
  # the commands under set -e of their own (a function's failing line stops it),
  # and this shell past their failure to report it
  set +e
  (set -e; "$@") > "$log" 2>&1
  status=$?
  set -e
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  [ ! -t 1 ] || printf '\r\033[K'
  if [ "$status" -ne 0 ]; then
    echo "$(stage_clock) $title: FAILED (exit $status) after $(duration $((SECONDS - began)));" \
      "the last lines of its log:"
    tail -n "$LOG_TAIL" "$log" | sed 's/^/    /'
    echo "full log: $(shown_path "$log")"
    exit "$status"
  fi
  echo "$(stage_clock) $title: done in $(duration $((SECONDS - began)))"
  # this project's own warnings ("warning: ..."), which concern the user, stay in view
  grep '^warning: ' "$log" | sed 's/^/    /' || true
}
