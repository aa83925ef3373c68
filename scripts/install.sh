#!/usr/bin/env bash
# Install everything into $VENV (default .venv/, ignored by git) at the versions of
# requirements-lock.txt. Idempotent: a second run whose inputs (the lock,
# pyproject.toml, this script, TORCH_SPEC, TORCH_INDEX_URL) have not changed returns at once.
# Environment:
#   VENV             the environment to fill; made with $PYTHON -m venv when it has no bin/python
#   TORCH_SPEC       the torch to install (default: the lock's, torch==2.13.0); "keep": the
#                    environment's own torch (>= 2.6) stays, e.g. a CUDA build (a new venv is
#                    then made with --system-site-packages, to see it)
#   TORCH_INDEX_URL  the index torch comes from, e.g. https://download.pytorch.org/whl/cu126
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
LOCK=requirements-lock.txt
locked() {  # locked NAME: NAME's line in the lock ("name==version"), or one line and exit 2
  grep -i -m1 "^$1==" "$LOCK" || { echo "error: $LOCK pins no $1" >&2; exit 2; }
}
TORCH_SPEC=${TORCH_SPEC:-$(locked torch)}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
stamp="$VENV/.installed-$( { cat "$LOCK" pyproject.toml scripts/install.sh
                             echo "$TORCH_SPEC $TORCH_INDEX_URL"; } | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi

if [ ! -x "$VENV/bin/python" ]; then
  site=(); [ "$TORCH_SPEC" != keep ] || site=(--system-site-packages)  # where that torch lives
  "$PYTHON" -m venv "${site[@]}" "$VENV"
fi
# pip's own output (and its compilers') goes to a log; a failure prints its end
log=$VENV/install.log
: > "$log"
echo "[install] into $VENV/ (pip's output: $log)" >&2
pip() {
  "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >> "$log" 2>&1 || {
    local status=$?
    echo "error: pip $* failed (exit $status); the last lines of $log:" >&2
    tail -n 20 "$log" | sed 's/^/    /' >&2
    exit "$status"
  }
}
pip install --upgrade pip wheel setuptools
if [ "$TORCH_SPEC" = keep ]; then
  # the plugin reads checkpoints through torch.load's weights_only allow-list (torch >= 2.6)
  "$VENV/bin/python" -c 'import sys, torch
sys.exit(tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 6))' 2>/dev/null \
    || { echo "error: TORCH_SPEC=keep: $VENV/bin/python has no torch >= 2.6 to keep" >&2; exit 2; }
  echo "[install] torch: the environment's own, kept" >&2
else
  echo "[install] $TORCH_SPEC${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}" >&2
  # PyPI's Linux torch wheels are CUDA builds (several GB); the CPU build comes from
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu or an index that holds it
  index=(); [ -z "$TORCH_INDEX_URL" ] || index=(--index-url "$TORCH_INDEX_URL")
  pip install "${index[@]}" "$TORCH_SPEC"
fi
numpy=$(locked numpy)    # (assigned, not inline: a missing pin stops here)
cython=$(locked cython)
pip install "$numpy" "$cython"
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  fairseq=$(locked fairseq-fixed)
  echo "[install] $fairseq (builds its extensions against that torch, ~2 min)" >&2
  # --no-deps: its metadata wants torchaudio (no CPU build); its dependencies are in the lock
  pip install --no-build-isolation --no-deps "$fairseq"
fi
echo "[install] $LOCK and the plugin" >&2
# the rest of the lock: torch and fairseq-fixed are installed above, their own way
rest="$VENV/.lock-without-torch-and-fairseq.txt"
grep -v -i -E '^(torch|fairseq-fixed)==' "$LOCK" > "$rest"
pip install -r "$rest"
pip install --no-deps --no-build-isolation -e .

# Debian packages, installed with apt-get when run as root, else named in a warning:
# debian_packages WHAT CONSEQUENCE PACKAGE... (CONSEQUENCE: what is lost without them)
apt_updated=
debian_packages() {
  local what=$1 consequence=$2 package missing=()
  shift 2
  for package in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)" = installed ] \
      || missing+=("$package")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] $what (Debian packages): ${missing[*]}" >&2
    { [ -n "$apt_updated" ] || { apt-get update -qq && apt_updated=1; }; } \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "[install] warning: could not install ${missing[*]}; $consequence" >&2
  else
    echo "[install] warning: ${missing[*]} missing and not root; $consequence" >&2
  fi
}
# Debian's synthesizers speak the built-in demo corpus: espeak-ng, and flite and
# Festival voices recorded from real people, so held-out splits have speakers
# never heard in train (the corpus falls back to espeak-ng alone, with a warning).
debian_packages "speech synthesizers" \
  "the demo corpus falls back to espeak-ng voices (install them for its held-out voices)" \
  espeak-ng flite festival festvox-kdlpc16k festvox-us-slt-hts
# The linter of scripts/*.sh, run by make test (tests/test_scripts.py): without it that
# test fails when run as root (as CI is) and is skipped otherwise.
debian_packages "shell script linter" "the scripts' lint test cannot run" shellcheck
rm -f "$VENV"/.installed-*
touch "$stamp"
