"""Bad input, third pass: each case of the probe gets one error naming the
file/line/flag, checked before anything is written, and never a traceback
from the command lines. Numbers refer to the issue's list."""
import errno
import glob
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch
import yaml

from npy_tome_layer.errors import InputError, exit_on_input_error, input_error_message
from npy_tome_layer.tools.prepare_mustc import PreparationError, prepare

from .conftest import REPO, VENV_BIN, common_train_args
from .test_prepare_mustc import write_corpus


def quiet(*_):
    pass


@pytest.fixture
def mustc(tmp_path, st_corpus):
    root = tmp_path / "mustc"
    write_corpus(str(root), {"train": [[8000, 9000]], "dev": [[7000]]})
    data = root / "en-de" / "data"
    return {"root": str(root), "out": str(tmp_path / "out"), "spm": st_corpus["spm"],
            "dict": st_corpus["dict"], "data": data,
            "txt": lambda split, ext: data / split / "txt" / f"{split}.{ext}"}


def run_prepare(mustc, **changes):
    args = {"root": mustc["root"], "tgt_lang": "de", "out": mustc["out"],
            "spm_model": mustc["spm"], "dictionary": mustc["dict"], "log": quiet, **changes}
    return prepare(**args)


def last_line(stderr):
    """The error line (fairseq's import may log a line before it)."""
    return stderr.strip().splitlines()[-1]


def written(out):
    return sorted(os.listdir(out)) if os.path.isdir(out) else []


# --- 4: every flag's file checked before anything is written -----------------

@pytest.mark.parametrize("change,message", [
    ("out_is_a_file", r"--out .*out: exists and is not a folder"),
    ("spm_missing", r"--spm-model .*missing.model: not found"),
    ("spm_not_sentencepiece", r"--spm-model .*not_spm.model: not a sentencepiece model"),
    ("dict_missing", r"--dict .*missing.txt: not found"),
    ("dict_not_a_dictionary", r"--dict .*bad_dict.txt: not a fairseq dictionary"),
])
def test_flags_files_are_checked_before_anything_is_written(mustc, tmp_path, change, message):
    changes = {}
    if change == "out_is_a_file":
        open(mustc["out"], "w").close()
    elif change == "spm_missing":
        changes["spm_model"] = str(tmp_path / "missing.model")
    elif change == "spm_not_sentencepiece":
        (tmp_path / "not_spm.model").write_text("not a model\n")
        changes["spm_model"] = str(tmp_path / "not_spm.model")
    elif change == "dict_missing":
        changes["dictionary"] = str(tmp_path / "missing.txt")
    else:
        (tmp_path / "bad_dict.txt").write_text("token_without_count\n")
        changes["dictionary"] = str(tmp_path / "bad_dict.txt")
    with pytest.raises(InputError, match=message):
        run_prepare(mustc, **changes)
    assert written(mustc["out"]) == []


# --- 5: a full disk names the file, leaves nothing half-written --------------

def test_full_disk_names_the_file_and_leaves_nothing(mustc, monkeypatch, capsys):
    from npy_tome_layer.io import atomic
    from npy_tome_layer.tools import prepare_mustc

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")  # names no file, as write() does
    monkeypatch.setattr(atomic.os, "replace", full)
    monkeypatch.setattr(sys, "argv", [
        "prepare_mustc", "--mustc-root", mustc["root"], "--tgt-lang", "de", "--out", mustc["out"],
        "--spm-model", mustc["spm"], "--dict", mustc["dict"]])
    with pytest.raises(SystemExit) as exit_info:
        prepare_mustc.main()
    assert str(exit_info.value.code).startswith("prepare_mustc: cannot write ")
    assert str(exit_info.value.code).endswith(".tsv: No space left on device")
    assert "\n" not in str(exit_info.value.code)
    assert [p for p in written(mustc["out"]) if p != ".prepare.lock"] == []


# --- 6: what is written can be read back ------------------------------------

def test_a_sentence_beyond_the_manifest_field_limit_is_refused_at_its_line(mustc):
    path = mustc["txt"]("dev", "de")
    path.write_text("x" * 1_000_000 + "\n")
    with pytest.raises(PreparationError, match=r"dev: line 1 .*a sentence of 1000000 characters"):
        run_prepare(mustc)
    assert not os.path.exists(os.path.join(mustc["out"], "dev.tsv"))


def test_a_manifest_field_beyond_the_limit_names_its_line(tmp_path):
    from npy_tome_layer.st.dataset import COLUMNS, ManifestError, read_manifest

    tsv = tmp_path / "x.tsv"
    tsv.write_text("\t".join(COLUMNS) + "\n" + "a\tb.wav\t1\tok\tok\ts\n"
                   + "b\tb.wav\t1\t" + "y" * 200_000 + "\tok\ts\n")
    with pytest.raises(ManifestError, match=r"x.tsv:3: field larger than field limit"):
        read_manifest(str(tsv))


# --- 7: a segment too short for one HuBERT frame ---------------------------

def test_a_segment_shorter_than_one_frame_is_refused_at_preparation(mustc):
    path = mustc["txt"]("dev", "yaml")
    segments = yaml.safe_load(path.read_text())
    segments[0]["duration"] = 0.001
    path.write_text(yaml.safe_dump(segments))
    with pytest.raises(PreparationError,
                       match=r"dev: line 1 .*segment of 16 samples .*at least 400 for one frame"):
        run_prepare(mustc)


def test_a_manifest_row_shorter_than_one_frame_names_its_row(tmp_path, mustc):
    from fairseq.data import Dictionary

    from npy_tome_layer.st.dataset import COLUMNS, ManifestError, SpeechTranslationDataset

    wav = glob.glob(os.path.join(mustc["root"], "en-de", "data", "dev", "wav", "*.wav"))[0]
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("\t".join(COLUMNS) + f"\nutt7\t{wav}:1234:16\t16\tHallo\tHello\ts\n")
    with pytest.raises(ManifestError, match=r"dev.tsv:2 \(id utt7\): 16 samples; HuBERT needs "
                                            r"at least 400"):
        SpeechTranslationDataset.from_tsv(str(tsv), Dictionary(), lambda s: s)


# --- 8: what passed silently -------------------------------------------------

def test_a_tab_in_the_root_path_is_refused(tmp_path, st_corpus):
    root = tmp_path / "must\tc"
    write_corpus(str(root), {"train": [[8000]], "dev": [[7000]]})
    with pytest.raises(PreparationError, match=r"a tab or line break in the path"):
        prepare(str(root), "de", str(tmp_path / "out"), st_corpus["spm"], st_corpus["dict"],
                log=quiet)


def test_a_carriage_return_inside_a_sentence_keeps_the_rows_and_is_reported(mustc):
    from npy_tome_layer.st.dataset import read_manifest

    mustc["txt"]("dev", "de").write_bytes("Ein Satz\rmit Wagenrücklauf.\n".encode())
    logs = []
    run_prepare(mustc, log=logs.append)
    rows = read_manifest(os.path.join(mustc["out"], "dev.tsv"))
    assert len(rows) == 1 and rows[0]["tgt_text"] == "Ein Satz mit Wagenrücklauf."
    assert any("warning: dev: line 1" in line and "carriage return" in line for line in logs)


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", "\u200b \u2060"])
def test_a_translation_of_invisible_characters_is_empty(mustc, invisible):
    mustc["txt"]("dev", "de").write_text(invisible + "\n", encoding="utf-8")
    with pytest.raises(PreparationError, match=r"dev: line 1 .*empty transcript or translation"):
        run_prepare(mustc)


@pytest.mark.parametrize("remove,message", [
    ("dev", r"no dev split"), ("train", r"no train split"), ("", r"no data/ folder")])
def test_missing_splits_or_data_folder_are_errors(mustc, remove, message):
    import shutil

    shutil.rmtree(os.path.join(mustc["root"], "en-de", "data", remove))
    with pytest.raises(PreparationError, match=message):
        run_prepare(mustc)
    assert written(mustc["out"]) == []


def test_a_rerun_with_another_spm_model_is_refused(mustc, tmp_path):
    import shutil

    run_prepare(mustc)
    other = str(tmp_path / "other_spm.model")
    shutil.copy(mustc["spm"], other)
    with pytest.raises(PreparationError, match=r"config.yaml names another --spm-model or --dict"):
        run_prepare(mustc, spm_model=other)


# --- 14: a killed preparation ------------------------------------------------

def test_stale_temporaries_of_a_killed_run_are_removed(mustc):
    os.makedirs(os.path.join(mustc["out"], "mt.tmp-99999", "spm"))
    open(os.path.join(mustc["out"], "train.tsv.tmp-99999"), "w").close()
    run_prepare(mustc)
    assert not glob.glob(os.path.join(mustc["out"], "*.tmp-*"))
    assert os.path.isdir(os.path.join(mustc["out"], "mt"))


def test_the_preprocess_child_dies_with_its_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from npy_tome_layer.tools.prepare_mustc import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        with open(f"/proc/{child}/stat") as f:
            if f.read().split()[2] == "Z":  # reaped later by init; not running
                break
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{child}"), "the child outlived its parent"


# --- 9: setup errors from fairseq-train are one line -------------------------

@pytest.mark.parametrize("case", ["init_layer_beyond_layers", "missing_hubert",
                                  "malformed_config", "min_above_max"])
def test_setup_errors_leave_fairseq_train_as_one_line(st_corpus, mt_checkpoint, tmp_path, case):
    import shutil

    args = common_train_args(st_corpus, tmp_path / "ckpt") + [
        "--st-training", "--arch", "hubert_transformer_pruning_layer",
        "--hubert-model-path", st_corpus["hubert"], "--max-tokens", "100000",
        "--max-tokens-text", "500", "--max-update", "1", "--valid-subset", "dev"]
    if case == "init_layer_beyond_layers":
        args += ["--pruning-init-layer", "99"]
        expected = "pruning_init_layer"
    elif case == "missing_hubert":
        args[args.index("--hubert-model-path") + 1] = str(tmp_path / "gone.pt")
        expected = "gone.pt: checkpoint file does not exist"
    elif case == "min_above_max":
        args[args.index("hubert_transformer_pruning_layer")] = \
            "hubert_transformer_pruning_layer_schedule"
        args += ["--pruning-min-rate", "0.9", "--pruning-max-rate", "0.8"]
        expected = "0.9"
    else:
        data = tmp_path / "data"
        shutil.copytree(st_corpus["data"], data)
        (data / "config.yaml").write_text("vocab_filename: [unclosed\n")
        args[0] = str(data)
        expected = "config.yaml: not valid YAML"
    proc = subprocess.run([os.path.join(VENV_BIN, "fairseq-train")] + [str(a) for a in args],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairseq-train: error: ") and expected in last, last


def test_an_input_error_raised_in_a_spawned_worker_is_recognised():
    class ProcessRaisedException(Exception):
        pass
    text = ("\n\n-- Process 0 terminated with the following error:\nTraceback (most recent call "
            "last):\n  File \"x.py\", line 1\nnpy_tome_layer.st.dataset.ManifestError: "
            "train.tsv:3 (id a): 16 samples\n")
    assert input_error_message(ProcessRaisedException(text)) == "train.tsv:3 (id a): 16 samples"
    other = text.replace("npy_tome_layer.st.dataset.ManifestError", "KeyError")
    assert input_error_message(ProcessRaisedException(other)) is None
    assert input_error_message(KeyError("x")) is None


def test_tools_print_input_errors_and_write_errors_as_one_line():
    with pytest.raises(SystemExit) as exit_info, exit_on_input_error("tool"):
        raise InputError("x.tsv:3: bad")
    assert exit_info.value.code == "tool: x.tsv:3: bad"
    with pytest.raises(SystemExit) as exit_info, exit_on_input_error("tool"):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/file")
    assert exit_info.value.code == "tool: cannot write /out/file: No space left on device"
    with pytest.raises(KeyError), exit_on_input_error("tool"):
        raise KeyError("a bug keeps its traceback")


# --- 10: tools given the wrong kind of checkpoint ----------------------------

@pytest.fixture
def wrong_files(tmp_path, mt_checkpoint, st_corpus):
    raw = torch.load(mt_checkpoint[0], weights_only=True)
    raw["cfg"]["model"].hubert_cfg = {"stand": "in"}  # what makes an ST checkpoint of this project
    raw["cfg"]["task"].tgt_lang = "de"
    st_de = tmp_path / "st_de.pt"
    torch.save(raw, st_de)
    not_torch = tmp_path / "not_torch.pt"
    with zipfile.ZipFile(not_torch, "w") as z:
        z.writestr("readme.txt", "hello")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(mt_checkpoint[0], "rb").read()[:5000])
    return {"mt": (mt_checkpoint[0], "an MT-stage checkpoint"),
            "hubert": (st_corpus["hubert"], "a HuBERT checkpoint"),
            "deltalm": (st_corpus["deltalm"], "released DeltaLM weights"),
            "not_torch": (str(not_torch), "not_torch.pt"),
            "truncated": (str(truncated), "truncated.pt"),
            "other_pair": (str(st_de), "a checkpoint of en-de, not en-fr")}


@pytest.mark.parametrize("kind", ["mt", "hubert", "deltalm", "not_torch", "truncated",
                                  "other_pair"])
def test_wrong_checkpoints_are_named_for_what_they_are(wrong_files, kind):
    from npy_tome_layer.st.model import check_st_checkpoint

    path, words = wrong_files[kind]
    with pytest.raises(InputError) as err:
        check_st_checkpoint(path, "fr")
    assert path in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("tool,extra", [
    ("sweep", ["--data", "DATA", "--out", "OUT"]),
    ("tune_lenpen", ["--data", "DATA", "--tgt-lang", "fr"]),
    ("compare_runs", None),
    ("visualize_pruning", ["--wav", "WAV", "--out", "OUT.png"]),
    ("inspect_checkpoint", None),
])
def test_tools_refuse_an_mt_stage_checkpoint_in_one_line(wrong_files, st_corpus, tmp_path, tool,
                                                          extra):
    path = wrong_files["mt"][0]
    wav = glob.glob(os.path.join(str(st_corpus["root"]), "mustc", "en-de", "data", "dev", "wav",
                                 "*.wav"))[0]
    if tool == "compare_runs":
        argv = ["--data", st_corpus["data"], "--run", f"a={path}"]
    elif tool == "inspect_checkpoint":
        argv = [path, "--expect-st"]
    else:
        swap = {"DATA": st_corpus["data"], "OUT": str(tmp_path / "o"), "WAV": wav,
                "OUT.png": str(tmp_path / "o.png")}
        argv = ["--checkpoint", path] + [swap.get(a, a) for a in extra]
    proc = subprocess.run([sys.executable, "-m", f"npy_tome_layer.tools.{tool}"] + argv,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last_line(proc.stderr) == (f"{tool}: {path}: an MT-stage checkpoint (arch deltalm_base, "
                                   "scripts/train_mt.sh), not an ST one; train_st.sh starts "
                                   "from it")


# --- 12: outputs checked before the work; averaging checks its inputs --------

@pytest.mark.parametrize("tool,argv,message", [
    ("sweep", ["--out", "FILE"], "--out FILE: exists and is not a folder"),
    ("tune_lenpen", ["--tgt-lang", "de", "--write", "MISSING/x.tsv"],
     "--write MISSING/x.tsv: folder MISSING does not exist"),
])
def test_outputs_are_checked_before_any_decoding(wrong_files, st_corpus, tmp_path, tool, argv,
                                                 message):
    path = wrong_files["other_pair"][0]  # never decoded: the output check comes first
    existing = tmp_path / "a_file"
    existing.write_text("")
    swap = {"FILE": str(existing), "MISSING/x.tsv": str(tmp_path / "missing" / "x.tsv")}
    message = message.replace("FILE", str(existing)).replace(
        "MISSING/x.tsv", str(tmp_path / "missing" / "x.tsv")).replace(
        "MISSING", str(tmp_path / "missing"))
    proc = subprocess.run([sys.executable, "-m", f"npy_tome_layer.tools.{tool}", "--checkpoint",
                           path, "--data", st_corpus["data"]] + [swap.get(a, a) for a in argv],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and last_line(proc.stderr) == f"{tool}: {message}", proc.stderr


def test_averaging_refuses_a_tensor_that_is_not_finite(tmp_path, mt_checkpoint):
    from npy_tome_layer.io.checkpoints import CheckpointError  # loading refuses it
    from npy_tome_layer.tools.average_checkpoints import average_model_states

    raw = torch.load(mt_checkpoint[0], weights_only=True)
    name = next(k for k, v in raw["model"].items() if v.is_floating_point() and v.numel() > 3)
    raw["model"][name] = raw["model"][name].clone()
    raw["model"][name].view(-1)[3] = float("inf")
    damaged = tmp_path / "checkpoint2.pt"
    torch.save(raw, damaged)
    with pytest.raises(CheckpointError, match=rf"checkpoint2.pt: tensor {name} holds NaN or inf"):
        average_model_states([mt_checkpoint[0], str(damaged)])


def test_averaging_refuses_a_hubert_file(st_corpus):
    from npy_tome_layer.tools.average_checkpoints import AveragingError, average_model_states

    with pytest.raises(AveragingError, match=r"task 'hubert_pretraining', not of this project"):
        average_model_states([st_corpus["hubert"]])


def test_averaging_onto_a_full_disk_names_the_file(tmp_path, mt_checkpoint, monkeypatch):
    from npy_tome_layer.io import atomic
    from npy_tome_layer.tools import average_checkpoints

    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.torch, "save", full)
    out = tmp_path / "avg.pt"
    with pytest.raises(SystemExit) as exit_info:
        average_checkpoints.main(["--inputs", mt_checkpoint[0], "--output", str(out)])
    assert exit_info.value.code == (f"average_checkpoints: cannot write {out}: "
                                    "No space left on device")
    assert os.listdir(tmp_path) == []
