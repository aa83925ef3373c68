"""The per-pair shell scripts as a user runs them: 2-worker CPU training over
gloo with fairseq's own torch.distributed support, on one node and on two, the whole demo end to end
at the smallest size, per-language length penalties, and argument errors."""
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch

from .conftest import REPO, TINY_DELTALM, VENV_BIN

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
    with open(os.path.join(REPO, "configs", "mustc", "st_fixed.args")) as f:
        (configs / "st_fixed.args").write_text(f.read())
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
    env = {"WORK": str(work), "HUBERT_SIZE": "tiny", "TRAIN_TALKS": "3", "SEGMENTS": "4",
           "PRETRAIN_UPDATES": "3", "HUBERT_PRETRAIN_UPDATES": "3", "KMEANS_CLUSTERS": "8",
           "NPROC": "1", "CONFIG_DIR": str(configs)}
    proc = run_script("demo.sh", [], dict(
        env, SWEEP="1", SWEEP_ARGS="--rates 1.0 0.8 --init-layers 0 --repeats 1 --beam 2",
        COMPARE_ARGS="--reference-size tiny --repeats 1"))
    return env, proc


def test_demo_end_to_end_at_the_smallest_size(tiny_demo):
    env, proc = tiny_demo
    work = Path(env["WORK"])
    out = proc.stdout + proc.stderr
    # every step a MuST-C user runs, through the same scripts, and the stand-in
    # HuBERT pre-training (self-supervised) that the ST modes start from
    for step in ("prepare_mustc", "fairseq-train", "average_checkpoints", "fairseq-generate",
                 "compare_runs", "standins --out", "sweep", "hubert_labels"):
        assert f"{step} " in out, step
    assert "--task hubert_pretraining" in out and "--hubert-from-st" not in out
    hubert = work / "pretrained_tiny" / "hubert_self_supervised_3.pt"
    assert os.path.isfile(hubert)
    assert len(re.findall(rf"fairseq-train .*--hubert-model-path {hubert}", out)) == 3
    assert re.search(r"en-de st_baseline/avg_last_3.pt lenpen 1.2: Generate tst-COMMON with "
                     r"beam=8: BLEU = [0-9.]+", out)
    rows = {m.group(1): m for m in re.finditer(
        r"^\| (baseline|fixed|schedule) \| (?:dense|[a-z]+ ([0-9.]+) \(from 0\)) \| ([0-9.]+) "
        r"\| (\d+)/(\d+) "
        r"\(([0-9.]+) %\) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+)x \| ([0-9.]+)x \|$",
        proc.stdout, flags=re.M)}
    assert set(rows) == {"baseline", "fixed", "schedule"}, proc.stdout[-2000:]
    base, fixed = rows["baseline"], rows["fixed"]
    assert base.group(2) is None and fixed.group(2) == "0.9"  # dense, prune 0.9
    assert base.group(4) == base.group(5) and base.group(5) == fixed.group(5)
    # tiny HuBERT has 3 layers: each utterance keeps ceil(0.9 ceil(0.9 ceil(0.9 n))) frames
    assert int(fixed.group(4)) < 0.75 * int(fixed.group(5)) + 6 * 3
    assert int(fixed.group(4)) < int(base.group(4))
    # the speedup of the same frames at a reference size: dense is 1, fixed is measured
    assert float(base.group(10)) == 1.0 and float(fixed.group(10)) > 0
    # the inference-time sweep of the dense checkpoint (SWEEP_MODES), and the elapsed time
    records = json.loads((work / "sweep_baseline" / "sweep.json").read_text())
    assert [(r["rate"], r["init_layer"]) for r in records] == [(1.0, 0), (0.8, 0)]
    assert not (work / "sweep_fixed").exists()
    assert re.search(r"^demo finished in \d+ min \d+ s$", proc.stdout, flags=re.M)


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


def test_study_ranks_modes_over_seeds_and_continues(tiny_demo):
    """scripts/study.sh through make study's wrapper, on the demo's files:
    3 modes x 2 seeds (coverage's share chosen on dev from the first seed's
    baseline and fixed runs) from the self-supervised stand-in, the report's
    exact keys, its plots, and a re-run that keeps them; then the supervised
    stand-in's study beside it."""
    env, _ = tiny_demo
    env = dict(env, STUDY_MODES="baseline fixed coverage", SEEDS="1 2",
               STUDY_ARGS="--reference-size tiny --repeats 1", STUDY_STANDINS="self_supervised")
    proc = run_script("demo_study.sh", [], env)
    study = Path(env["WORK"]) / "checkpoints_tiny" / "en-de" / "study_self_supervised_3"
    assert "HuBERT stand-in: self_supervised (hubert_self_supervised_3.pt)" in proc.stdout
    report = json.loads((study / "study.json").read_text())
    assert set(report) == {"runs", "modes"}
    assert [(r["mode"], r["seed"]) for r in report["runs"]] == [
        ("baseline", 1), ("fixed", 1), ("coverage", 1), ("baseline", 2), ("fixed", 2),
        ("coverage", 2)]
    for r in report["runs"]:
        assert set(r) == {"mode", "seed", "bleu", "frames_kept", "checkpoint"}
        assert os.path.isfile(r["checkpoint"]) and 0 <= r["bleu"] <= 100
    modes = {m["mode"]: m for m in report["modes"]}
    for m in modes.values():
        assert set(m) == {"mode", "seeds", "bleu_mean", "bleu_sd", "frames_kept", "p_value",
                          "base_speedup"}
        assert m["seeds"] == [1, 2] and m["base_speedup"] > 0
    assert modes["baseline"]["p_value"] is None and 0 <= modes["fixed"]["p_value"] <= 1
    assert modes["baseline"]["frames_kept"] == 1.0 > modes["fixed"]["frames_kept"]
    assert modes["baseline"]["base_speedup"] == 1.0
    # the share was chosen once, on dev, and every coverage run trained with it
    chosen = (study / "coverage.txt").read_text().split()
    assert chosen[0] == "coverage" and 0 < float(chosen[1]) < 1
    assert "choose_coverage --data" in proc.stderr and "--subset dev" in proc.stderr
    assert len(re.findall(rf"fairseq-train .*--pruning-coverage {chosen[1]}\b", proc.stderr)) == 2
    assert modes["coverage"]["frames_kept"] < 1.0
    # the seed flag reached fairseq-train: seed 2 trained with --seed 2
    assert re.search(r"fairseq-train .*--seed 2\b", proc.stderr)
    assert (study / "study.md").read_text().count("\n| ") >= 4
    assert re.search(r"\| coverage \| coverage [0-9.]+ from 0 \|", (study / "study.md").read_text())
    for plot in ("study.png", "positions.png", "frames_by_length.png"):
        assert (study / plot).read_bytes()[:4] == b"\x89PNG", plot
    assert re.search(r"^study finished in \d+ min \d+ s$", proc.stdout, flags=re.M)
    again = run_script("study.sh", ["de"], dict(env, DATA_ROOT=env["WORK"] + "/data",
                                                CKPT_ROOT=env["WORK"] + "/checkpoints_tiny",
                                                STUDY_DIR=str(study), AVERAGE_LAST="3",
                                                DEVICE="cpu"))
    assert "fairseq-train" not in again.stderr and again.stderr.count("exists, kept") == 6
    assert "choose_coverage" not in again.stderr
    both = run_script("demo_study.sh", [], dict(env, STUDY_MODES="baseline", SEEDS="1",
                                                STUDY_STANDINS="self_supervised supervised"))
    supervised = study.parent / "study_supervised_3"
    assert json.loads((supervised / "study.json").read_text())["runs"][0]["mode"] == "baseline"
    assert "--hubert-from-st" in both.stderr and re.search(
        r"fairseq-train .*--hubert-model-path \S*hubert_supervised_3.pt", both.stderr)
    assert both.stdout.count("HuBERT stand-in: ") == 2


def test_study_p_values_follow_the_hypotheses():
    from npy_tome_layer.tools.study import paired_p_values

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
        (study / f"{mode}_seed1" / "avg_last_3.pt").write_bytes(b"not a checkpoint")
    env = dict(pair_env, STUDY_MODES="coverage", SEEDS="1", AVERAGE_LAST="3")
    for _ in range(2):  # and again: the failure is not remembered as a choice
        proc = run_script("study.sh", ["de"], env, check=False)
        assert proc.returncode != 0 and "choose_coverage:" in proc.stderr, proc.stderr[-2000:]
        assert "fairseq-train" not in proc.stderr and "Traceback" not in proc.stderr
        assert not (study / "coverage.txt").exists()
