"""Reliability, fifth probe (issue 43): the cases of this file's classes, each
fixed where its class is checked. The rule as before: one line naming the
file/flag and the cause (no traceback), or the right result; nothing already
written lost or half-written, nothing left behind."""
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from npy_tome_layer.errors import InputError

from .conftest import REPO, VENV_BIN, common_train_args
from .test_bad_input import last_line, mustc, quiet, run_prepare  # noqa: F401  (a fixture)

PY = os.path.join(VENV_BIN, "python")
SCRIPTS = os.path.join(REPO, "scripts")


def tool(module, *args, cwd=None, env=None, timeout=600):
    """``python -m npy_tome_layer.tools.MODULE ARGS`` with this tree's code."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([PY, "-m", f"npy_tome_layer.tools.{module}"] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def refused(proc, *pieces):
    """The run failed with one line (no traceback) holding every piece."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = last_line(proc.stderr)
    for piece in pieces:
        assert piece in line, (piece, proc.stderr[-2000:])
    return line


def cli(program, args, env=None, timeout=600):
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([os.path.join(VENV_BIN, program)] + [str(a) for a in args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), (0.1 * np.random.default_rng(0).standard_normal(16000)).astype("float32"),
             16000)
    return path


# --- tools' names and modes, checked before any work ------------------------

def test_compare_runs_refuses_two_runs_of_one_name(tmp_path):  # CR1
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    proc = tool("compare_runs", "--data", tmp_path, "--run", f"dense={a}", "--run", f"dense={b}")
    refused(proc, "--run: name dense given 2 times")


def test_compare_runs_reads_a_colon_inside_a_checkpoint_path(tmp_path):  # CR2
    folder = tmp_path / "ck"
    folder.mkdir()
    checkpoint = folder / "a:b.pt"
    checkpoint.write_text("not a checkpoint")
    proc = tool("compare_runs", "--data", tmp_path, "--run", f"dense={checkpoint}")
    # the file is found and judged, not called missing at "ck/a"
    line = refused(proc, str(checkpoint), "not a PyTorch checkpoint")
    assert "does not exist" not in line
    missing = tool("compare_runs", "--data", tmp_path, "--run", f"dense={folder}/x:y.txt")
    refused(missing, "--run dense:", "is a checkpoint file", "':' separates")


def test_a_generate_output_of_another_checkpoint_is_refused(tmp_path):  # CR5 (the check)
    from npy_tome_layer.evaluation.decoding import check_written_by

    mine, other = tmp_path / "st_baseline.pt", tmp_path / "avg_last_3.pt"
    mine.write_bytes(b"the dense model")
    other.write_bytes(b"the pruned model")
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    recorded = tmp_path / "generate.txt"
    recorded.write_text(f"# checkpoint sha256 {digest} {other}\nGenerate test: BLEU = 30.1\n")
    check_written_by(str(recorded), str(other))
    with pytest.raises(InputError, match=r"generate.txt was decoded by .*avg_last_3.pt, whose "
                                         r"sha256 differs from .*st_baseline.pt's"):
        check_written_by(str(recorded), str(mine))
    # plain fairseq-generate's output: its own log line names the checkpoint
    logged = tmp_path / "plain.txt"
    logged.write_text(f"2026-12-07 | INFO | fairseq_cli.generate | loading model(s) from {other}\n")
    check_written_by(str(logged), str(other))
    with pytest.raises(InputError, match=r"plain.txt was decoded by .*avg_last_3.pt, not"):
        check_written_by(str(logged), str(mine))
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("Generate test: BLEU = 30.1\n")
    with pytest.raises(InputError, match="cannot tell which checkpoint wrote it"):
        check_written_by(str(unknown), str(mine))


def test_compare_runs_refuses_a_generate_output_of_another_checkpoint(tmp_path, st_corpus,
                                                                      fixed_checkpoint):  # CR5
    other = tmp_path / "other.pt"
    other.write_bytes(b"another checkpoint's bytes")
    generate = tmp_path / "generate.txt"
    generate.write_text(f"# checkpoint sha256 {hashlib.sha256(b'x').hexdigest()} {other}\n"
                        "Generate test with beam=8: BLEU = 30.10\n")
    proc = tool("compare_runs", "--data", st_corpus["data"], "--subset", "dev",
                "--reference-size", "tiny", "--run", f"dense={fixed_checkpoint}:{generate}")
    refused(proc, "generate.txt was decoded by", "sha256 differs")


@pytest.mark.parametrize("module,args", [
    ("compare_runs", ["--data", "d", "--run", "a=b"]),  # CR0
    ("sweep", ["--checkpoint", "c", "--data", "d", "--out", "o"]),  # SW15
    ("study", ["--data", "d", "--out", "o", "--run", "m", "1", "c", "g"]),
])
def test_reference_size_is_one_of_the_sizes(module, args):
    proc = tool(module, *args, "--reference-size", "huge")
    assert proc.returncode == 2
    assert "argument --reference-size: invalid choice: 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_study_refuses_an_against_mode_it_does_not_hold(tmp_path):  # ST2
    proc = tool("study", "--data", tmp_path, "--out", tmp_path / "out", "--run", "baseline", "1",
                "c.pt", "g.txt", "--run", "fixed", "1", "c.pt", "g.txt", "--against", "nosuch")
    assert proc.returncode == 2, proc.stderr
    assert "--against nosuch: not a mode of --run (modes: baseline fixed)" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out,message", [
    ("v2", "--out {out}: no suffix"),  # V2: written as v2.png, reported as v2
    ("v3.txt", "--out {out}: suffix .txt"),  # V3: refused only after the model ran
])
def test_visualize_pruning_takes_its_format_from_the_suffix_first(tmp_path, wav, out, message):
    path = tmp_path / out
    proc = tool("visualize_pruning", "--wav", wav, "--out", path)
    refused(proc, message.format(out=path), ".png, .pdf, .svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    assert "dictionary" not in proc.stderr  # no model was built (fairseq logs one)


def test_visualize_pruning_writes_the_format_its_suffix_names(tmp_path, wav):
    proc = tool("visualize_pruning", "--wav", wav, "--out", tmp_path / "v.svg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "v.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_tune_lenpen_replaces_a_row_whatever_its_blanks(tmp_path):  # TL2
    from npy_tome_layer.tools.tune_lenpen import update_table

    table = tmp_path / "t.tsv"
    table.write_text("# language and penalty\nde 1.2\nfr\t1.8\n")  # evaluate.sh reads it so
    update_table(str(table), "de", 1.4)
    assert table.read_text() == "# language and penalty\nde\t1.4\nfr\t1.8\n"
    table.write_text("de 1.2\nfr\t1.8\nde\t1.0\n")
    with pytest.raises(InputError, match="lines 1 and 3 are both rows of de"):
        update_table(str(table), "de", 1.4)
    assert table.read_text() == "de 1.2\nfr\t1.8\nde\t1.0\n"


def test_tune_lenpen_names_a_table_that_is_not_utf8(tmp_path):  # TL1
    from npy_tome_layer.tools.tune_lenpen import update_table

    table = tmp_path / "t.tsv"
    table.write_bytes(b"# caf\xe9\nde\t1.2\n")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 at offset 5\)"):
        update_table(str(table), "de", 1.4)
    assert table.read_bytes() == b"# caf\xe9\nde\t1.2\n"


def test_tune_lenpen_refuses_the_table_before_the_decoding(tmp_path, st_corpus, fixed_checkpoint):
    table = tmp_path / "t.tsv"
    table.write_bytes(b"caf\xe9\tde 1.2\n")
    proc = tool("tune_lenpen", "--checkpoint", fixed_checkpoint, "--data", st_corpus["data"],
                "--tgt-lang", "de", "--lenpens", "1.0", "--write", table, "--cpu")
    refused(proc, f"--write {table}: not UTF-8 text")
    assert "lenpen 1: BLEU" not in proc.stderr  # refused before decoding


def test_diagnose_listening_needs_two_utterances(tmp_path, st_corpus, fixed_checkpoint):  # DL3
    data = tmp_path / "data"
    data.mkdir()
    for name in os.listdir(st_corpus["data"]):
        os.symlink(os.path.join(st_corpus["data"], name), data / name)
    lines = Path(st_corpus["data"], "dev.tsv").read_text().splitlines()
    (data / "one.tsv").write_text("\n".join(lines[:2]) + "\n")
    proc = tool("diagnose_listening", "--data", data, "--subset", "one",
                "--run", f"fixed={fixed_checkpoint}")
    refused(proc, "--subset one:", "holds 1 utterance(s)", "at least 2")
    assert "inf" not in proc.stdout and "nan" not in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--grid", "--seconds", "0.01"], "argument --seconds: must be at least 0.025 s"),  # B4
    (["--out", "o", "--durations", "0.02"], "argument --durations: must be at least"),
])
def test_benchmark_refuses_audio_shorter_than_one_frame(tmp_path, args, message):
    proc = subprocess.run([PY, "-m", "npy_tome_layer.tools.benchmark"] + args, cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert os.listdir(tmp_path) == []


def test_benchmark_refuses_cuda_on_a_machine_without_it(tmp_path):  # B7
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([PY, "-m", "npy_tome_layer.tools.benchmark", "--grid", "--device",
                           "cuda"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2
    assert "argument --device: cuda: torch sees no CUDA device" in proc.stderr
    assert os.listdir(tmp_path) == []


def non_utf8(folder: Path, name: bytes) -> str:
    """A path under ``folder`` whose last name is the bytes ``name`` (not UTF-8)."""
    return os.fsdecode(os.path.join(os.fsencode(str(folder)), name))


def assert_refused_as_not_utf8(mustc, flag, **paths):
    """prepare_mustc given ``paths`` stops in one line naming ``flag`` and the encoding."""
    with pytest.raises(InputError) as caught:
        run_prepare(mustc, **paths)
    assert flag in str(caught.value) and "not UTF-8" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_prepare_refuses_a_spm_model_path_that_is_not_utf8(mustc, tmp_path):  # PM2
    import shutil

    spm = non_utf8(tmp_path, b"spm\xe9.model")
    shutil.copy(mustc["spm"], spm)
    assert_refused_as_not_utf8(mustc, "--spm-model", spm_model=spm)
    assert not os.path.exists(mustc["out"])


def test_prepare_refuses_a_mustc_root_that_is_not_utf8_in_one_line(mustc, tmp_path):  # PM1
    root = non_utf8(tmp_path, b"must\xe9c")
    os.rename(mustc["root"], root)
    assert_refused_as_not_utf8(mustc, "--mustc-root", root=root)


# --- a folder or FIFO named as what it is -----------------------------------

@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_fifo_is_named_as_what_it_is(tmp_path, wav, hubert_tiny, kind):
    # A31, A46 (load_pruned_hubert), V6 (visualize_pruning), AV5 (audio files)
    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert
    from npy_tome_layer.io.audio import audio_info

    path = tmp_path / "thing"
    os.mkdir(path) if kind == "folder" else os.mkfifo(path)
    named = "is a folder, not a file" if kind == "folder" else "is a FIFO (named pipe), not a file"
    with pytest.raises(InputError, match=re.escape(f"checkpoint file {named}")):
        load_pruned_hubert(str(path), pruning_rate=0.9)
    with pytest.raises(InputError, match="audio file .*thing " + re.escape(named)):
        audio_info(str(path))
    for args in (["--wav", path], ["--wav", wav, "--checkpoint", path]):
        proc = tool("visualize_pruning", *args, "--out", tmp_path / "v.png", timeout=120)
        line = refused(proc, named)
        assert "does not exist" not in line


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_generate_names_a_folder_or_fifo_given_as_checkpoint(tmp_path, st_corpus, kind):  # G18, G19
    path = tmp_path / "thing.pt"
    os.mkdir(path) if kind == "folder" else os.mkfifo(path)
    proc = cli("fairseq-generate", [st_corpus["data"], "--user-dir",
                                    os.path.join(REPO, "npy_tome_layer"), "--task",
                                    "speech_and_text_translation", "--tgt-lang", "de", "--path",
                                    path, "--gen-subset", "dev", "--cpu"], timeout=120)
    refused(proc, str(path), "is a folder" if kind == "folder" else "is a FIFO")


# --- writes two runs cannot mix, kills that leave nothing -------------------

def test_a_picture_is_written_whole_or_not_at_all(tmp_path, wav):  # V7
    picture = tmp_path / "old.png"
    picture.write_bytes(Path(REPO, "docs", "study.png").read_bytes())  # 36 kB
    before = picture.read_bytes()
    proc = subprocess.run(["bash", "-c", 'ulimit -f 20; exec "$@"', "bash", PY, "-m",
                           "npy_tome_layer.tools.visualize_pruning", "--wav", str(wav), "--out",
                           str(picture)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    refused(proc, f"cannot write {picture}: File too large")
    assert picture.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "old.png"]


def test_the_grid_outputs_replace_the_old_ones_together(tmp_path, monkeypatch):  # B2
    from npy_tome_layer.tools.benchmark import scaling

    out = tmp_path / "grid"
    out.mkdir()
    for name in ("grid.md", "grid.json", "grid.png"):
        (out / name).write_text(f"old {name}")

    def failing_plot(rows, path, fmt="png"):
        Path(path).write_bytes(b"half a png")
        raise OSError(27, "File too large", path)

    monkeypatch.setattr(scaling, "scaling_plot", failing_plot)
    result = {"rows": [], "estimate_s": 1.0, "actual_s": 1.0}
    with pytest.raises(OSError):
        scaling.write_scaling(result, str(out), "a machine", "fp32", "benchmark --grid")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        name: f"old {name}" for name in ("grid.md", "grid.json", "grid.png")}


def test_hubert_labels_rerun_removes_a_killed_runs_temporaries(tmp_path, st_corpus):  # HL8
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "labels"
    killed = tmp_path / f"labels.tmp-{dead.pid}"
    (killed / "wav").mkdir(parents=True)
    (killed / "wav" / "u1.wav").write_bytes(b"half a wav")
    for path in (killed / "wav" / "u1.wav", killed / "wav", killed):
        os.utime(path, (1, 1))
    alive = tmp_path / f"labels.tmp-{os.getpid()}"  # a run in progress: kept
    alive.mkdir()
    proc = tool("hubert_labels", "--data", st_corpus["data"], "--out", out, "--clusters", "2",
                timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"removing {killed}, left by a killed run" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", alive.name]


def test_a_training_save_dir_takes_one_training_at_a_time(tmp_path, st_corpus, mt_checkpoint):
    # T04: two trainings into one --save-dir mixed their checkpoints
    save = tmp_path / "st"
    save.mkdir()
    with open(save / ".train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another training holds it
        proc = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save))
        refused(proc, f"--save-dir {save}: another training is writing its checkpoints here")
    assert sorted(p.name for p in save.iterdir()) == [".train.lock"]


def st_args(corpus, mt_checkpoint, save, updates=1):
    return common_train_args(corpus, save) + [
        "--st-training", "--mt-finetune", "--arch", "hubert_transformer_pruning_layer",
        "--pruning-rate", "0.9", "--hubert-model-path", corpus["hubert"],
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0], "--conv-channels", "32",
        "--max-tokens", "100000", "--max-update", str(updates), "--disable-validation",
        "--no-epoch-checkpoints"]


# --- fairseq's own failures in one line --------------------------------------

@pytest.mark.parametrize("change,pieces", [
    (["--fp16"], ["--fp16 with --cpu"]),  # T05 (the tests' training runs with --cpu)
    (["--bf16"], ["--bf16", "torch_xla"]),  # T06
])
def test_half_precision_without_cuda_is_one_line(tmp_path, st_corpus, mt_checkpoint, change,
                                                 pieces):
    proc = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, tmp_path / "st") + change)
    refused(proc, *pieces)


def test_a_save_dir_that_is_a_file_is_one_line(tmp_path, st_corpus, mt_checkpoint):  # T11
    save = tmp_path / "st"
    save.write_text("a file")
    proc = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save))
    refused(proc, f"--save-dir {save}: exists and is not a folder")
    assert save.read_text() == "a file"


@pytest.mark.parametrize("flag", ["--restore-file", "--finetune-from-model"])
def test_another_stages_checkpoint_to_start_from_is_named(tmp_path, st_corpus, mt_checkpoint,
                                                          flag):  # T12, T13
    given = st_corpus["hubert"] if flag == "--restore-file" else mt_checkpoint[0]
    proc = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, tmp_path / "st")
               + [flag, given])
    line = refused(proc, f"{flag} {given}: its parameters do not fit this run's model")
    assert ("hubert_pretraining" if flag == "--restore-file" else "deltalm") in line


def test_model_overrides_that_are_not_a_dict_are_one_line(tmp_path, st_corpus,
                                                          fixed_checkpoint):  # G07
    proc = cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"), "--task",
        "speech_and_text_translation", "--tgt-lang", "de", "--path", fixed_checkpoint,
        "--gen-subset", "dev", "--cpu", "--model-overrides", "not a dict"])
    refused(proc, "--model-overrides 'not a dict': not a Python dict literal")


@pytest.mark.parametrize("overrides,message", [
    ("{'foo_bar': 1}", "--model-overrides key 'foo_bar': not an argument of this model or task;"),
    ("{'pruning-rate': 0.5}", "--model-overrides key 'pruning-rate': not an argument of this "
                              "model or task (did you mean 'pruning_rate'?)"),
])
def test_model_overrides_the_model_does_not_read_are_named(overrides, message):  # G04, G05
    from argparse import Namespace

    from npy_tome_layer.st.task import check_model_overrides_text

    with pytest.raises(InputError, match=re.escape(message)):
        check_model_overrides_text(Namespace(model_overrides=overrides))
    assert check_model_overrides_text(Namespace(model_overrides="{'pruning_rate': 0.5}")) == {
        "pruning_rate": 0.5}


def test_a_keep_rate_override_of_a_scheduled_checkpoint_is_refused():  # G25, G13
    """fairseq-generate's path: the task set up with the overrides, then the
    checkpoint loaded with them. pruning_rate alone set nothing on a schedule;
    the sweep's three rates pin it."""
    from argparse import Namespace

    from fairseq import checkpoint_utils

    from npy_tome_layer.st.task import SpeechAndTextTranslationTask

    data = os.path.join(REPO, "tests", "data", "st_checkpoints_v1")
    path = os.path.join(data, "schedule.pt")

    def load(overrides):
        task = SpeechAndTextTranslationTask.setup_task(Namespace(
            data=data, config_yaml="config.yaml", model_overrides=repr(overrides),
            tgt_lang="de", eval_bleu=False))
        return checkpoint_utils.load_model_ensemble([path], arg_overrides=overrides, task=task)

    with pytest.raises(InputError, match=r"--model-overrides pruning_rate 0.3: this checkpoint's "
                                         r"keep rate follows a schedule \(pruning_max_rate 1.0, "
                                         r"pruning_min_rate 0.8\)"):
        load({"pruning_rate": 0.3})
    models, _ = load({"pruning_rate": 0.3, "pruning_max_rate": 0.3, "pruning_min_rate": 0.3})
    assert models[0].encoder.hubert.encoder.final_setting[1] == 0.3
    from npy_tome_layer.st.model import hubert_from_st_checkpoint  # the same, through the API

    with pytest.raises(InputError, match=r"pruning_rate 0.3: this checkpoint's keep rate follows"):
        hubert_from_st_checkpoint(path, pruning_rate=0.3)
    assert hubert_from_st_checkpoint(path, pruning_rate=0.3, pruning_max_rate=None,
                                     pruning_min_rate=None).encoder.final_setting[1] == 0.3
    # G13: a reduction with weights of its own, which the checkpoint never learned
    with pytest.raises(InputError, match=r"the checkpoint has no weights for token_reduction "
                                         r"'conv' \(encoder\.hubert\.encoder\.length_reduction\."):
        load({"token_reduction": "conv", "pruning_max_rate": None, "pruning_min_rate": None})


# --- BLEU against the references as written ---------------------------------

def test_bleu_is_scored_against_the_manifests_references(tmp_path, st_corpus):  # G16
    import sentencepiece

    from fairseq.scoring.bleu import SacrebleuConfig
    from npy_tome_layer.io.dictionary import load_dictionary
    from npy_tome_layer.st.dataset import COLUMNS, SpeechTranslationDataset
    from npy_tome_layer.st.scoring import SignedSacrebleuScorer
    from npy_tome_layer.st.task import SpeechAndTextTranslationTask

    rows = [r.split("\t") for r in Path(st_corpus["data"], "dev.tsv").read_text().splitlines()]
    written = ["Die Frau \U0001F600 findet \u200bes \u202egut", "\u05e9\u05dc\u05d5\u05dd Welt"]
    target = COLUMNS.index("tgt_text")
    for row, text in zip(rows[1:3], written):
        row[target] = text
    manifest = tmp_path / "dev.tsv"
    manifest.write_text("\n".join("\t".join(r) for r in rows[:3]) + "\n")
    dictionary = load_dictionary(st_corpus["dict"], st_corpus["dict"])
    spm = sentencepiece.SentencePieceProcessor(model_file=st_corpus["spm"])
    dataset = SpeechTranslationDataset.from_tsv(
        str(manifest), dictionary, lambda text: " ".join(spm.encode(text, out_type=str)),
        shuffle=False)
    batch = dataset.collater([dataset[0], dataset[1]])
    # what fairseq-generate hands the scorer: the target's tokens as text
    # (fairseq's sentencepiece decoding: pieces joined, "\u2581" read as a blank)
    as_tokens = [dictionary.string(t, escape_unk=True).replace(" ", "").replace("\u2581", " ")
                 .strip() for t in batch["target"]]
    assert any("<unk>" in text for text in as_tokens)

    class NoSearch:
        def generate(self, *args, **kwargs):
            return []

    scorer = SignedSacrebleuScorer(SacrebleuConfig())
    task = object.__new__(SpeechAndTextTranslationTask)  # inference_step needs no state
    task.inference_step(NoSearch(), [None], batch)
    for reference, hypothesis in zip(as_tokens, written):  # a perfect translation
        scorer.add_string(reference, hypothesis)
    assert scorer.raw_ref == written
    assert scorer.score() == pytest.approx(100.0)

    # validation's --eval-bleu: the same references, as written
    from argparse import Namespace

    import sacrebleu

    class Pieces:  # fairseq's sentencepiece decoding
        def decode(self, text):
            return text.replace(" ", "").replace("\u2581", " ").strip()

    class Echo:  # "translates" each utterance into its own target tokens
        def generate(self, models, sample, **kwargs):
            return [[{"tokens": t[t != dictionary.pad()]}] for t in sample["target"]]

    task.dictionary = dictionary
    task.args = Namespace(eval_bleu_remove_bpe=None, eval_bleu_print_samples=False,
                          eval_tokenized_bleu=False)
    task._bleu = (Echo(), Pieces(), None)
    hypotheses = [task.detokenize(t[t != dictionary.pad()], Pieces(), None)
                  for t in batch["target"]]
    stats = task._bleu_statistics(batch, None)
    expected = sacrebleu.corpus_bleu(hypotheses, [written])
    assert (stats.counts, stats.totals, stats.ref_len) == (
        expected.counts, expected.totals, expected.ref_len)


# --- scripts -----------------------------------------------------------------

def evaluate_tools(tmp_path):
    """A bin folder for evaluate.sh: its python runs ``-c`` code for real (the
    wrapper that ties fairseq-generate to the script) and passes the checkpoint
    check; its fairseq-generate records its PID, then prints a BLEU line after
    GENERATE_SLEEP seconds."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    (fake_bin / "python").write_text(f'#!/usr/bin/env bash\n[ "$1" = -c ] && exec "{PY}" "$@"\n'
                                     "exit 0\n")
    (fake_bin / "fairseq-generate").write_text(
        '#!/usr/bin/env bash\necho $$ >> "$GENERATE_PIDS"\necho "S-0\thallo"\n'
        'sleep "${GENERATE_SLEEP:-0}"\n'
        'echo "Generate test with beam=8: BLEU = ${GENERATE_BLEU:-12.34}"\n')
    for name in ("python", "fairseq-generate"):
        (fake_bin / name).chmod(0o755)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "generate.args").write_text("--beam 8\n")
    checkpoint = tmp_path / "ck" / "avg.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"a checkpoint's bytes")
    env = dict(os.environ, PY=str(fake_bin / "python"), DEVICE="cpu", CONFIG_DIR=str(configs),
               DATA_ROOT=str(tmp_path / "data"), EXTRA_ARGS="",
               GENERATE_PIDS=str(tmp_path / "pids"))
    return env, checkpoint


def evaluate(env, checkpoint, scripts=SCRIPTS, **variables):
    return subprocess.Popen(["bash", os.path.join(scripts, "evaluate.sh"), "de", str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env, **variables))


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_two_evaluations_of_one_checkpoint_each_keep_a_whole_output(tmp_path):  # S2
    env, checkpoint = evaluate_tools(tmp_path)
    runs = [evaluate(env, checkpoint, GENERATE_SLEEP="2", GENERATE_BLEU=bleu)
            for bleu in ("11.00", "22.00")]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr
        assert "nothing kept" not in stderr
    kept = (checkpoint.parent / "generate-avg.txt").read_text()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert kept.startswith(f"# checkpoint sha256 {digest} {checkpoint}\n")
    assert kept.count("Generate test") == 1
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["avg.pt", "generate-avg.txt"]


def decoding_evaluation(tmp_path):
    """(env, checkpoint, evaluate.sh still decoding for a minute, its fairseq-generate's pid)."""
    env, checkpoint = evaluate_tools(tmp_path)
    run = evaluate(env, checkpoint, GENERATE_SLEEP="60")
    pids = tmp_path / "pids"
    for _ in range(300):
        if pids.exists() and pids.read_text().strip():
            break
        time.sleep(0.1)
    return env, checkpoint, run, int(pids.read_text().split()[0])


def ended(pid: int) -> bool:
    """Whether process ``pid`` ends within 10 s."""
    for _ in range(100):
        if not is_running(pid):
            break
        time.sleep(0.1)
    return not is_running(pid)


def test_a_killed_evaluation_takes_its_decoding_with_it(tmp_path):  # S8
    env, checkpoint, run, generate = decoding_evaluation(tmp_path)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert ended(generate), "fairseq-generate outlived the killed evaluate.sh"
    left = [p for p in checkpoint.parent.iterdir() if ".tmp-" in p.name]
    assert len(left) == 1  # kill -9 runs no trap: the next run removes it
    os.utime(left[0], (1, 1))
    again = evaluate(env, checkpoint)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert f"[evaluate] removing {left[0]}, left by a killed run" in stderr
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["avg.pt", "generate-avg.txt"]


def test_a_stopped_evaluation_ends_its_decoding_and_keeps_nothing(tmp_path):
    _, checkpoint, run, generate = decoding_evaluation(tmp_path)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=10)  # not after the decoding's 60 s
    assert ended(generate)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["avg.pt"]


def test_a_killed_training_script_takes_its_training_with_it(tmp_path):
    """train_st.sh killed with kill -9 (no trap runs): its fairseq-train, which
    would train on into the --save-dir and hold its lock, ends with it."""
    env, _ = evaluate_tools(tmp_path)
    fake_bin = Path(env["PY"]).parent
    (fake_bin / "fairseq-train").write_text(
        '#!/usr/bin/env bash\necho $$ >> "$GENERATE_PIDS"\nsleep 60\n')
    (fake_bin / "fairseq-train").chmod(0o755)
    configs = Path(env["CONFIG_DIR"])
    for name in ("st.args", "st_fixed.args"):
        (configs / name).write_text("--max-update 2\n")
    mt = tmp_path / "mt.pt"
    mt.write_bytes(b"an MT checkpoint's bytes")
    run = subprocess.Popen(["bash", os.path.join(SCRIPTS, "train_st.sh"), "de", "fixed"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(env, MT_CHECKPOINT=str(mt), ST_DIR=str(tmp_path / "st")))
    pids = tmp_path / "pids"
    for _ in range(300):
        if pids.exists() and pids.read_text().strip():
            break
        time.sleep(0.1)
    assert pids.exists(), run.communicate(timeout=60)
    training = int(pids.read_text().split()[0])
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert ended(training), "fairseq-train outlived the killed train_st.sh"


def test_evaluate_names_the_table_holding_two_rows_for_a_language(tmp_path):  # S4
    import shutil

    env, checkpoint = evaluate_tools(tmp_path)
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts")
    (repo / "configs").mkdir()
    (repo / "configs" / "lenpen.tsv").write_text("de\t1.2\nfr\t1.8\nde 1.0\n")
    run = evaluate(env, checkpoint, scripts=repo / "scripts")
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 2
    assert stderr.strip().splitlines()[-1] == (
        f"error: {repo}/configs/lenpen.tsv has 2 rows for de; keep one")
    assert not (tmp_path / "pids").exists()  # nothing decoded


def test_scripts_say_at_once_that_py_has_no_torch(tmp_path):  # S5a
    no_torch = tmp_path / "python"
    no_torch.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" -S -I -c '
                        '"import sys; sys.exit(\'no module named torch\')"\n')
    no_torch.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DEVICE"}
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, "train_st.sh"), "de", "fixed"],
                          capture_output=True, text=True, env=dict(env, PY=str(no_torch)),
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: PY={no_torch} cannot import torch (not the project's environment? "
        f"scripts/install.sh makes {REPO}/.venv)"]


def test_gpu_check_without_cuda_says_so_at_once_and_leaves_nothing(tmp_path):  # S7
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "WORK", "OUT")}
    started = time.monotonic()
    proc = subprocess.run(["bash", os.path.join(SCRIPTS, "gpu_check.sh")], capture_output=True,
                          text=True, env=dict(env, TMPDIR=str(tmp), OUT=str(tmp_path / "out"),
                                              PY=PY), timeout=120)
    assert proc.returncode == 2
    assert "sees no CUDA GPU on this machine; DEVICE=cpu scripts/gpu_check.sh" in proc.stderr
    assert time.monotonic() - started < 30
    assert os.listdir(tmp) == [] and not (tmp_path / "out").exists()


# --- the API's padding taken at its word, finiteness in the model's dtype, paths -------

def test_a_padding_mask_that_is_not_right_padding_is_refused(hubert_tiny):  # A07, A08, A09, A10
    """The encoder reads a row as its first n valid samples: a row padded on the
    left, or a mask with a hole, was silently read as other audio."""
    import torch

    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.9)
    src = torch.randn(2, 8000)
    left = torch.zeros(2, 8000, dtype=torch.bool)
    left[1, :1000] = True
    with pytest.raises(InputError, match=r"row 1 of padding_mask has a valid sample after "
                                         r"padding \(at sample 1000\): a row must be its valid "
                                         r"samples, then padding"):
        model(src, padding_mask=left, features_only=True)
    hole = torch.zeros(2, 8000, dtype=torch.bool)
    hole[0, 5000:6000] = True
    with pytest.raises(InputError, match=r"row 0 .* \(at sample 6000\)"):
        model(src, padding_mask=hole, features_only=True)
    with pytest.raises(InputError, match=r"padding_mask must be a bool tensor shaped like "
                                         r"source \(2, 8000\), got list"):
        model(src, padding_mask=[[False] * 8000] * 2, features_only=True)
    with pytest.raises(InputError, match=r"padding_mask must be a bool tensor shaped like "
                                         r"source \(2, 8000\), got numpy.ndarray: use "
                                         r"torch.as_tensor\(padding_mask, dtype=torch.bool\)"):
        model(src, padding_mask=np.zeros((2, 8000), dtype=bool), features_only=True)  # A08
    right = torch.zeros(2, 8000, dtype=torch.bool)
    right[1, 6000:] = True
    padded = model(src, padding_mask=right, features_only=True)["x"]
    alone = model(src[1:, :6000], features_only=True)["x"]
    assert padded.shape[1] >= alone.shape[1]


@pytest.mark.parametrize("dtype,sample", [("half", 1e6), ("bfloat16", 1e39)])
def test_a_sample_beyond_the_models_dtype_is_refused(hubert_tiny, dtype, sample):  # A17c
    import torch

    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    model = getattr(load_pruned_hubert(hubert_tiny, pruning_rate=0.9), dtype)()
    src = torch.zeros(1, 8000, dtype=torch.float64)
    src[0, 10] = sample
    with pytest.raises(InputError, match=r"source has non-finite samples \(NaN or inf\) in row "
                                         r"0 once cast to the model's "
                                         rf"{'float16' if dtype == 'half' else dtype}"):
        model(src, features_only=True)


@pytest.mark.parametrize("dtype,sample,largest", [("bfloat16", 3.3e38, "1.841e+19"),
                                                   ("float", 1e30, "1.845e+19"),
                                                   ("half", 300.0, "255.9")])
def test_a_sample_the_front_end_would_overflow_is_refused(hubert_tiny, dtype, sample,
                                                          largest):  # A17b
    """Finite in the model's dtype, it overflows the front end's convolution
    near the dtype's limit (3.3e38 in bfloat16 gave non-finite features):
    samples beyond the dtype's square root are refused, those below kept."""
    import torch

    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    model = getattr(load_pruned_hubert(hubert_tiny, pruning_rate=0.9), dtype)()
    dtype_name = {"float": "float32", "half": "float16"}.get(dtype, dtype)
    src = torch.zeros(2, 8000)
    src[1, 10] = sample
    with pytest.raises(InputError, match=re.escape(
            f"source has a sample of magnitude {sample:.4g} in row 1, beyond the {largest} "
            f"the model's {dtype_name} front end takes")):
        model(src, features_only=True)
    src[1, 10] = 1.0
    assert torch.isfinite(model(src, features_only=True)["x"]).all()


def test_a_keep_rate_beside_a_schedule_is_refused(hubert_tiny):  # A49
    """The schedule's min rate decides the keep rate: a pruning_rate given
    beside it set nothing. A max rate alone takes pruning_rate as its end."""
    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    with pytest.raises(InputError, match=re.escape(
            "pruning_rate 0.5: the keep rate follows a schedule (pruning_max_rate 1.0, "
            "pruning_min_rate 0.9), which pruning_rate does not set")):
        load_pruned_hubert(hubert_tiny, pruning_rate=0.5, pruning_max_rate=1.0,
                           pruning_min_rate=0.9)
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.5, pruning_max_rate=1.0)
    assert model.encoder.final_setting[1] == 0.5


def test_a_float64_source_too_large_for_float32_is_refused(hubert_tiny):  # A11
    import torch

    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.9)
    src = torch.zeros(1, 8000, dtype=torch.float64)
    src[0, 3] = 1e300
    with pytest.raises(InputError, match=r"once cast to the model's float32"):
        model(src, features_only=True)


def test_a_path_like_or_bytes_path_loads_and_another_type_is_named(hubert_tiny):  # A30, A43
    from npy_tome_layer.encoder.pruned_hubert import load_pruned_hubert

    for path in (Path(hubert_tiny), os.fsencode(hubert_tiny)):
        assert load_pruned_hubert(path, pruning_rate=0.9).encoder.length_reduction.name == "prune"
    with pytest.raises(InputError, match=r"a checkpoint path must be a str or os.PathLike, "
                                         r"got int"):
        load_pruned_hubert(3)


# --- the target language: the data's and the checkpoint's ------------------------

def st_task(data, **args):
    from argparse import Namespace

    from npy_tome_layer.st.task import SpeechAndTextTranslationTask

    return SpeechAndTextTranslationTask.setup_task(Namespace(**{
        "data": data, "config_yaml": "config.yaml", "eval_bleu": False, **args}))


def test_another_target_language_than_the_datas_is_refused(st_corpus):  # T10
    with pytest.raises(InputError, match=r"--tgt-lang fr: \S+/config.yaml was prepared for "
                                         r"en-de \(its targets are de\)"):
        st_task(st_corpus["data"], tgt_lang="fr")
    assert st_task(st_corpus["data"], tgt_lang=None).args.tgt_lang == "de"


def test_another_target_language_than_the_checkpoints_is_refused():  # G12
    """tests/data's checkpoints were trained en-de; their data folder's config.yaml,
    written before it named the language, leaves the check to the checkpoint."""
    from fairseq import checkpoint_utils

    data = os.path.join(REPO, "tests", "data", "st_checkpoints_v1")
    with pytest.raises(InputError, match=r"--tgt-lang fr: the checkpoint was trained to "
                                         r"translate into de"):
        checkpoint_utils.load_model_ensemble([os.path.join(data, "merge.pt")],
                                             task=st_task(data, tgt_lang="fr"))
    checkpoint_utils.load_model_ensemble([os.path.join(data, "merge.pt")],
                                         task=st_task(data, tgt_lang=None))


def test_preparing_another_pair_into_a_prepared_folder_is_refused(mustc):  # T10, the data
    """config.yaml names the pair's target language; a folder prepared before it
    did (no tgt_lang there) is still taken for its own pair."""
    import shutil

    import yaml

    from npy_tome_layer.tools.prepare_mustc import PreparationError

    run_prepare(mustc)
    config = os.path.join(mustc["out"], "config.yaml")
    with open(config, encoding="utf-8") as f:
        assert yaml.safe_load(f)["tgt_lang"] == "de"
    shutil.copytree(os.path.join(mustc["root"], "en-de"), os.path.join(mustc["root"], "en-fr"))
    for split in ("train", "dev"):
        shutil.copy(mustc["txt"](split, "de"),
                    os.path.join(mustc["root"], "en-fr", "data", split, "txt", f"{split}.fr"))
    with pytest.raises(PreparationError, match=r"config.yaml: \S+ holds the pair en-de, not "
                                               r"en-fr: prepare en-fr into another --out"):
        run_prepare(mustc, tgt_lang="fr")
    with open(config, encoding="utf-8") as f:
        old = {k: v for k, v in yaml.safe_load(f).items() if k != "tgt_lang"}
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(old, f)
    run_prepare(mustc)  # an older folder: kept, as before


def test_a_finished_run_is_not_trained_again(tmp_path, st_corpus, mt_checkpoint):
    """fairseq-train resumed at --max-update trained one update more (each
    rerun of a finished stage changed its checkpoint): it now ends at once."""
    save = tmp_path / "st"
    first = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save))
    assert first.returncode == 0, first.stderr[-3000:]
    last = save / "checkpoint_last.pt"
    before = last.read_bytes()
    again = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f"fairseq-train: {last} has 1 updates, --max-update 1: the run is finished, nothing "
            "to train (raise --max-update to train on)") in again.stdout
    assert last.read_bytes() == before


@pytest.mark.parametrize("change,line", [
    (["--pruning-rate", "0.5"], "--pruning-rate 0.5: the run resumes from {last}, trained with "
                                "pruning_rate 0.9; resume with its settings, or train into "
                                "another --save-dir (--finetune-from-model {last} starts there "
                                "from its weights)"),  # T01
    (["--token-reduction", "conv"], "--token-reduction conv: the run resumes from {last}, "
                                    "trained with token_reduction prune;"),  # T02
    (["--conv-kernel-sizes", "5"], "--conv-kernel-sizes 5: the run resumes from {last}, "
                                   "trained with conv_kernel_sizes 5,5;"),
])
def test_a_resumed_run_keeps_its_reduction_settings(tmp_path, st_corpus, mt_checkpoint, change,
                                                    line):  # T01-T03
    """fairseq resumed a 0.9 run at 0.5 (or another reduction) without a word,
    and the checkpoint then recorded 0.5; conv's weights failed in a traceback."""
    save = tmp_path / "st"
    first = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save))
    assert first.returncode == 0, first.stderr[-3000:]
    last = save / "checkpoint_last.pt"
    before = last.read_bytes()
    proc = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save, updates=2) + change)
    refused(proc, line.format(last=last))
    assert last.read_bytes() == before
    # the same settings resume, as fairseq does
    again = cli("fairseq-train", st_args(st_corpus, mt_checkpoint, save, updates=2))
    assert again.returncode == 0 and "num_updates 2" in again.stdout + again.stderr
