"""The one-command GPU check, as far as it can run without a GPU: the offline
bundle (under 64 MiB, wheels that install on CPython 3.12) and
``DEVICE=cpu scripts/gpu_check.sh`` at tiny size end to end."""
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from .conftest import REPO, VENV_BIN

SCRIPTS = os.path.join(REPO, "scripts")


def _python312():
    for candidate in (shutil.which("python3.12"), "/root/.pyenv/versions/3.12.1/bin/python3.12"):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and "(3, 12)" in probe.stdout:
                return candidate
    return None


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "bundle"
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, "gpu_bundle.sh"), str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=900,
                          env=dict(os.environ, PY=os.path.join(VENV_BIN, "python")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def test_gpu_bundle_fits_and_its_wheels_install_on_python_312(bundle, tmp_path):
    names = sorted(os.listdir(bundle))
    assert "fairseq_fixed-0.12.3.1.tar.gz" in names
    for prefix in ("hydra_core-1.3.2-", "omegaconf-2.3.0-", "antlr4_python3_runtime-4.9.3-",
                   "bitarray-", "soundfile-", "cffi-", "pycparser-"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    packages = [n for n in names if n != "mustc"]
    for n in packages:
        assert n.endswith(".tar.gz") or "-cp312-" in n or "-none-" in n, n
    # speech for the check's training step (the GPU machine has no espeak-ng)
    assert (bundle / "mustc" / "en-de" / "data" / "train" / "txt" / "train.yaml").is_file()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(bundle) for f in fs)
    assert size < 64 * 2 ** 20, size
    py312 = _python312()
    if py312 is None:
        pytest.skip("no CPython 3.12 here to install the wheels into")
    # yaml and packaging are on the GPU machine; fetch them for this interpreter only
    extra = tmp_path / "extra"
    subprocess.run([os.path.join(VENV_BIN, "python"), "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux2014_x86_64", "-d", str(extra), "pyyaml==6.0.4",
                    "packaging==26.4"],
                   check=True, capture_output=True)
    site = tmp_path / "site"
    wheels = [str(bundle / n) for n in packages if n.endswith(".whl")] + \
        [str(extra / n) for n in os.listdir(extra)]
    subprocess.run([py312, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--target", str(site)] + wheels, check=True,
                   capture_output=True)
    # soundfile itself imports numpy (on the GPU machine too): load its libsndfile through cffi
    probe = subprocess.run([py312, "-c", "import hydra, omegaconf, antlr4, bitarray, cffi, glob, "
                            "os, _soundfile_data as d; "
                            "cffi.FFI().dlopen(glob.glob(os.path.join(os.path.dirname(d.__file__), "
                            "'libsndfile*'))[0]); print(hydra.__version__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(site)))
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split()[0] == "1.3.2"


def test_gpu_check_runs_on_the_cpu_at_tiny_size(bundle, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    # run from another directory, with the bundle's corpus as on a GPU machine
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, "gpu_check.sh")], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=1200,
                          env=dict(os.environ, DEVICE="cpu", OUT=str(out), WORK=str(work),
                                   BUNDLE=str(bundle), PY=os.path.join(VENV_BIN, "python")))
    summary = (out / "summary.md").read_text()
    assert proc.returncode == 0, summary[-4000:] + proc.stderr[-2000:]
    assert "- install: passed" in summary and "- cuda_tests: passed" in summary
    assert "- corpus: passed" in summary and "- train_fp32: passed" in summary
    assert "- benchmark: passed" in summary and "failed: none" in summary
    assert "- grid_fp32: passed" in summary and "| fairseq dense |" in summary
    assert json.loads((out / "grid_fp32.json").read_text())["rows"]
    # the cuda-marked tests ran on the CPU instead of being skipped
    tests_line = next(line for line in summary.splitlines() if line.startswith("cuda tests:"))
    assert "passed" in tests_line and "skipped" not in tests_line
    assert "BLEU = " in summary  # fairseq-generate ran on the checkpoint
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["group"] for r in rows} >= {"grid", "alternatives", "train_step"}
    assert "| fairseq dense |" in summary  # the training-step table
    assert "- attention_paths: passed" in summary
    paths = json.loads((out / "attention_paths.json").read_text())["rows"]
    assert {(r["group"], r["path"]) for r in paths} == {
        (group, path) for group in ("paths", "paths_train")
        for path in ("fairseq", "explicit", "fused")}
    assert "corpus from the bundle" in (work / "logs" / "corpus.log").read_text()
    with tarfile.open(out / "details.tar.gz") as tar:
        members = tar.getnames()
    assert "logs/train_fp32.log" in members and any(m.endswith(".png") for m in members)


def _script_array(text, name, branch):
    """The words of bash array NAME=(...) in the DEVICE=cpu (branch 0) or GPU (1) branch."""
    cpu, gpu = text.split('if [ "$DEVICE" = cpu ]; then', 1)[1].split("\nelse\n", 1)
    part = (cpu, gpu.split("\nfi\n", 1)[0])[branch]
    body = part.split(f"{name}=(", 1)[1].split(")", 1)[0]
    return body.split()


def test_gpu_plan_runs_the_grids_base_rows_in_fp16_and_bf16_before_training():
    text = open(os.path.join(SCRIPTS, "gpu_check.sh")).read()
    grid = " ".join(_script_array(text, "GRID", 1))
    assert "--grid --widths 768 --batches 1 8 32 --seconds 10 --rates 0.9 0.8" in grid
    assert "--device cuda" in grid and "--reductions" not in grid  # every rate-driven one
    assert _script_array(text, "GRID_PRECISIONS", 1) == ["fp16", "bf16"]
    # after the CUDA tests and before the training steps: a run cut short keeps the grid
    order = [text.index(s) for s in ('step cuda_tests', 'step "grid_$precision"',
                                     'step "train_$precision"', "step benchmark")]
    assert order == sorted(order)
    assert "--budget 120" in grid  # 2 x 2 minutes of the 10 minutes of device time


def test_gpu_check_runs_only_the_steps_asked_for(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, "gpu_check.sh")], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=900,
                          env=dict(os.environ, DEVICE="cpu", OUT=str(out), STEPS="grid",
                                   WORK=str(tmp_path / "work"),
                                   PY=os.path.join(VENV_BIN, "python")))
    summary = (out / "summary.md").read_text()
    assert proc.returncode == 0, summary[-4000:] + proc.stderr[-2000:]
    assert "- grid_fp32: passed" in summary and "failed: none" in summary
    assert "- train_fp32: not asked for" in summary and "- install: not asked for" in summary
    rows = json.loads((out / "grid_fp32.json").read_text())["rows"]
    assert {r["mode"] for r in rows} == {"fairseq dense", "prune", "uniform"}
    assert (out / "grid_fp32.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
