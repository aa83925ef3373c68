#!/usr/bin/env bash
# Install everything into .venv/ (ignored by git). Idempotent: a second run
# whose inputs have not changed returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.installed-$(cat requirements.txt setup.py scripts/install.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
echo "[install] torch 2.13.0 (CPU wheel), numpy, cython" >&2
pip install --upgrade pip wheel setuptools
# Exactly torch==2.13.0: any other spec pulls a multi-GB CUDA build.
numpy=$(grep -i '^numpy==' requirements.txt)    # (assigned, not inline: a missing pin stops here)
cython=$(grep -i '^cython==' requirements.txt)
pip install torch==2.13.0 "$numpy" "$cython"
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  echo "[install] fairseq-fixed 0.12.3.1 (builds its extensions, ~2 min)" >&2
  # --no-deps: its metadata wants torchaudio (no CPU build); deps come from requirements.txt
  pip install --no-build-isolation --no-deps fairseq-fixed==0.12.3.1
fi
echo "[install] requirements.txt and the plugin" >&2
pip install -r requirements.txt
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
