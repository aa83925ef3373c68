"""The per-pair shell scripts as a user runs them: 2-worker CPU training over
gloo with fairseq's own torch.distributed support, on one node and on two, the whole demo end to end
at the smallest size, per-language length penalties, and argument errors."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from .conftest import REPO, TINY_DELTALM, VENV_BIN
from .test_probe_five import ended

SCRIPTS = os.path.join(REPO, "scripts")


def run_script(name, args, env, check=True):
    full_env = dict(os.environ, PY=os.path.join(VENV_BIN, "python"), **env)
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, name)] + list(args),
                          capture_output=True, text=True, env=full_env, cwd=REPO,
                          timeout=900)  # a hung worker fails the test, not CI
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture
def pair_env(st_corpus, mt_checkpoint, tmp_path):
    """Environment for scripts/*.sh over the test corpus (DATA_ROOT/en-de)."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    os.symlink(st_corpus["data"], data_root / "en-de")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "st.args").write_text(
        "# tiny sizes\n" + " ".join(TINY_DELTALM) + "\n--conv-channels 32\n"
        "--criterion speech_and_text_translation --label-smoothing 0.1 --optimizer adam --lr 1e-3\n"
        "--max-tokens 100000 --max-tokens-text 300 --max-update 3 --required-batch-size-multiple 1\n"
        "# worker-batches per update over all workers, as configs/mustc\n--update-freq 2\n"
        "--valid-subset dev --no-epoch-checkpoints --log-format simple --log-interval 1 --seed 1\n"
        '--eval-bleu --eval-bleu-args {"beam":2} --best-checkpoint-metric bleu '
        "--maximize-best-checkpoint-metric --ddp-backend legacy_ddp\n")
    for name in ("st_fixed.args", "study.args"):
        shutil.copy(os.path.join(REPO, "configs", "mustc", name), configs / name)
    return {"DATA_ROOT": str(data_root), "CKPT_ROOT": str(tmp_path / "ckpt"),
            "CONFIG_DIR": str(configs), "HUBERT": st_corpus["hubert"],
            "MT_CHECKPOINT": mt_checkpoint[0], "DEVICE": "cpu"}


def test_two_cpu_workers_over_gloo_on_one_node_and_on_two(pair_env, tmp_path):
    proc = run_script("train_st.sh", ["de", "fixed"], dict(pair_env, NPROC="2"))
    log = proc.stdout + proc.stderr
    # the script prints what it runs: torchrun on fairseq's own distributed options
    assert re.search(r"\+ \S*torchrun --standalone --nproc_per_node 2 --no-python "
                     r"\S*fairseq_train_worker.sh", log)
    assert "--distributed-backend gloo --distributed-init-method env:// --distributed-no-spawn " \
           "--ddp-backend legacy_ddp" in log
    assert "distributed init (rank 0)" in log and "distributed init (rank 1)" in log
    assert "training on 2 devices" in log
    assert re.search(r"num_updates 3\b", log)
    # the config's 2 worker-batches per update are 1 per worker on 2 workers
    assert re.search(r"--update-freq 1 ", log) and "--update-freq 2" not in log
    # the paper's flags: the MT loss of the transcripts, dev BLEU selects the best checkpoint
    assert re.search(r"\| train \|.* st_loss [0-9.]+ \| mt_loss [0-9.]+", log)
    assert re.search(r"\| valid on 'dev' subset \|.* bleu [0-9.]+", log)
    one_node = tmp_path / "ckpt" / "en-de" / "st_fixed"
    assert os.path.isfile(one_node / "checkpoint_best.pt")
    assert os.path.isfile(one_node / "checkpoint_last.pt")

    # the same run as two "machines" of one worker each, meeting at 127.0.0.1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = []
    for rank in (0, 1):
        env = dict(os.environ, PY=os.path.join(VENV_BIN, "python"), **dict(
            pair_env, NPROC="1", NNODES="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port), CKPT_ROOT=str(tmp_path / f"node{rank}")))
        nodes.append(subprocess.Popen(["bash", os.path.join(SCRIPTS, "train_st.sh"), "de", "fixed"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=env, cwd=REPO))
    try:
        logs = [p.communicate(timeout=900)[0] for p in nodes]
    finally:
        for p in nodes:
            p.kill()
    for rank, (p, node_log) in enumerate(zip(nodes, logs)):
        assert p.returncode == 0, node_log[-4000:]
        assert re.search(rf"\+ \S*torchrun --nnodes 2 --node_rank {rank} --master_addr 127.0.0.1 "
                         rf"--master_port {port} --nproc_per_node 1 ", node_log)
        assert "--distributed-world-size 2 " in node_log and "--update-freq 1 " in node_log
    assert "training on 2 devices" in logs[0] and re.search(r"num_updates 3\b", logs[0])
    # they trained as one: the parameters equal those of the one-node run
    two_nodes = torch.load(tmp_path / "node0" / "en-de" / "st_fixed" / "checkpoint_last.pt",
                           weights_only=True)["model"]
    reference = torch.load(one_node / "checkpoint_last.pt", weights_only=True)["model"]
    assert two_nodes.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(two_nodes[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # only rank 0 writes checkpoints; node 1 saved nothing
    assert not list((tmp_path / "node1").rglob("*.pt"))


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """make demo's scripts at the smallest size: (environment, demo output)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    work = tmp_path / "demo"
    configs = tmp_path / "configs"
    shutil.copytree(os.path.join(REPO, "configs", "demo"), configs)
    with open(configs / "mt.args", "a") as f:
        f.write("--max-update 5\n")
    with open(configs / "st.args", "a") as f:
        # 12 sentences in batches of 4: 3 updates an epoch, 3 epochs to average
        f.write("--max-update 9 --batch-size 4\n")
    with open(configs / "finetune.args", "a") as f:  # the reduced modes, from the dense run
        f.write("--max-update 9\n")
    with open(configs / "study.args", "a") as f:  # validated every epoch, stopped at 2 or 4
        f.write("--max-update 6 --validate-interval-updates 2 --save-interval-updates 2 "
                "--patience 1\n")
    env = {"WORK": str(work), "HUBERT_SIZE": "tiny", "TRAIN_TALKS": "3", "SEGMENTS": "4",
           "PRETRAIN_UPDATES": "3", "HUBERT_PRETRAIN_UPDATES": "3", "KMEANS_CLUSTERS": "8",
           "NPROC": "1", "CONFIG_DIR": str(configs)}
    proc = run_script("demo.sh", [], dict(
        env, SWEEP="1", SWEEP_REDUCTIONS="prune adjacent",
        SWEEP_ARGS="--rates 1.0 0.8 --init-layers 0 --repeats 1 --beam 2",
        COMPARE_ARGS="--reference-size tiny --repeats 1"))
    return env, proc


def demo_logs(work):
    return "".join(path.read_text() for path in sorted((Path(work) / "logs").glob("*.log")))


def test_demo_end_to_end_at_the_smallest_size(tiny_demo):
    env, proc = tiny_demo
    work = Path(env["WORK"])
    out = proc.stdout + proc.stderr + demo_logs(work)  # each step's output is in its log
    # every step a MuST-C user runs, through the same scripts, and the stand-in
    # HuBERT pre-training (self-supervised) that the ST modes start from
    for step in ("prepare_mustc", "fairseq-train", "average_checkpoints", "fairseq-generate",
                 "compare_runs", "standins --out", "sweep", "hubert_labels"):
        assert f"{step} " in out, step
    assert "--task hubert_pretraining" in out and "--hubert-from-st" not in out
    hubert = work / "pretrained_tiny" / "hubert_self_supervised_3.pt"
    assert os.path.isfile(hubert)
    assert len(re.findall(rf"fairseq-train .*--hubert-model-path {hubert}", out)) == 3
    # the reduced modes start from the dense run's average, with finetune.args
    dense = work / "checkpoints_tiny" / "en-de" / "st_baseline" / "avg_last_3.pt"
    started = re.findall(r"fairseq-train .*--save-dir \S*/st_(\w+) .*--finetune-from-model (\S+) "
                         r"--max-update 200 --lr 1e-3 --warmup-updates 20 --max-update 9", out)
    assert started == [("fixed", str(dense)), ("schedule", str(dense))], out[-3000:]
    assert re.search(r"en-de st_baseline/avg_last_3.pt lenpen 1.2: Generate tst-COMMON with "
                     r"beam=8: BLEU = [0-9.]+", out)
    rows = {m["mode"]: m for m in re.finditer(
        r"^\| (?P<mode>baseline|fixed|schedule) \| (?:dense|[a-z]+ (?P<rate>[0-9.]+) \(from 0\)) "
        r"\| (?P<bleu>[0-9.]+) \| (?P<distinct>\d+) % \| (?P<no_audio>[0-9.]+) "
        r"\| (?P<listens>yes|NO \([a-z ]+\)) \| (?P<kept>\d+)/(?P<frames>\d+) "
        r"\(([0-9.]+) %\) \| (?P<into_deltalm>[0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+)x "
        r"\| (?P<base>[0-9.]+)x \|$",
        proc.stdout, flags=re.M)}
    assert set(rows) == {"baseline", "fixed", "schedule"}, proc.stdout[-2000:]
    base, fixed = rows["baseline"], rows["fixed"]
    assert base["rate"] is None and fixed["rate"] == "0.9"  # dense, prune 0.9
    assert base["kept"] == base["frames"] and base["frames"] == fixed["frames"]
    # tiny HuBERT has 3 layers: each utterance keeps ceil(0.9 ceil(0.9 ceil(0.9 n))) frames
    assert int(fixed["kept"]) < 0.75 * int(fixed["frames"]) + 6 * 3
    assert int(fixed["kept"]) < int(base["kept"])
    assert float(fixed["into_deltalm"]) < float(base["into_deltalm"])  # frames DeltaLM reads
    # the speedup of the same frames at a reference size: dense is 1, fixed is measured
    assert float(base["base"]) == 1.0 and float(fixed["base"]) > 0
    # each BLEU beside its floor: 4 test utterances, so a share of distinct hypotheses
    # is a multiple of 25 %; a few updates from tiny stand-ins do not listen
    for row in rows.values():
        assert int(row["distinct"]) % 25 == 0 and 0 <= float(row["no_audio"]) <= 100
    assert "most frequent target for every utterance scores" in proc.stdout
    # the inference-time sweep of the dense checkpoint (SWEEP_MODES), and the elapsed time
    records = json.loads((work / "sweep_baseline" / "sweep.json").read_text())
    assert [(r["reduction"], r["rate"], r["init_layer"]) for r in records] == [
        ("prune", 1.0, 0), ("prune", 0.8, 0), ("adjacent", 1.0, 0), ("adjacent", 0.8, 0)]
    assert not (work / "sweep_fixed").exists()
    assert re.search(r"^demo finished in \d+ min \d+ s$", proc.stdout, flags=re.M)


def test_the_demo_prints_a_line_when_each_stage_starts_and_ends(tiny_demo):
    """The terminal gets one line when a stage starts (naming its log) and one when it
    ends, then the tables, where the plots and logs are, and the elapsed time: no
    library's output, no warning."""
    env, proc = tiny_demo
    work = Path(env["WORK"])
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    besides_tables = [line for line in lines if line.strip() and not line.startswith("|")]
    assert len(besides_tables) <= 60, "\n".join(besides_tables)
    started = re.findall(r"^\[ *\d+:\d\d\] (.+) \.\.\. \(log: (\S+)\)$", proc.stdout, flags=re.M)
    ended = re.findall(r"^\[ *\d+:\d\d\] (.+): done in \d+ (?:min \d+ )?s$", proc.stdout, flags=re.M)
    assert [title for title, _ in started] == ended
    names = [Path(log).stem for _, log in started]
    assert names[:5] == ["standins", "corpus", "prepare", "train_mt", "hubert_self_supervised_3"]
    for mode in ("baseline", "fixed", "schedule"):
        assert [f"train_st_{mode}", f"average_{mode}", f"evaluate_{mode}"] == \
            names[names.index(f"train_st_{mode}"):][:3]
    assert names[-3:] == ["compare", "plots", "sweep_baseline"]
    for _, log in started:
        assert (work / "logs" / Path(log).name).is_file() and log.startswith(str(work))
    assert "warning" not in proc.stdout.lower()
    # the DataLoader's pin_memory notice on a CPU, fairseq's deprecated calls: silenced
    # where they arise, not only kept off the terminal
    logs = demo_logs(work)
    assert "fairseq-train" in logs and "num_updates" in logs
    for noise in ("pin_memory", "FutureWarning", "hydra.experimental", "version_base"):
        assert noise not in logs, noise
    for mode in ("baseline", "fixed", "schedule"):
        assert (work / "plots" / f"kept_frames_{mode}.png").read_bytes()[:4] == b"\x89PNG"
    assert f"plots: {work}/plots/kept_frames_MODE.png" in proc.stdout
    assert f"{work}/sweep_baseline/sweep.png" in proc.stdout


def run_stages(tmp_path, commands, **env):
    """stage.sh alone: a script of stages whose commands are shell snippets."""
    script = tmp_path / "stages.sh"
    script.write_text("set -euo pipefail\nsource scripts/stage.sh\n" + commands)
    full_env = dict(os.environ, LOGS=str(tmp_path), STAGES_START="0", **env)
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=REPO,
                          env=full_env, timeout=60)


def test_a_training_stage_shows_its_updates(tmp_path):
    """Off a terminal, one progress line as a training passes a quarter, a half and
    three quarters of its updates (the log's last num_updates of the last
    --max-update of the command line the scripts print): as many lines on a slow
    machine as on a fast one."""
    proc = run_stages(tmp_path, """train() {
  echo '+ fairseq-train data --max-update 200 --lr 1 --max-update 8' >&2
  for n in 1 2 3 6 7; do echo "| epoch 001:  $n / 8 loss=2.1, num_updates=$n, lr=0.1"; sleep 2.5; done
}
stage train "training" train
""")
    assert proc.returncode == 0, proc.stderr
    progress = re.findall(r"^\[ *\d+:\d\d\] training: (\d+/\d+) updates$", proc.stdout, flags=re.M)
    assert progress == ["2/8", "6/8"], proc.stdout
    assert re.search(r"\] training: done in 1[2-6] s$", proc.stdout.splitlines()[-1]), proc.stdout
    assert "num_updates=7" in (tmp_path / "train.log").read_text()


def test_a_failing_stage_prints_its_last_log_lines_and_the_log(tmp_path):
    proc = run_stages(tmp_path, """fail() { seq 1 30; echo "error: what went wrong" >&2; return 3; }
stage one "the first step" fail
stage two "never reached" true
""")
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert re.match(r"\[ *\d+:\d\d\] the first step: FAILED \(exit 3\) after \d+ s; the last "
                    r"lines of its log:$", lines[1]), lines
    assert lines[2:22] == [f"    {n}" for n in range(12, 31)] + ["    error: what went wrong"]
    assert lines[22:] == [f"full log: {tmp_path}/one.log"]
    assert "never reached" not in proc.stdout


@pytest.mark.parametrize("nproc,nnodes,total,per_worker", [
    ("1", "1", "8", "8"), ("2", "1", "8", "4"), ("3", "1", "8", "3"), ("4", "1", "2", "1"),
    ("2", "2", "8", "2"), ("1", "2", "8", "4"), ("4", "4", "8", "1")])
def test_update_freq_keeps_the_effective_batch(nproc, nnodes, total, per_worker):
    script = (f'source "{SCRIPTS}/env.sh"; per_worker_update_freq --lr 1 --update-freq {total} '
              '--seed 1; echo "${TRAIN_ARGS[@]}"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ, NPROC=nproc, NNODES=nnodes, DEVICE="cpu",
                                  PY=os.path.join(VENV_BIN, "python"))).stdout
    assert out.split() == ["--lr", "1", "--update-freq", per_worker, "--seed", "1"]


@pytest.mark.parametrize("lang,lenpen", [("de", "1.2"), ("fr", "1.8"), ("es", "0.6"),
                                         ("ro", "1.4"), ("ru", "0.8"), ("it", "1.0"),
                                         ("pt", "1.4"), ("nl", "1.0")])
def test_length_penalty_per_language(lang, lenpen):
    with open(os.path.join(REPO, "configs", "lenpen.tsv")) as f:
        table = dict(line.split() for line in f if line.strip() and not line.startswith("#"))
    assert table[lang] == lenpen


def test_bad_arguments_fail_with_one_line(pair_env, tmp_path):
    proc = run_script("train_st.sh", ["xx", "fixed"], pair_env, check=False)
    assert proc.returncode == 2
    assert "target language must be one of de es fr it nl pt ro ru, got 'xx'" in proc.stderr
    proc = run_script("train_st.sh", ["de", "sparse"], pair_env, check=False)
    assert proc.returncode == 2 and "mode 'sparse': config file" in proc.stderr
    assert "st_sparse.args not found (modes there: fixed )" in proc.stderr
    proc = run_script("train_st.sh", ["de", "fixed"],
                      dict(pair_env, MT_CHECKPOINT=str(tmp_path / "none.pt")), check=False)
    assert proc.returncode == 2 and "none.pt not found (run scripts/train_mt.sh de)" in proc.stderr
    proc = run_script("train_st.sh", ["de", "schedule"], pair_env, check=False)
    assert proc.returncode == 2 and "st_schedule.args not found" in proc.stderr
    proc = run_script("evaluate.sh", ["de", str(tmp_path / "missing.pt")], pair_env, check=False)
    assert proc.returncode == 2 and "missing.pt not found" in proc.stderr


def test_finetune_from_needs_an_st_checkpoint_of_the_pair_and_the_recipe(pair_env, tmp_path):
    """FINETUNE_FROM: a missing file, an MT-stage checkpoint and a missing
    finetune.args each stop with one line before any training."""
    proc = run_script("train_st.sh", ["de", "fixed"],
                      dict(pair_env, FINETUNE_FROM=str(tmp_path / "dense.pt")), check=False)
    assert proc.returncode == 2 and "fairseq-train" not in proc.stderr
    assert f"FINETUNE_FROM checkpoint {tmp_path / 'dense.pt'} not found" in proc.stderr
    proc = run_script("train_st.sh", ["de", "fixed"],
                      dict(pair_env, FINETUNE_FROM=pair_env["MT_CHECKPOINT"]), check=False)
    assert proc.returncode == 2 and "fairseq-train" not in proc.stderr
    assert "an MT-stage checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    # an ST checkpoint of the pair, but no recipe file in CONFIG_DIR
    dense = tmp_path / "st.pt"
    run_script("train_st.sh", ["de", "fixed"], dict(pair_env, ST_DIR=str(tmp_path / "dense")))
    shutil.copy(tmp_path / "dense" / "checkpoint_last.pt", dense)
    proc = run_script("train_st.sh", ["de", "fixed"], dict(pair_env, FINETUNE_FROM=str(dense),
                                                           ST_DIR=str(tmp_path / "tuned")),
                      check=False)
    assert proc.returncode == 2 and "fairseq-train" not in proc.stderr
    assert "finetune.args not found" in proc.stderr
    # with it: the run starts from the checkpoint's weights, its own count from 0
    (Path(pair_env["CONFIG_DIR"]) / "finetune.args").write_text("--max-update 2 --lr 1e-4\n")
    proc = run_script("train_st.sh", ["de", "fixed"], dict(pair_env, FINETUNE_FROM=str(dense),
                                                           ST_DIR=str(tmp_path / "tuned")))
    log = proc.stdout + proc.stderr
    assert f"--finetune-from-model {dense} --max-update 2 --lr 1e-4" in log
    assert re.search(r"loaded checkpoint \S*st\.pt", log, flags=re.I), log[-3000:]
    assert re.search(r"num_updates 2\b", log)


@pytest.mark.parametrize("device,nnodes,expected", [
    # fairseq's own launcher on CUDA: node 1 of 2 with 4 GPUs starts at rank 4 of 8
    ("cuda", "2", ["--distributed-world-size 8 --distributed-init-method tcp://10.0.0.1:29511 "
                   "--distributed-rank 4 --ddp-backend legacy_ddp", "CUDA_VISIBLE_DEVICES=0,1,2,3",
                   "--update-freq 1 "]),
    ("cuda", "1", ["--distributed-world-size 4 --ddp-backend legacy_ddp", "--update-freq 2 "]),
    ("cpu", "2", ["torchrun --nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 29511 "
                  "--nproc_per_node 4 --no-python", "--distributed-world-size 8 "
                  "--distributed-backend gloo --distributed-init-method env://"]),
])
def test_launch_command_per_device_and_node_count(tmp_path, device, nnodes, expected):
    """What fairseq_train runs, with stand-in launchers that print their arguments
    (CUDA and several machines cannot run here)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("fairseq-train", "torchrun"):
        (fake_bin / tool).write_text('#!/usr/bin/env bash\n'
                                     'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset} $0 $*"\n')
        (fake_bin / tool).chmod(0o755)
    script = f'source "{SCRIPTS}/env.sh"; fairseq_train DATA --lr 1 --update-freq 8'
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env=dict(env, PY=str(fake_bin / "python"), DEVICE=device, NPROC="4",
                                  NNODES=nnodes, NODE_RANK="1", MASTER_ADDR="10.0.0.1",
                                  MASTER_PORT="29511", CONFIG_DIR=str(tmp_path))).stdout
    for piece in expected:
        assert piece in out, (piece, out)


def test_evaluate_under_a_file_size_limit_ends_and_keeps_nothing(tiny_demo, tmp_path):
    """Under `ulimit -f` a DataLoader worker's batch in /dev/shm failed to
    write and fairseq-generate waited for it for ever; the configs decode
    without worker processes, so the run ends on the first failed write of its
    output (fairseq's traceback names it) and leaves no file behind."""
    env, _ = tiny_demo
    dense = Path(env["WORK"]) / "checkpoints_tiny" / "en-de" / "st_baseline" / "avg_last_3.pt"
    ckpt = tmp_path / "ckpt" / "model.pt"
    ckpt.parent.mkdir()
    shutil.copy(dense, ckpt)
    full_env = dict(os.environ, PY=os.path.join(VENV_BIN, "python"), **env,
                    DATA_ROOT=str(Path(env["WORK"]) / "data"), DEVICE="cpu")
    proc = subprocess.run(["bash", "-c", 'ulimit -f 0; exec bash "$0" "$@"',
                           os.path.join(SCRIPTS, "evaluate.sh"), "de", str(ckpt)],
                          capture_output=True, text=True, env=full_env, cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert "File too large" in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["model.pt"]


def test_study_ranks_modes_over_seeds_and_continues(tiny_demo):
    """scripts/study.sh through make study's wrapper, on the demo's files:
    3 modes x 2 seeds (coverage's share chosen on dev from the first seed's
    baseline and fixed runs) from the self-supervised stand-in, the report's
    exact keys, its plots, and a re-run that keeps them; then the supervised
    stand-in's study beside it."""
    env, _ = tiny_demo
    env = dict(env, STUDY_MODES="baseline fixed coverage", SEEDS="1 2", DEV_TALKS="1",
               TEST_TALKS="1", FROM_STANDINS="fixed",
               STUDY_ARGS="--reference-size tiny --repeats 1", STUDY_STANDINS="self_supervised")
    proc = run_script("demo_study.sh", [], env)
    # each training's output goes to stdout through its train.log (tee)
    log = proc.stdout + proc.stderr
    study = Path(env["WORK"]) / "checkpoints_tiny" / "en-de" / "study_self_supervised_3"
    assert "HuBERT stand-in: self_supervised (hubert_self_supervised_3.pt)" in proc.stdout
    report = json.loads((study / "study.json").read_text())
    assert set(report) == {"runs", "modes", "train_bleu"}
    assert [(r["mode"], r["seed"]) for r in report["runs"]] == [
        ("baseline", 1), ("fixed", 1), ("coverage", 1), ("fixed_from_standins", 1),
        ("baseline", 2), ("fixed", 2), ("coverage", 2), ("fixed_from_standins", 2)]
    for r in report["runs"]:
        assert set(r) == {"mode", "seed", "bleu", "bleu_half_width", "distinct",
                          "no_audio_bleu", "listens", "frames_kept",
                          "deltalm_frames_per_subword", "checkpoint", "updates", "best_update",
                          "curve_plateau", "updates_to_plateau_share", "training_seconds",
                          "curve"}
        # one rule for every run: fairseq's best dev checkpoint
        assert r["checkpoint"].endswith("/checkpoint_best.pt")
        assert os.path.isfile(r["checkpoint"]) and 0 <= r["bleu"] <= 100
        assert 0 < r["distinct"] <= 1 and 0 <= r["no_audio_bleu"] <= 100
        assert r["bleu_half_width"] >= 0
        # validated every 2 updates, stopped by patience 1 or at 6: its tst-COMMON curve
        assert [u for u, _ in r["curve"]] in ([2, 4], [2, 4, 6]), r["curve"]
        assert r["best_update"] in (2, 4, 6) and r["updates"] == r["curve"][-1][0]
        assert r["training_seconds"] > 0
    assert report["train_bleu"]["mode"] == "baseline" and 0 <= report["train_bleu"]["bleu"] <= 100
    modes = {m["mode"]: m for m in report["modes"]}
    for m in modes.values():
        assert set(m) == {"mode", "seeds", "bleu_mean", "bleu_sd", "bleu_half_width_mean",
                          "distinct_mean", "no_audio_bleu_mean", "seeds_listening",
                          "frames_kept", "deltalm_frames_per_subword", "p_values",
                          "base_speedup", "updates", "best_update", "updates_to_plateau_share",
                          "training_seconds"}
        assert m["seeds"] == [1, 2] and m["base_speedup"] > 0 and 0 <= m["seeds_listening"] <= 2
    # every reduced run of a seed started from that seed's dense run, with the study's
    # stopping rule after the mode's arguments; fixed_from_standins from the stand-ins
    for seed in (1, 2):
        dense = study / f"baseline_seed{seed}" / "checkpoint_best.pt"
        for mode in ("fixed", "coverage"):
            assert re.search(rf"fairseq-train .*--save-dir {study}/{mode}_seed{seed} .*"
                             rf"--finetune-from-model {dense} .*--patience 5 .*"
                             rf"--valid-subset dev,tst-COMMON ", log), (mode, seed)
        alone = re.search(rf"fairseq-train .*--save-dir {study}/fixed_from_standins_seed{seed} "
                          r".*", log).group(0)
        assert "--finetune-from-model" not in alone and "--pruning-rate 0.9" in alone
        assert "valid on 'tst-COMMON' subset" in (
            study / f"fixed_from_standins_seed{seed}" / "train.log").read_text()
    assert "floor" in (study / "study.md").read_text()
    # p-values against the dense baseline and against attention top-k, a column each
    assert modes["baseline"]["p_values"]["baseline"] is None
    assert modes["fixed"]["p_values"]["fixed"] is None
    assert 0 <= modes["fixed"]["p_values"]["baseline"] <= 1
    assert 0 <= modes["coverage"]["p_values"]["fixed"] <= 1
    assert "| p vs baseline | p vs fixed |" in (study / "study.md").read_text()
    assert modes["baseline"]["frames_kept"] == 1.0 > modes["fixed"]["frames_kept"]
    assert modes["baseline"]["deltalm_frames_per_subword"] > \
        modes["fixed"]["deltalm_frames_per_subword"] > 0
    assert modes["baseline"]["base_speedup"] == 1.0
    # the share was chosen once, on dev, and every coverage run trained with it
    chosen = (study / "coverage.txt").read_text().split()
    assert chosen[0] == "coverage" and 0 < float(chosen[1]) < 1
    assert "choose_coverage --data" in proc.stderr and "--subset dev" in proc.stderr
    assert len(re.findall(rf"fairseq-train .*--pruning-coverage {chosen[1]}\b", log)) == 2
    assert modes["coverage"]["frames_kept"] < 1.0
    # the seed flag reached fairseq-train: seed 2 trained with --seed 2
    assert re.search(r"fairseq-train .*--seed 2\b", log)
    assert (study / "study.md").read_text().count("\n| ") >= 5
    assert "| updates: selected / trained | updates to 95 % of the plateau | training time |" \
        in (study / "study.md").read_text()
    assert re.search(r"\| coverage \| coverage [0-9.]+ \(from 0\) \|", (study / "study.md").read_text())
    for plot in ("study.png", "curves.png", "positions.png", "frames_by_length.png"):
        assert (study / plot).read_bytes()[:4] == b"\x89PNG", plot
    assert re.search(r"^study finished in \d+ min \d+ s$", proc.stdout, flags=re.M)
    again = run_script("study.sh", ["de"], dict(env, DATA_ROOT=env["WORK"] + "/data",
                                                CKPT_ROOT=env["WORK"] + "/checkpoints_tiny",
                                                STUDY_DIR=str(study), FROM_STANDINS="fixed",
                                                STUDY_MODES="baseline fixed coverage",
                                                SEEDS="1 2", DEVICE="cpu"))
    assert "fairseq-train" not in again.stdout + again.stderr and again.stderr.count("exists, kept") == 8
    assert "choose_coverage" not in again.stderr
    both = run_script("demo_study.sh", [], dict(env, STUDY_MODES="baseline", SEEDS="1",
                                                FROM_STANDINS="",
                                                STUDY_STANDINS="self_supervised supervised"))
    supervised = study.parent / "study_supervised_3"
    assert json.loads((supervised / "study.json").read_text())["runs"][0]["mode"] == "baseline"
    assert "--hubert-from-st" in demo_logs(env["WORK"]) and re.search(
        r"fairseq-train .*--hubert-model-path \S*hubert_supervised_3.pt", both.stdout + both.stderr)
    assert both.stdout.count("HuBERT stand-in: ") == 2


def test_study_p_values_follow_the_hypotheses():
    from npy_tome_layer.evaluation.listening import paired_p_values

    refs = [f"the cat number {i} sits on the mat today" for i in range(30)]
    wrong = [f"a dog {i} runs" for i in range(30)]
    p = paired_p_values({"baseline": refs, "same": list(refs), "bad": wrong}, refs, "baseline")
    assert p["same"] == 1.0 and p["bad"] < 0.01


@pytest.mark.parametrize("variables,message", [
    ({"NPROC": "0"}, "NPROC must be in [1, ...], got '0'"),
    ({"NPROC": "-1"}, "NPROC must be a whole number, got '-1'"),
    ({"NPROC": "abc"}, "NPROC must be a whole number, got 'abc'"),
    ({"NPROC": "2x"}, "NPROC must be a whole number, got '2x'"),
    ({"NNODES": "0"}, "NNODES must be in [1, ...], got '0'"),
    ({"NNODES": "2", "NODE_RANK": "2"}, "NODE_RANK must be in [0, 1], got '2'"),
    ({"MASTER_PORT": "http"}, "MASTER_PORT must be a whole number, got 'http'"),
])
def test_worker_variables_are_checked(variables, message):
    """A bad worker count fails with one line, never as --update-freq -6."""
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPTS}/env.sh"; echo reached'],
                          capture_output=True, text=True,
                          env=dict(os.environ, DEVICE="cpu", PY=os.path.join(VENV_BIN, "python"),
                                   **variables))
    assert proc.returncode == 2 and "reached" not in proc.stdout
    assert proc.stderr.strip() == f"error: {message}"


def test_hubert_pretraining_writes_an_official_file_the_st_scripts_take(pair_env, st_corpus,
                                                                         tmp_path):
    """scripts/pretrain_hubert.sh on the test corpus's 12 train rows: labels in
    fairseq's layout from train only, one line per row, as many labels as the
    audio has MFCC frames; a checkpoint of the official layout that
    load_pruned_hubert and train_st.sh take."""
    from npy_tome_layer import load_pruned_hubert
    from npy_tome_layer.io.checkpoints import load_checkpoint
    from npy_tome_layer.st.dataset import read_manifest
    from npy_tome_layer.tools.hubert_labels import LABEL_RATE, mfcc_frame_count

    out = tmp_path / "hubert_ssl.pt"
    env = dict(pair_env, CONFIG_DIR=os.path.join(REPO, "configs", "demo"), KMEANS_CLUSTERS="4",
               HUBERT_PRETRAIN_UPDATES="2")
    proc = run_script("pretrain_hubert.sh", ["de", str(out)], env)
    assert "--task hubert_pretraining --criterion hubert --arch hubert" in proc.stderr
    work = Path(pair_env["CKPT_ROOT"]) / "en-de" / "hubert_pretraining"
    labels = work / "labels"
    train = {r["id"]: int(r["n_frames"]) for r in read_manifest(st_corpus["data"] + "/train.tsv")}
    seen = {}
    for split in ("train", "valid"):
        tsv = (labels / f"{split}.tsv").read_text().splitlines()
        km = (labels / f"{split}.km").read_text().splitlines()
        assert tsv[0] == str(labels / "wav") and len(tsv) - 1 == len(km) >= 1
        for line, units in zip(tsv[1:], km):
            name, samples = line.split("\t")
            utterance = name[:-len(".wav")]
            assert int(samples) == train[utterance]  # the segment, cut whole
            assert sf.info(str(labels / "wav" / name)).frames == int(samples)
            units = [int(u) for u in units.split()]
            assert len(units) == mfcc_frame_count(int(samples)) > 0 and set(units) <= set(range(4))
            seen[utterance] = split
    assert sorted(seen) == sorted(train)  # every train row once; dev and tst-COMMON never
    assert (labels / "dict.km.txt").read_text() == "".join(f"{i} 1\n" for i in range(4))
    accuracy = (work / "accuracy.tsv").read_text().splitlines()
    assert accuracy[0] == "updates\tvalid_masked_accuracy" and len(accuracy) >= 2
    assert all(0 <= float(line.split("\t")[1]) <= 1 for line in accuracy[1:])

    checkpoint = load_checkpoint(str(out))
    task = checkpoint["cfg"]["task"]
    assert task["_name"] == "hubert_pretraining" and list(task["labels"]) == ["km"]
    assert task["label_rate"] == LABEL_RATE
    units, = checkpoint["task_state"]["dictionaries"]
    assert len(units) - units.nspecial == 4
    model = load_pruned_hubert(str(out), pruning_rate=0.9)
    with torch.no_grad():
        x, _ = model.extract_features(torch.randn(1, 16000))
    assert x.shape[0] == 1 and torch.isfinite(x).all()
    # the ST scripts take it as they take hubert_base_ls960.pt; a re-run keeps the labels
    run_script("train_st.sh", ["de", "fixed"], dict(pair_env, HUBERT=str(out)))
    again = run_script("pretrain_hubert.sh", ["de", str(out)], env)
    assert "exists, kept" in again.stderr and "hubert_labels --data" not in again.stderr


def test_hubert_pretraining_refuses_bad_settings_in_one_line(pair_env, tmp_path):
    out = str(tmp_path / "x.pt")
    # the config is read before anything runs: these settings are checked with one there
    pair_env = dict(pair_env, CONFIG_DIR=os.path.join(REPO, "configs", "demo"))
    for env, message in [
            (dict(KMEANS_CLUSTERS="abc"), "KMEANS_CLUSTERS must be a whole number"),
            (dict(HUBERT_PRETRAIN_UPDATES="0"), "HUBERT_PRETRAIN_UPDATES must be in"),
            (dict(HUBERT=str(tmp_path / "missing.pt")), "not found"),
            (dict(KMEANS_CLUSTERS="100000"), "train rows have only")]:
        proc = run_script("pretrain_hubert.sh", ["de", out], dict(pair_env, **env), check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not os.path.exists(out)
    proc = run_script("pretrain_hubert.sh", ["de", str(tmp_path / "no" / "x.pt")], pair_env,
                      check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_failed_coverage_choice_stops_the_study(pair_env, tmp_path):
    """choose_coverage failing (here: the baseline it measures is no checkpoint)
    ends the study with its one line: no training with an empty
    --pruning-coverage, and no empty coverage.txt that every re-run would reuse."""
    shutil.copy(os.path.join(REPO, "configs", "mustc", "st_coverage.args"),
                os.path.join(pair_env["CONFIG_DIR"], "st_coverage.args"))
    study = Path(pair_env["CKPT_ROOT"]) / "en-de" / "study"
    for mode in ("baseline", "fixed"):
        (study / f"{mode}_seed1").mkdir(parents=True)
        (study / f"{mode}_seed1" / "checkpoint_best.pt").write_bytes(b"not a checkpoint")
    # every mode from the stand-ins: no dense run to start from is trained first
    env = dict(pair_env, STUDY_MODES="coverage", SEEDS="1", REDUCED_FROM="")
    for _ in range(2):  # and again: the failure is not remembered as a choice
        proc = run_script("study.sh", ["de"], env, check=False)
        assert proc.returncode != 0 and "choose_coverage:" in proc.stderr, proc.stderr[-2000:]
        assert "fairseq-train" not in proc.stderr and "Traceback" not in proc.stderr
        assert not (study / "coverage.txt").exists()


# --- config files and arguments reach fairseq whole, or nothing starts ---------

def fake_tools(tmp_path):
    """A bin folder whose python, fairseq-train, fairseq-generate and torchrun only
    append their command line to calls.log: what a script started, without running it."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("python", "fairseq-train", "fairseq-generate", "torchrun"):
        (fake_bin / tool).write_text('#!/usr/bin/env bash\n'
                                     f'printf "%s\\n" "$(basename "$0") $*" >> "{calls}"\n')
        (fake_bin / tool).chmod(0o755)
    # env.sh's ENDS_WITH_SCRIPT (python -c CODE SHELL_PID CMD...) starts CMD
    (fake_bin / "python").write_text(
        '#!/usr/bin/env bash\n'
        'if [ "$1" = -c ] && [ "${2#import ctypes}" != "$2" ]; then shift 3; exec "$@"; fi\n'
        f'printf "%s\\n" "$(basename "$0") $*" >> "{calls}"\n')
    return fake_bin, calls


def script_env(tmp_path, **variables):
    fake_bin, calls = fake_tools(tmp_path)
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    for name in ("st.args", "st_fixed.args", "mt.args", "hubert.args", "generate.args",
                 "study.args"):
        shutil.copy(os.path.join(REPO, "configs", "demo", name), configs / name)
    mt = tmp_path / "mt.pt"
    mt.write_bytes(b"stand-in")
    hubert = tmp_path / "hubert.pt"
    hubert.write_bytes(b"stand-in")
    env = dict(os.environ, PY=str(fake_bin / "python"), DEVICE="cpu", CONFIG_DIR=str(configs),
               DATA_ROOT=str(tmp_path / "data"), CKPT_ROOT=str(tmp_path / "ckpt"),
               MT_CHECKPOINT=str(mt), HUBERT=str(hubert), EXTRA_ARGS="")
    env.update(variables)
    return env, configs, calls


def run_fake(name, args, env, cwd=REPO):
    return subprocess.run(["bash", os.path.join(SCRIPTS, name)] + list(args),
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def started(calls):
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("script,args,missing", [
    # the mode's file is there, the shared one is not (the MT stage is done)
    ("train_st.sh", ["de", "fixed"], "st.args"),
    ("train_mt.sh", ["de"], "mt.args"),
    ("pretrain_hubert.sh", ["de", "OUT"], "hubert.args"),
])
def test_a_missing_config_file_stops_the_script_before_anything_starts(tmp_path, script, args,
                                                                        missing):
    env, configs, calls = script_env(tmp_path)
    (configs / missing).unlink()
    args = [str(tmp_path / "out.pt") if a == "OUT" else a for a in args]
    proc = run_fake(script, args, env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr == f"error: config file {configs / missing} not found\n"
    assert started(calls) == [] and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("make", ["directory", "dangling link"])
def test_a_config_path_that_is_no_readable_file_is_named(tmp_path, make):
    env, configs, calls = script_env(tmp_path)
    (configs / "st.args").unlink()
    if make == "directory":
        (configs / "st.args").mkdir()
        why = "is not a file"
    else:
        (configs / "st.args").symlink_to(tmp_path / "nowhere.args")
        why = "not found"
    proc = run_fake("train_st.sh", ["de", "fixed"], env)
    assert proc.returncode == 2
    assert proc.stderr == f"error: config file {configs / 'st.args'} {why}\n"
    assert started(calls) == []


def test_evaluate_reads_its_config_before_anything_runs(tmp_path):
    env, configs, calls = script_env(tmp_path)
    (configs / "generate.args").unlink()
    ckpt = tmp_path / "avg.pt"
    ckpt.write_bytes(b"stand-in")
    proc = run_fake("evaluate.sh", ["de", str(ckpt)], env)
    assert proc.returncode == 2
    assert proc.stderr == f"error: config file {configs / 'generate.args'} not found\n"
    assert started(calls) == []


def test_a_missing_config_folder_is_named(tmp_path):
    """check_mode listed the modes in a command substitution whose failure
    (no folder, no st_*.args) ended the script silently with status 1."""
    env, _, calls = script_env(tmp_path, CONFIG_DIR=str(tmp_path / "no_configs"))
    proc = run_fake("train_st.sh", ["de", "fixed"], env)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: mode 'fixed': config file {tmp_path}/no_configs/st_fixed.args "
                           "not found (modes there: none)\n")
    assert started(calls) == []


def test_config_words_and_extra_args_are_not_file_patterns(tmp_path):
    """A config's ["km"] or [10,] and EXTRA_ARGS' words reach fairseq as written,
    whatever files the current folder holds (a glob would turn [10,] into 1)."""
    env, configs, calls = script_env(tmp_path, EXTRA_ARGS="--lr 2\n--loss-weights [10,]  --seed 7")
    with open(configs / "st.args", "a") as f:
        f.write("--labels [\"km\"] --label-rate 100\r\n   # an indented comment\n--lr\t1e-3")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in ("1", "k", "0"):
        (cwd / name).write_text("")
    proc = run_fake("train_st.sh", ["de", "fixed"], env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train, = [c for c in started(calls) if c.startswith("fairseq-train ")]
    words = train.split(" ")
    assert words[-6:] == ["--lr", "2", "--loss-weights", "[10,]", "--seed", "7"]
    assert '["km"]' in words and "--label-rate" in words and "100" in words
    assert words[words.index("--lr", words.index("--label-rate")) + 1] == "1e-3"
    assert "an" not in words and "\r" not in train and "k" not in words


def test_scripts_pass_shellcheck():
    """shellcheck over scripts/*.sh (sourced files followed): no finding at any
    severity; an exclusion is written next to its line with the reason."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.geteuid() == 0:
            pytest.fail("shellcheck is not installed (scripts/install.sh installs it as root)")
        pytest.skip("shellcheck is not installed and not root: apt-get install shellcheck")
    scripts = sorted(str(p.relative_to(REPO)) for p in Path(SCRIPTS).glob("*.sh"))
    proc = subprocess.run([shellcheck, "--external-sources", "--format", "gcc"] + scripts,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_a_killed_average_leaves_no_temporary_behind_a_rerun(tmp_path):
    """kill -9 of average_checkpoints mid-write leaves avg_last_N.pt.tmp-PID (as
    large as a checkpoint); the next run removes it when no process of that id
    runs and it is untouched for a minute, whether or not the average exists."""
    env, _, calls = script_env(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = run_dir / f"avg_last_3.pt.tmp-{dead.pid}"
    fresh = run_dir / f"avg_last_4.pt.tmp-{dead.pid}"  # another count: not this run's
    alive = run_dir / f"avg_last_3.pt.tmp-{os.getpid()}"
    recent = run_dir / "avg_last_3.pt.tmp-1"  # pid 1 lives; and one written just now:
    just_now = run_dir / f"avg_last_3.pt.tmp-{dead.pid + 1000000}"
    for path in (stale, fresh, alive, recent, just_now):
        path.write_bytes(b"half a checkpoint")
        if path is not just_now:
            os.utime(path, (1, 1))
    for average_exists in (False, True):
        if average_exists:
            stale.write_bytes(b"half a checkpoint")
            os.utime(stale, (1, 1))
            (run_dir / "avg_last_3.pt").write_bytes(b"the average")
        proc = run_fake("average_checkpoints.sh", ["de", "fixed", "3"],
                        dict(env, ST_DIR=str(run_dir)))
        assert proc.returncode == 0, proc.stderr
        assert f"[average] removing {stale}, left by a killed run" in proc.stderr
        assert not stale.exists()
        assert fresh.exists() and alive.exists() and recent.exists() and just_now.exists()
    assert (run_dir / "avg_last_3.pt").read_bytes() == b"the average"
    assert len([c for c in started(calls) if "average_checkpoints" in c]) == 1


@pytest.mark.parametrize("count", ["abc", "0", "-1", "../3"])
def test_the_average_count_is_a_whole_number(tmp_path, count):
    env, _, calls = script_env(tmp_path)
    proc = run_fake("average_checkpoints.sh", ["de", "fixed", count], env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: N must be")
    assert len(proc.stderr.splitlines()) == 1 and started(calls) == []


@pytest.mark.parametrize("variables,message", [
    ({"DEVICE": "CPU"}, "DEVICE must be cpu or cuda, got 'CPU'"),
    ({"DEVICE": "gpu"}, "DEVICE must be cpu or cuda, got 'gpu'"),
])
def test_device_is_cpu_or_cuda(tmp_path, variables, message):
    """Any other DEVICE was taken as CUDA: fp16 and no --cpu on a CPU machine."""
    env, _, calls = script_env(tmp_path, **variables)
    proc = run_fake("train_st.sh", ["de", "fixed"], env)
    assert proc.returncode == 2 and proc.stderr == f"error: {message}\n"
    assert started(calls) == []


def test_counts_with_leading_zeros_are_decimal(tmp_path):
    """NPROC=08 passed the check and then failed in $((NODE_RANK * NPROC)) as an
    octal number (bash's 'value too great for base')."""
    env, _, calls = script_env(tmp_path, DEVICE="cuda", NPROC="08", NNODES="02", NODE_RANK="01",
                               CUDA_VISIBLE_DEVICES="")
    env.pop("CUDA_VISIBLE_DEVICES")
    proc = run_fake("train_st.sh", ["de", "fixed"], env)
    assert proc.returncode == 0, proc.stderr
    train, = started(calls)
    assert "--distributed-world-size 16 " in train and "--distributed-rank 8 " in train


def test_evaluate_keeps_no_output_without_a_bleu_line(tmp_path):
    """The BLEU line was read in a command substitution inside echo: a decoding
    that printed none still ended with status 0 and left generate-*.txt, which
    study.sh then kept as a finished evaluation."""
    env, _, calls = script_env(tmp_path)
    ckpt = tmp_path / "avg.pt"
    ckpt.write_bytes(b"stand-in")
    proc = run_fake("evaluate.sh", ["de", str(ckpt)], env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == ("error: fairseq-generate wrote no BLEU line "
                                            f"(Generate ...) for {ckpt}; nothing kept")
    assert [p.name for p in tmp_path.glob("generate-*")] == []
    # started through env.sh's ENDS_WITH_SCRIPT, which the stand-in python runs
    assert any(c.startswith("fairseq-generate ") for c in started(calls))


@pytest.mark.parametrize("script,args,folder", [
    ("train_st.sh", ["de", "fixed"], "save folder {ckpt}/en-de/st_fixed"),
    ("train_mt.sh", ["de"], "save folder {ckpt}/en-de/mt"),
    ("pretrain_hubert.sh", ["de", "OUT"], "work folder {ckpt}/en-de/hubert_pretraining"),
])
def test_an_output_folder_that_cannot_be_written_stops_before_the_run(tmp_path, script, args,
                                                                      folder):
    """A file where the checkpoints' folder goes (as a read-only file system,
    checked by hand with a read-only tmpfs): fairseq-train ended in a traceback
    (OSError from verify_checkpoint_directory), the pre-training's mkdir in
    mkdir's own words; now one line before anything runs."""
    ckpt = tmp_path / "ckpt"
    ckpt.write_text("a file in the way")
    env, _, calls = script_env(tmp_path, CKPT_ROOT=str(ckpt))
    args = [str(tmp_path / "out.pt") if a == "OUT" else a for a in args]
    proc = run_fake(script, args, env)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {folder.format(ckpt=ckpt)} is not a folder this user can " \
                          "write in\n"
    assert started(calls) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a mode-555 folder")
def test_a_read_only_output_folder_stops_before_the_run(tmp_path):
    env, _, calls = script_env(tmp_path)
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = run_fake("pretrain_hubert.sh", ["de", str(out / "hubert.pt")], env)
    finally:
        out.chmod(0o755)
    assert proc.returncode == 2
    assert proc.stderr == f"error: OUT.pt folder {out} is not a folder this user can write in\n"
    assert started(calls) == []


@pytest.mark.parametrize("seeds", [" 1 2", "1\t2"])
def test_the_first_seed_is_the_first_word_of_seeds(tmp_path, seeds):
    """${SEEDS%% *} took '' from ' 1 2' and '1<tab>2' from a tab: the coverage
    mode then asked for baseline_seed/ and said the baseline had not run."""
    env, configs, calls = script_env(tmp_path, STUDY_MODES="coverage", SEEDS=seeds,
                                     REDUCED_FROM="")
    shutil.copy(os.path.join(REPO, "configs", "demo", "st_coverage.args"), configs)
    study = tmp_path / "ckpt" / "en-de" / "study"
    for mode in ("baseline", "fixed"):
        (study / f"{mode}_seed1").mkdir(parents=True)
        (study / f"{mode}_seed1" / "checkpoint_best.pt").write_bytes(b"stand-in")
    proc = run_fake("study.sh", ["de"], env)
    assert "needs the baseline mode" not in proc.stderr
    choose, = [c for c in started(calls) if "choose_coverage" in c]
    assert f"--checkpoint {study}/baseline_seed1/checkpoint_best.pt" in choose


def test_seeds_of_blanks_name_no_seed(tmp_path):
    env, _, calls = script_env(tmp_path, SEEDS="   ", STUDY_MODES="fixed", REDUCED_FROM="")
    proc = run_fake("study.sh", ["de"], env)
    assert proc.returncode == 2 and proc.stderr == "error: SEEDS names no seed\n"
    assert started(calls) == []


def test_a_full_disk_at_the_pretraining_copy_leaves_no_partial_file(tmp_path):
    """The copy to OUT.pt.tmp-PID failing (a full disk; here a file size limit)
    left the partial temporary beside OUT.pt; now it is removed, OUT.pt untouched."""
    env, _, calls = script_env(tmp_path, KMEANS_CLUSTERS="2")
    work = tmp_path / "ckpt" / "en-de" / "hubert_pretraining"
    (work / "labels").mkdir(parents=True)
    (work / "labels" / "dict.km.txt").write_text("0 1\n1 1\n")
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "checkpoint_last.pt").write_bytes(os.urandom(400_000))
    out = tmp_path / "out" / "hubert.pt"
    out.parent.mkdir()
    proc = subprocess.run(["bash", "-c", 'ulimit -f 100; exec bash "$0" "$@"',
                           os.path.join(SCRIPTS, "pretrain_hubert.sh"), "de", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert list(out.parent.iterdir()) == []


def test_run_pair_starts_the_reduced_modes_from_the_dense_run_by_default(tmp_path):
    """run_pair.sh's default recipe is the one in which reduced models keep listening
    (REDUCED_FROM=baseline, as the demo and study.sh); REDUCED_FROM= is the paper's."""
    env, configs, calls = script_env(tmp_path, AVERAGE_LAST="3")
    for name in ("st_baseline.args", "finetune.args"):
        shutil.copy(os.path.join(REPO, "configs", "demo", name), configs / name)
    fake_bin = Path(env["PY"]).parent
    # the average exists once averaged, and a decoding prints its BLEU line
    # (a program given with -c, evaluate.sh's wrapper that starts the decoding, runs)
    (fake_bin / "python").write_text(
        '#!/usr/bin/env bash\n'
        f'[ "$1" != -c ] || exec {sys.executable} "$@"\n'
        f'printf "%s\\n" "python $*" >> "{calls}"\n'
        'while [ $# -gt 0 ]; do [ "$1" != --output ] || touch "$2"; shift; done\n')
    (fake_bin / "fairseq-generate").write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "fairseq-generate $*" >> "{calls}"\n'
        'echo "Generate tst-COMMON with beam=8: BLEU = 1.00"\n')
    trained = {}
    for reduced_from in (None, ""):
        run_env = dict(env)
        if reduced_from is not None:
            run_env["REDUCED_FROM"] = reduced_from
        calls.write_text("")
        shutil.rmtree(tmp_path / "ckpt", ignore_errors=True)
        proc = run_fake("run_pair.sh", ["de", "fixed baseline"], run_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        trained[reduced_from] = [
            (save[1], (re.search(r"--finetune-from-model (\S+)", c) or [None, None])[1])
            for c in started(calls) if c.startswith("fairseq-train ")
            for save in [re.search(r"--save-dir \S*/st_(\w+)", c)] if save]
    dense = f"{tmp_path}/ckpt/en-de/st_baseline/avg_last_3.pt"
    assert trained[None] == [("baseline", None), ("fixed", dense)]
    assert trained[""] == [("fixed", None), ("baseline", None)]


def test_the_projects_own_warnings_stay_in_view(tmp_path):
    """The corpus's fallback to espeak-ng voices concerns the user: a line starting
    "warning: " is shown after the stage's end; other libraries' warnings are not."""
    proc = run_stages(tmp_path, """corpus() {
  echo "x.py:3: UserWarning: a library's own" >&2
  echo "warning: voices kal are not installed (flite); every split is spoken by espeak-ng" >&2
}
stage corpus "corpus" corpus
""")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.search(r"\] corpus: done in \d+ s$", lines[1]), lines
    assert lines[2:] == ["    warning: voices kal are not installed (flite); every split is "
                         "spoken by espeak-ng"]


@pytest.mark.parametrize("value", ["-1", "ten"])
def test_the_log_tail_is_a_whole_number(tmp_path, value):
    proc = run_stages(tmp_path, 'stage one "the first step" true\n', LOG_TAIL=value)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: LOG_TAIL must be a whole number, got '{value}'\n"


def seeds_at_once(tmp_path, **variables):
    """study.sh with STUDY_JOBS=2 over stand-in tools: a fairseq-train that
    writes its checkpoint (after TRAIN_SLEEP seconds, its PID in pids) or
    fails for seed FAIL_SEED, and a fairseq-generate that prints a BLEU line."""
    env, configs, calls = script_env(tmp_path, STUDY_MODES="baseline fixed", SEEDS="1 2",
                                     STUDY_JOBS="2", PIDS=str(tmp_path / "pids"), **variables)
    shutil.copy(os.path.join(REPO, "configs", "demo", "st_baseline.args"), configs)
    shutil.copy(os.path.join(REPO, "configs", "demo", "finetune.args"), configs)
    fake_bin = Path(env["PY"]).parent
    (fake_bin / "fairseq-train").write_text(
        '#!/usr/bin/env bash\n'
        f'printf "%s\\n" "fairseq-train $*" >> "{calls}"\n'
        'while [ $# -gt 0 ]; do case "$1" in --save-dir) dir=$2 ;; --seed) seed=$2 ;; esac; '
        'shift; done\n'
        '[ "$seed" != "${FAIL_SEED:-}" ] || { echo "seed $seed: no" >&2; exit 3; }\n'
        'if [ -n "${TRAIN_SLEEP:-}" ]; then echo $$ >> "$PIDS"; sleep "$TRAIN_SLEEP"; fi\n'
        'echo trained > "$dir/checkpoint_best.pt"\n')
    (fake_bin / "fairseq-generate").write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "fairseq-generate $*" >> "{calls}"\n'
        'echo "Generate tst-COMMON with beam=8: BLEU = 1.00"\n')
    return env, calls, tmp_path / "ckpt" / "en-de" / "study"


def test_seeds_at_once_name_the_failed_seed_and_keep_the_others_runs(tmp_path):
    env, calls, study = seeds_at_once(tmp_path, FAIL_SEED="2")
    proc = run_fake("study.sh", ["de"], env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "error: the study's seed(s) 2 failed (their lines above); finished runs are kept")
    assert "seed 2: no" in proc.stdout + proc.stderr
    for mode in ("baseline", "fixed"):
        assert (study / f"{mode}_seed1" / "generate-checkpoint_best.txt").is_file()
    assert not (study / "baseline_seed2" / ".trained").exists()
    assert not [c for c in started(calls) if "npy_tome_layer.tools.study" in c]  # no report
    # seed 1's two trainings and seed 2's failed one
    assert len([c for c in started(calls) if c.startswith("fairseq-train ")]) == 3


def test_seeds_at_once_end_with_the_study(tmp_path):
    env, _, _ = seeds_at_once(tmp_path, TRAIN_SLEEP="60")
    run = subprocess.Popen(["bash", os.path.join(SCRIPTS, "study.sh"), "de"], env=env, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = tmp_path / "pids"
    for _ in range(300):
        if pids.exists() and len(pids.read_text().split()) == 2:
            break
        time.sleep(0.1)
    trainings = [int(p) for p in pids.read_text().split()]
    assert len(trainings) == 2  # both seeds at once
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=20) == 143
    for pid in trainings:
        assert ended(pid), "a seed's training outlived the study"
