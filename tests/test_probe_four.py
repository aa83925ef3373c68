"""Bad input, fourth probe (2026-12-06): its 15 cases, fixed as classes. Each
test names the class; the probe's own case is one of its parameters. The rule
as before: one line naming the file/line/flag and what is wrong, before
anything is written."""
import glob
import os
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from npy_tome_layer.errors import InputError
from npy_tome_layer.tools.prepare_mustc import PreparationError, prepare

from .test_bad_input import mustc, quiet  # noqa: F401  (a fixture and its log sink)

SR = 16000


def run_prepare(mustc, **changes):
    args = {"root": mustc["root"], "tgt_lang": "de", "out": mustc["out"],
            "spm_model": mustc["spm"], "dictionary": mustc["dict"], "log": quiet, **changes}
    return prepare(**args)


def written(out):
    return sorted(p for p in os.listdir(out) if p != ".prepare.lock") if os.path.isdir(out) else []


def float_wav(path, samples):
    """A 32-bit float wav: the one kind of file that can store NaN or inf."""
    sf.write(str(path), np.asarray(samples, dtype=np.float32), SR, subtype="FLOAT")


# --- class 1: audio with samples that are not finite -------------------------
# probe: prepare_mustc took WAVs with NaN/inf samples, hubert_labels died in
# k-means naming no file

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_preparation_refuses_a_segment_with_non_finite_samples(mustc, bad):
    wav = glob.glob(str(mustc["data"] / "dev" / "wav" / "*.wav"))[0]
    audio, _ = sf.read(wav, dtype="float32")
    segment = yaml.safe_load(mustc["txt"]("dev", "yaml").read_text())[0]
    at = round(segment["offset"] * SR) + 100
    audio[at] = bad
    float_wav(wav, audio)
    with pytest.raises(PreparationError,
                       match=rf"dev: line 1 .*sample {at} of .*ted_dev_0.wav .*is NaN or inf"):
        run_prepare(mustc)
    assert not os.path.exists(os.path.join(mustc["out"], "dev.tsv"))


def test_non_finite_samples_outside_every_segment_are_not_read_as_speech(mustc):
    wav = glob.glob(str(mustc["data"] / "dev" / "wav" / "*.wav"))[0]
    audio, _ = sf.read(wav, dtype="float32")
    audio[:10] = np.nan  # before the first segment (which starts at sample 1234)
    float_wav(wav, audio)
    run_prepare(mustc)
    assert os.path.exists(os.path.join(mustc["out"], "dev.tsv"))


@pytest.fixture
def nan_manifest(tmp_path):
    """A manifest of two rows; the second's segment holds a NaN."""
    from npy_tome_layer.st.dataset import COLUMNS

    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * SR).astype(np.float32)
    audio[SR + 500] = np.nan
    float_wav(tmp_path / "talk.wav", audio)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("\t".join(COLUMNS) + f"\nok\ttalk.wav:0:{SR}\t{SR}\tHallo\tHello\ts\n"
                   f"bad\ttalk.wav:{SR}:{SR}\t{SR}\tHallo\tHello\ts\n"
                   f"ok2\ttalk.wav:{2 * SR}:{SR}\t{SR}\tHallo\tHello\ts\n")
    return tmp_path


def test_visualize_pruning_names_a_wav_with_non_finite_samples(tmp_path):
    from npy_tome_layer.tools import visualize_pruning

    audio = np.zeros(SR, dtype=np.float32)
    audio[700] = np.inf
    float_wav(tmp_path / "a.wav", audio)
    out = tmp_path / "p.png"
    with pytest.raises(SystemExit) as exit_info:
        visualize_pruning.main(["--wav", str(tmp_path / "a.wav"), "--out", str(out)])
    assert str(exit_info.value.code).startswith(
        f"visualize_pruning: --wav: sample 700 of {tmp_path / 'a.wav'} (0.044 s) is NaN or inf")
    assert not out.exists()


def test_the_dataset_names_the_row_and_sample_of_non_finite_audio(nan_manifest):
    from fairseq.data import Dictionary

    from npy_tome_layer.st.dataset import ManifestError, SpeechTranslationDataset

    data = SpeechTranslationDataset.from_tsv(str(nan_manifest / "train.tsv"), Dictionary(),
                                             lambda s: s)
    assert torch.isfinite(data[0]["source"]).all()
    with pytest.raises(ManifestError, match=rf"train.tsv:3 \(id bad\): sample {SR + 500} of "
                                            r".*talk.wav .*is NaN or inf"):
        data[1]


def test_hubert_labels_names_the_row_of_non_finite_audio(nan_manifest, tmp_path):
    from npy_tome_layer.tools import hubert_labels

    out = tmp_path / "labels"
    with pytest.raises(SystemExit) as exit_info:
        hubert_labels.main(["--data", str(nan_manifest), "--out", str(out), "--clusters", "2"])
    message = str(exit_info.value.code)
    assert message.startswith("hubert_labels: ") and "\n" not in message
    assert "train.tsv:3 (bad)" in message and "talk.wav" in message and "NaN or inf" in message
    assert not out.exists()


# --- class 2: a split with no segments ---------------------------------------
# probe: an emptied train split gave a header-only train.tsv and exit 0

@pytest.mark.parametrize("split", ["train", "dev"])
def test_a_split_with_no_segments_is_refused(mustc, split):
    for ext in ("yaml", "en", "de"):
        mustc["txt"](split, ext).write_bytes(b"")
    with pytest.raises(PreparationError, match=rf"{split}: .*{split}.yaml lists no segments"):
        run_prepare(mustc)
    assert not os.path.exists(os.path.join(mustc["out"], f"{split}.tsv"))
    assert not os.path.exists(os.path.join(mustc["out"], "mt"))


# --- class 3: names a manifest row cannot carry ------------------------------
# probe: a wav named "t\nx.wav" gave a row pointing at "t x.wav"

@pytest.mark.parametrize("name", ["t\nx.wav", "t\tx.wav", "t\rx.wav"])
def test_a_wav_name_a_manifest_cannot_carry_is_refused(mustc, name):
    folder = mustc["data"] / "dev" / "wav"
    old = glob.glob(str(folder / "*.wav"))[0]
    os.rename(old, folder / name)
    path = mustc["txt"]("dev", "yaml")
    segments = yaml.safe_load(path.read_text())
    for segment in segments:
        segment["wav"] = name
    path.write_text(yaml.safe_dump(segments))
    with pytest.raises(PreparationError,
                       match=r"dev: line 1 .*a tab or line break, which a manifest row cannot"):
        run_prepare(mustc)
    assert not os.path.exists(os.path.join(mustc["out"], "dev.tsv"))


# --- class 4: binary files given as a dictionary -----------------------------
# probe: --dict spm.model ended in fairseq's "Incorrect encoding" traceback

@pytest.mark.parametrize("content", ["spm", b"\xff\xfe\x00 1\n", b"a 1\x00\n"])
def test_a_binary_file_as_dict_is_one_line(mustc, tmp_path, monkeypatch, content):
    from npy_tome_layer.tools import prepare_mustc

    path = mustc["spm"] if content == "spm" else str(tmp_path / "binary.txt")
    if content != "spm":
        (tmp_path / "binary.txt").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        prepare_mustc.main(["--mustc-root", mustc["root"], "--tgt-lang", "de", "--out",
                            mustc["out"], "--spm-model", mustc["spm"], "--dict", path])
    message = str(exit_info.value.code)
    assert message.startswith(f"prepare_mustc: --dict {path}: not a fairseq dictionary "
                              "(a binary file") and "\n" not in message
    assert written(mustc["out"]) == []


def test_the_task_refuses_a_binary_dictionary_in_one_line(tmp_path, st_corpus):
    from argparse import Namespace

    from npy_tome_layer.st.task import SpeechAndTextTranslationTask

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "vocab_filename": st_corpus["spm"],
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": st_corpus["spm"]}}))
    args = Namespace(data=str(tmp_path), config_yaml="config.yaml", ddp_backend="legacy_ddp",
                     distributed_world_size=1)
    with pytest.raises(InputError, match=r"spm.model: not a fairseq dictionary \(a binary file"):
        SpeechAndTextTranslationTask.setup_task(args)


# --- class 5: numeric options of the Python API ------------------------------
# probe: output_layer=True gave layer 1, pruning_schedule_updates=-5 and
# encoder_layerdrop=5.0 were accepted

@pytest.fixture(scope="module")
def pruned(hubert_tiny):
    from npy_tome_layer import load_pruned_hubert

    return load_pruned_hubert(hubert_tiny, pruning_rate=0.9)


@pytest.mark.parametrize("layer", [True, False, 1.0, "1", 0, 4])
def test_output_layer_is_a_layer_number_not_a_boolean(pruned, layer):
    with pytest.raises(InputError, match=rf"output_layer must be a layer number in \[1, 3\].* "
                                         rf"got {layer!r}"):
        pruned.extract_features(torch.zeros(1, 800), output_layer=layer)


def test_output_layer_takes_numpy_whole_numbers(pruned):
    with torch.no_grad():
        a, _ = pruned.extract_features(torch.zeros(1, 800), output_layer=np.int64(2))
        b, _ = pruned.extract_features(torch.zeros(1, 800), output_layer=2)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kwargs,message", [
    ({"pruning_schedule_updates": -5}, r"pruning_schedule_updates must be a whole number >= 0, "
                                       r"got -5"),
    ({"pruning_schedule_updates": True}, r"pruning_schedule_updates must be a whole number >= 0"),
    ({"pruning_schedule_updates": 2.5}, r"pruning_schedule_updates must be a whole number >= 0"),
    ({"token_reduction_seed": -1}, r"token_reduction_seed must be a whole number >= 0, got -1"),
    ({"conv_reduction_stride": True},
     r"conv_reduction_stride must be a whole number >= 2, got True"),
    ({"encoder_layerdrop": 5.0}, r"encoder_layerdrop must be a number in \[0, 1\], got 5.0"),
    ({"encoder_layerdrop": True}, r"encoder_layerdrop must be a number in \[0, 1\], got True"),
    ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\], got -0.1"),
    ({"mask_prob": float("nan")}, r"mask_prob must be a number in \[0, 1\], got nan"),
    ({"attention_dropout": "0.1"}, r"attention_dropout must be a number in \[0, 1\]"),
    ({"feature_grad_mult": float("inf")}, r"feature_grad_mult must be a finite number, got inf"),
    ({"mask_length": -1}, r"mask_length must be a whole number >= 0, got -1"),
    ({"mask_length": 2.5}, r"mask_length must be a whole number >= 0, got 2.5"),
    ({"layer_norm_first": 1}, r"layer_norm_first must be True or False, got 1"),
    ({"extractor_mode": "fancy"}, r"extractor_mode: .*fancy"),
    ({"no_such_field": 1}, r"unknown HuBERT config field 'no_such_field'"),
])
def test_numeric_options_of_the_api_are_checked_as_the_flags_are(hubert_tiny, kwargs, message):
    from npy_tome_layer import load_pruned_hubert

    with pytest.raises(InputError, match=message):
        load_pruned_hubert(hubert_tiny, **kwargs)


def test_good_options_still_load(hubert_tiny):
    from npy_tome_layer import load_pruned_hubert

    model = load_pruned_hubert(hubert_tiny, pruning_schedule_updates=0, encoder_layerdrop=0.1,
                               dropout=np.float64(0.0), mask_length=np.int64(5))
    assert model.encoder.layerdrop == 0.1


# --- class 6: weights that are not finite or do not fit -----------------------
# probe: an all-NaN checkpoint loaded (NaN features, a picture of NaN
# attention); a wrongly shaped tensor ended in torch's "Error(s) in loading
# state_dict" naming no file

def damaged(hubert_tiny, tmp_path, change):
    state = torch.load(hubert_tiny, weights_only=True)
    change(state["model"])
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    return str(path)


def all_nan(weights):
    for value in weights.values():
        if value.is_floating_point():
            value.fill_(float("nan"))


def first_float(weights):
    return next(k for k, v in weights.items() if v.is_floating_point())


@pytest.mark.parametrize("where", ["all", "one"])
def test_loading_refuses_weights_that_are_not_finite(hubert_tiny, tmp_path, where):
    from fairseq import checkpoint_utils

    from npy_tome_layer import load_pruned_hubert
    from npy_tome_layer.io.checkpoints import CheckpointError

    weights = torch.load(hubert_tiny, weights_only=True)["model"]
    name = first_float(weights) if where == "all" else "encoder.layers.1.fc2.bias"

    def change(w):
        if where == "all":
            all_nan(w)
        else:
            w[name][3] = float("inf")
    path = damaged(hubert_tiny, tmp_path, change)
    expected = rf"damaged.pt: tensor {name} holds NaN or inf"
    with pytest.raises(CheckpointError, match=expected):
        load_pruned_hubert(path)
    with pytest.raises(CheckpointError, match=expected):  # fairseq's own loading path
        checkpoint_utils.load_checkpoint_to_cpu(path)


def test_visualize_pruning_refuses_a_checkpoint_that_is_not_finite(hubert_tiny, tmp_path):
    from npy_tome_layer.tools import visualize_pruning

    path = damaged(hubert_tiny, tmp_path, all_nan)
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.random.default_rng(0).uniform(-0.3, 0.3, SR).astype(np.float32), SR)
    out = tmp_path / "p.png"
    with pytest.raises(SystemExit) as exit_info:
        visualize_pruning.main(["--wav", str(wav), "--out", str(out), "--checkpoint", path])
    message = str(exit_info.value.code)
    assert message.startswith(f"visualize_pruning: {path}: tensor ") and "\n" not in message
    assert not out.exists()


def test_a_wrongly_shaped_tensor_names_the_file_and_the_tensor(hubert_tiny, tmp_path):
    from npy_tome_layer import load_pruned_hubert

    def change(weights):
        weights["encoder.layers.0.fc1.weight"] = torch.zeros(7, 5)
    path = damaged(hubert_tiny, tmp_path, change)
    with pytest.raises(InputError, match=r"damaged.pt: tensor encoder.layers.0.fc1.weight has "
                                         r"shape \(7, 5\), the model's is \(64, 32\)"):
        load_pruned_hubert(path)


@pytest.mark.parametrize("content", [[1, 2], (1, 2), "text", 3, None, "tensor"])
def test_a_checkpoint_that_is_not_a_dict_is_one_line(tmp_path, content):
    from npy_tome_layer import load_pruned_hubert
    from npy_tome_layer.io.checkpoints import CheckpointError
    from npy_tome_layer.tools import inspect_checkpoint

    path = tmp_path / "odd.pt"
    torch.save(torch.zeros(3) if content == "tensor" else content, path)
    kind = "Tensor" if content == "tensor" else type(content).__name__
    expected = rf"odd.pt: not a fairseq checkpoint \(it holds a value of type {kind}, not a dict\)"
    with pytest.raises(CheckpointError, match=expected):
        load_pruned_hubert(str(path))
    with pytest.raises(SystemExit) as exit_info:
        inspect_checkpoint.main([str(path)])
    assert str(exit_info.value.code).startswith(f"inspect_checkpoint: {path}: not a fairseq")


@pytest.mark.parametrize("content", [{"a": 1}, {}, {"cfg": 3}])
def test_a_dict_that_is_not_a_fairseq_checkpoint_is_one_line(tmp_path, content):
    """The same class: fairseq's loader ended in KeyError 'best_loss' (or an
    OmegaConf error), naming no file."""
    from npy_tome_layer.io.checkpoints import CheckpointError, load_checkpoint

    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"odd.pt: not a fairseq checkpoint \(a dict "
                                              r"without what fairseq's loader reads: [^\n]*\)$"):
        load_checkpoint(str(path))


# --- class 7: tensors the model cannot read ----------------------------------
# probe: a meta-device source ended in torch's "cannot be called on meta tensors"

def test_a_meta_device_source_is_one_line(pruned):
    with pytest.raises(InputError, match=r"source is on the meta device \(no data\)"):
        pruned.extract_features(torch.zeros(1, 800, device="meta"))


def test_a_meta_device_padding_mask_is_one_line(pruned):
    with pytest.raises(InputError, match=r"padding_mask is on the meta device \(no data\)"):
        pruned.extract_features(torch.zeros(1, 800),
                                padding_mask=torch.zeros(1, 800, dtype=torch.bool,
                                                         device="meta"))


def test_the_command_lines_print_one_line(tmp_path):
    """The tools above end with ``exit_on_input_error``; a sanity check that
    nothing here is printed as a traceback when run as a program."""
    import subprocess

    path = tmp_path / "odd.pt"
    torch.save([1, 2], path)
    proc = subprocess.run([sys.executable, "-m", "npy_tome_layer.tools.inspect_checkpoint",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"inspect_checkpoint: {path}: ")


# --- the scripts' probe: two crashes, fixed as classes -------------------------------

def test_a_failed_checkpoint_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    """torch's archive writer reports a full disk or a file-size limit as a
    RuntimeError naming no file; the atomic save names the destination."""

    import torch

    from npy_tome_layer.errors import exit_on_input_error
    from npy_tome_layer.io import atomic

    def full_disk(obj, f):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", full_disk)
    target = tmp_path / "avg.pt"
    with pytest.raises(SystemExit) as stop, exit_on_input_error("average_checkpoints"):
        atomic.save_atomically({"model": {}}, str(target))
    assert str(stop.value) == (f"average_checkpoints: cannot write {target}: writing failed "
                               "([enforce fail at inline_container.cc:672] . unexpected pos 64)")
    assert list(tmp_path.iterdir()) == []  # no partial file, nothing where the result goes


@pytest.mark.parametrize("value", [1e308, "1e308", -1e308])
def test_segment_times_whose_sample_count_is_no_number_are_refused(value):
    from npy_tome_layer.tools.prepare_mustc import seconds

    assert seconds(value) is None
    assert seconds(12.5) == 12.5 and seconds("0.25") == 0.25
