"""Packaging by convention: pyproject.toml states lower bounds, so installing the
plugin into an environment that already has its own PyTorch (a CUDA build, another
version) keeps it; the exact versions live in requirements-lock.txt, which
scripts/install.sh installs, and its stamp follows the lock and the torch asked for."""
import email
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

PYPROJECT = tomllib.loads(Path(REPO, "pyproject.toml").read_text())
LOCK = Path(REPO, "requirements-lock.txt")
# the tools of the test suite and of the plots, which a user of the plugin need not install
TOOLS = {"pytest", "hypothesis", "matplotlib"}


def requirements(lines):
    return [Requirement(line) for line in lines]


def locked_versions():
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


@pytest.fixture(scope="module")
def built_metadata(tmp_path_factory):
    """The wheel metadata setuptools builds from pyproject.toml (its PEP 517 hook,
    as pip calls it; no network), from a copy of what the build reads."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(Path(REPO, name), source / name)
    shutil.copytree(Path(REPO, "npy_tome_layer"), source / "npy_tome_layer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("metadata")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; "
         "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))", str(out)],
        cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist_info = proc.stdout.strip().splitlines()[-1]
    return email.message_from_string((out / dist_info / "METADATA").read_text())


def test_the_built_metadata_keeps_an_installed_pytorch(built_metadata):
    runtime = [r for r in requirements(built_metadata.get_all("Requires-Dist")) if not r.marker]
    names = {canonicalize_name(r.name) for r in runtime}
    assert {"torch", "fairseq-fixed"} <= names
    for requirement in runtime:  # a bound, never a pin that would replace what is there
        assert all(s.operator == ">=" for s in requirement.specifier), str(requirement)
    torch, = [r for r in runtime if r.name == "torch"]
    # the torch of this environment, a CUDA build and the oldest one the loader supports
    for version in (metadata.version("torch"), "2.7.1+cu126", "2.6.0"):
        assert torch.specifier.contains(version), (str(torch), version)
    assert not torch.specifier.contains("2.5.1")  # torch.load's allow-list needs 2.6
    assert not names & TOOLS, names & TOOLS


def test_test_and_plot_tools_are_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {canonicalize_name(r.name) for r in requirements(extras["test"])} >= {
        "pytest", "hypothesis"}
    assert [r.name for r in requirements(extras["plot"])] == ["matplotlib"]
    runtime = {canonicalize_name(r.name) for r in requirements(PYPROJECT["project"]["dependencies"])}
    assert not runtime & TOOLS


def test_the_lock_pins_every_dependency_within_its_bounds():
    pins = locked_versions()
    project = PYPROJECT["project"]
    declared = requirements(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in requirements(extra)
        if canonicalize_name(r.name) != "npy-tome-layer"]
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in {LOCK.name}"
        assert requirement.specifier.contains(pins[name]), (str(requirement), pins[name])


def test_this_environment_has_the_locked_versions():
    """make installs the lock: what the suite runs with is what the lock says
    (torch here is the lock's, a local build label such as +cpu aside)."""
    for name, version in locked_versions().items():
        installed = Version(metadata.version(name))
        assert Version(installed.public) == version, (name, installed, version)


# --- scripts/install.sh, with a stand-in python that records what it is asked ---

def fake_install(tmp_path):
    """A copy of what install.sh reads, a venv whose python only records its command
    line (and finds fairseq and a torch >= 2.6 importable), and a dpkg-query that
    calls every Debian package installed, so no apt-get runs."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "requirements-lock.txt", "scripts/install.sh"):
        shutil.copy(Path(REPO, name), repo / name)
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    (venv_bin / "python").write_text(f'#!/usr/bin/env bash\necho "python $*" >> "{calls}"\n')
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "dpkg-query").write_text("#!/usr/bin/env bash\nprintf installed\n")
    for script in (venv_bin / "python", tools / "dpkg-query"):
        script.chmod(0o755)
    env = dict(os.environ, VENV=str(tmp_path / "venv"),
               PATH=f"{tools}{os.pathsep}{os.environ['PATH']}")
    env.pop("TORCH_SPEC", None)
    env.pop("TORCH_INDEX_URL", None)
    return repo, env, calls


def install(repo, env, calls, **variables):
    calls.write_text("")
    proc = subprocess.run(["bash", str(repo / "scripts" / "install.sh")], capture_output=True,
                          text=True, env=dict(env, **variables), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in calls.read_text().splitlines() if " pip " in line]


def test_install_takes_the_locked_torch_by_default_and_another_on_request(tmp_path):
    repo, env, calls = fake_install(tmp_path)
    pips = install(repo, env, calls)
    assert any(line.endswith("install torch==2.13.0") for line in pips), pips
    assert any("-e ." in line and "--no-deps" in line for line in pips), pips
    # nothing changed: the stamp says done, pip is not called
    assert install(repo, env, calls) == []
    cuda = install(repo, env, calls, TORCH_SPEC="torch==2.7.1",
                   TORCH_INDEX_URL="https://download.pytorch.org/whl/cu126")
    assert any(line.endswith("install --index-url https://download.pytorch.org/whl/cu126 "
                             "torch==2.7.1") for line in cuda), cuda
    assert not any("torch==2.13.0" in line for line in cuda)
    kept = install(repo, env, calls, TORCH_SPEC="keep")
    assert not any(" torch" in line.split(" install ")[-1] for line in kept), kept
    assert any("-r " in line for line in kept)


def test_a_changed_lock_reinstalls(tmp_path):
    repo, env, calls = fake_install(tmp_path)
    install(repo, env, calls)
    assert install(repo, env, calls) == []
    lock = repo / "requirements-lock.txt"
    lock.write_text(lock.read_text().replace("tqdm==", "tqdm==0.0.0\n# was tqdm=="))
    again = install(repo, env, calls)
    assert any("-r " in line for line in again), again
    stamps = list((tmp_path / "venv").glob(".installed-*"))
    assert len(stamps) == 1  # the old stamp is gone with the old lock


def test_keep_refuses_an_environment_without_a_recent_torch(tmp_path):
    repo, env, calls = fake_install(tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    # this python's torch import fails: pip works, `-c` programs exit 1
    python.write_text(f'#!/usr/bin/env bash\necho "python $*" >> "{calls}"\n'
                      '[ "$1" != -c ] || exit 1\n')
    proc = subprocess.run(["bash", str(repo / "scripts" / "install.sh")], capture_output=True,
                          text=True, env=dict(env, TORCH_SPEC="keep"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"error: TORCH_SPEC=keep: {tmp_path}/venv/bin/python has no torch >= 2.6 to keep")
    assert not list((tmp_path / "venv").glob(".installed-*"))


def test_pip_output_goes_to_a_log_and_a_failure_prints_its_end(tmp_path):
    repo, env, calls = fake_install(tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    # pip talks, and fails on torch
    python.write_text('#!/usr/bin/env bash\necho "pip says: $*"\n'
                      'case "$*" in *"install torch=="*) echo "no such wheel" >&2; exit 7 ;; esac\n')
    proc = subprocess.run(["bash", str(repo / "scripts" / "install.sh")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 7
    log = tmp_path / "venv" / "install.log"
    assert "pip says: -m pip --disable-pip-version-check -q install --upgrade pip" in log.read_text()
    assert "pip says" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert lines[-4] == f"error: pip install torch==2.13.0 failed (exit 7); the last lines of {log}:"
    assert lines[-1] == "    no such wheel"
    assert not list((tmp_path / "venv").glob(".installed-*"))
