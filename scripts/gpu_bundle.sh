#!/usr/bin/env bash
# Usage: scripts/gpu_bundle.sh [DIR]   (default .gpu_bundle/, ignored by git)
# On a machine with pip access, fill DIR with what a bare GPU machine (Python
# 3.12, PyTorch with CUDA, no package index) lacks to run scripts/gpu_check.sh:
# fairseq-fixed's sdist (built there against its own torch) and the wheels of
# fairseq's dependencies that such a machine does not have, for CPython 3.12 on
# manylinux x86-64 (pure-Python sdists are turned into wheels here), and a tiny
# demo corpus in the MuST-C layout (mustc/en-de: the GPU machine has no speech
# synthesizer) for the check's training step.
# Fails if DIR would exceed 64 MiB (it travels with a copy of the repository).
set -euo pipefail
# paths given relative to where the script was called from
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(absolute "${1:-$REPO/.gpu_bundle}")
PY=${PY:-$REPO/.venv/bin/python}
case "$PY" in */*) PY=$(absolute "$PY") ;; esac
[ -x "$PY" ] || PY=python3
cd "$REPO"
# Pinned as in requirements-lock.txt where it pins them; hydra-core 1.3.2 needs antlr 4.9.*.
PURE=(hydra-core==1.3.2 omegaconf==2.3.0 pycparser==3.12)
BINARY=(bitarray==3.12.3 cffi==2.1.1 soundfile==0.14.0)
SDIST_WHEELS=(antlr4-python3-runtime==4.9.3)
FAIRSEQ=fairseq-fixed==0.12.3.1
LIMIT_MIB=64

rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp"
pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do platforms+=(--platform "$p"); done
echo "[bundle] wheels for CPython 3.12, manylinux x86-64" >&2
pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$DIR.tmp" "${BINARY[@]}" "${PURE[@]}"
echo "[bundle] pure-Python wheels built from sdists: ${SDIST_WHEELS[*]}" >&2
pip wheel --no-deps --no-binary=:all: -w "$DIR.tmp" "${SDIST_WHEELS[@]}"
echo "[bundle] $FAIRSEQ sdist (built on the GPU machine: its extensions need that torch)" >&2
pip download --no-deps --no-binary=:all: --no-build-isolation -d "$DIR.tmp" "$FAIRSEQ"
echo "[bundle] demo corpus (synthesized speech) for the check's few training updates" >&2
"$PY" -m npy_tome_layer.demo.corpus "$DIR.tmp/mustc" --tgt-lang de --train-talks 1 \
  --segments-per-talk 8 >/dev/null
for whl in "$DIR.tmp"/*.whl; do
  case "$(basename "$whl")" in
    *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp312-*manylinux*x86_64*.whl|*-py3-none-manylinux*x86_64*.whl|*-py2.py3-none-manylinux*x86_64*.whl) ;;
    *) echo "error: $(basename "$whl") is not for CPython 3.12 on manylinux x86-64" >&2; exit 1 ;;
  esac
done
size_kib=$(du -sk "$DIR.tmp" | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
  echo "error: bundle is $((size_kib / 1024)) MiB, over the ${LIMIT_MIB} MiB that travels" >&2; exit 1
fi
rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
entries=("$DIR"/*)
echo "[bundle] $DIR: ${#entries[@]} entries, $((size_kib / 1024)) MiB" >&2
ls "$DIR"
