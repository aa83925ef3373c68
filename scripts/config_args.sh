# shellcheck shell=bash
# Sourced by env.sh (every per-pair script) and gpu_check.sh.
# config_args NAME FILE...: the arguments of the config files, in order, into
# the array NAME. One argument group per line; a line whose first non-blank
# character is # is a comment; words are split at blanks (a carriage return is
# one), nothing is quoted, expanded or taken as a file pattern. Every file is
# read before NAME is set; a missing, non-regular or unreadable file stops the
# script with one line naming it, exit 2. Call it in the main shell (not inside
# $(...) or a pipeline), where its exit ends the script.
config_args() {
  local -n config_args_into=$1
  local config_args_file config_args_why config_args_line config_args_lines config_args_words
  local config_args_all=()
  shift
  for config_args_file in "$@"; do
    config_args_why=
    if [ ! -e "$config_args_file" ]; then
      config_args_why="not found"  # a dangling link included
    elif [ ! -f "$config_args_file" ]; then
      config_args_why="is not a file"
    elif ! mapfile -t config_args_lines 2>/dev/null < "$config_args_file"; then
      config_args_why="cannot be read"
    fi
    if [ -n "$config_args_why" ]; then
      echo "error: config file $config_args_file $config_args_why" >&2
      exit 2
    fi
    for config_args_line in ${config_args_lines[@]+"${config_args_lines[@]}"}; do
      [[ $config_args_line =~ ^[[:space:]]*# ]] && continue
      IFS=$' \t\r' read -r -a config_args_words <<< "$config_args_line"
      config_args_all+=(${config_args_words[@]+"${config_args_words[@]}"})
    done
  done
  # shellcheck disable=SC2034  # a name reference: this sets the caller's array NAME
  config_args_into=(${config_args_all[@]+"${config_args_all[@]}"})
}
