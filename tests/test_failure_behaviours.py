"""What happens when things go wrong: one clear error naming the thing at
fault, nothing half-written, no silent wrong result. Numbers refer to the
bad-input and kill probe."""
import contextlib
import glob
import io
import os

import numpy as np
import pytest
import torch

from .conftest import REPO


# --- 1, 2: checkpoints survive kills, and a resume keeps its place ----------

def test_checkpoint_writes_are_atomic(tmp_path):
    """fairseq writes checkpoint_N.pt and copies it over checkpoint_last.pt in
    place; a kill in either would leave a truncated file. Both go through a
    temporary name: an interrupted write leaves the old file whole."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    good = tmp_path / "checkpoint_last.pt"
    checkpoint_utils.torch_persistent_save({"model": {"w": torch.ones(3)}}, str(good))
    before = good.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        checkpoint_utils.torch_persistent_save({"model": Unpicklable()}, str(good))
    assert good.read_bytes() == before
    (tmp_path / "checkpoint_last.pt.tmp-99999").write_bytes(b"half a copy")  # a killed copy
    source = tmp_path / "checkpoint3.pt"
    checkpoint_utils.torch_persistent_save({"model": {"w": torch.zeros(3)}}, str(source))
    assert PathManager.copy(str(source), str(good), overwrite=True)
    assert good.read_bytes() == source.read_bytes()
    assert not glob.glob(str(tmp_path / "*.tmp*"))  # no temporaries left behind


def test_unreadable_last_checkpoint_names_the_newest_readable_one(tmp_path):
    from fairseq import checkpoint_utils

    from npy_tome_layer.io.checkpoints import CheckpointError

    for n in (1, 2):
        checkpoint_utils.torch_persistent_save({"model": {}, "n": n},
                                               str(tmp_path / f"checkpoint{n}.pt"))
    (tmp_path / "checkpoint_last.pt").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(CheckpointError, match=r"checkpoint_last.pt: .*newest readable "
                                              r"checkpoint is .*checkpoint2.pt"):
        checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))


def test_no_shipped_config_drops_the_update_count():
    """--no-save-optimizer-state also drops num_updates: a resumed run would
    restart its keep-rate schedule and train more updates than asked."""
    for path in glob.glob(os.path.join(REPO, "configs", "*", "*.args")):
        with open(path) as f:
            assert "--no-save-optimizer-state" not in f.read(), path


# --- 3: averaging refuses checkpoints of different models -------------------

def test_average_refuses_different_model_settings(mt_checkpoint, tmp_path):
    """A keep-rate-0.9 run averaged with a dense one would give the cfg of the
    first and a mean of two different models: refused."""
    from npy_tome_layer.tools.average_checkpoints import AveragingError, average_model_states
    from npy_tome_layer.io.atomic import save_atomically

    raw = torch.load(mt_checkpoint[0], weights_only=True)
    paths = {}
    for name, rate in (("a.pt", 0.9), ("b.pt", 0.9), ("dense.pt", 1.0)):
        raw["cfg"]["model"].pruning_rate = rate
        paths[name] = str(tmp_path / name)
        save_atomically(raw, paths[name])
    average_model_states([paths["a.pt"], paths["b.pt"]])  # the same model: fine
    with pytest.raises(AveragingError, match=r"dense.pt: a different model from .*a.pt "
                                             r"\(pruning_rate 1.0 vs 0.9\)"):
        average_model_states([paths["a.pt"], paths["dense.pt"]])


# --- 12: a manifest with no rows ---------------------------------------------

def test_header_only_manifest_is_named(tmp_path):
    from fairseq.data import Dictionary

    from npy_tome_layer.st.dataset import ManifestError, SpeechTranslationDataset
    from npy_tome_layer.st.dataset import COLUMNS

    tsv = tmp_path / "dev.tsv"
    tsv.write_text("\t".join(COLUMNS) + "\n")
    with pytest.raises(ManifestError, match=r"dev.tsv: no rows \(header only\)"):
        SpeechTranslationDataset.from_tsv(str(tsv), Dictionary(), lambda s: s)


# --- 14-19: the Python API checks what it is given ---------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"pruning_rate": "0.9"}, r"pruning_rate must be a number in \(0, 1\], got '0.9'"),
    ({"pruning_rate": True}, r"pruning_rate must be a number in \(0, 1\], got True"),
    ({"pruning_rate": 0.0}, r"pruning_rate must be a number in \(0, 1\], got 0.0"),
    ({"pruning_rate": 1.5}, r"pruning_rate must be a number in \(0, 1\], got 1.5"),
    ({"pruning_init_layer": 2.5}, r"pruning_init_layer must be a whole number in \[0, 3\] for a "
                                r"3-layer encoder, got 2.5"),
])
def test_load_pruned_hubert_checks_its_arguments(hubert_tiny, kwargs, message):
    from npy_tome_layer import load_pruned_hubert

    with pytest.raises(ValueError, match=message):
        load_pruned_hubert(hubert_tiny, **kwargs)


@pytest.fixture(scope="module")
def pruned(hubert_tiny):
    from npy_tome_layer import load_pruned_hubert

    return load_pruned_hubert(hubert_tiny, pruning_rate=0.9)


def test_float64_and_one_dimensional_sources_are_accepted(pruned):
    audio = torch.randn(16000) * 0.1
    with torch.no_grad():
        reference, _ = pruned.extract_features(audio.unsqueeze(0), mask=False)
        as_1d, _ = pruned.extract_features(audio, mask=False)
        as_f64, _ = pruned.extract_features(audio.double().unsqueeze(0), mask=False)
    torch.testing.assert_close(as_1d, reference)
    torch.testing.assert_close(as_f64, reference)


@pytest.mark.parametrize("source,message", [
    (torch.zeros(1, 16000, dtype=torch.int16),
     r"source is int16 PCM: convert to float in \[-1, 1\] \(samples / 32768\)"),
    (torch.zeros(2, 1, 16000), r"source must be B x samples with B >= 1 \(or one utterance of "
                               r"samples\), got shape \(2, 1, 16000\)"),
    (torch.zeros(0, 16000), r"source must be B x samples with B >= 1 .* got shape \(0, 16000\)"),
    ([0.0] * 16000, r"source must be a torch tensor \(B x samples\), got list"),
    (np.zeros((1, 16000), dtype=np.float32), r"source must be a torch tensor .* got ndarray"),
    (torch.zeros(16000, 1), r"source has shape \(16000, 1\), samples x 1: pass B x samples"),
    (torch.zeros(1, 0), r"source has 0 samples: HuBERT needs at least 400 \(one frame\)"),
    (torch.zeros(1, 200), r"source has 200 samples: HuBERT needs at least 400 \(one frame\)"),
    (torch.tensor([[0.0] * 1000 + [float("nan")] * 10 + [0.0] * 1000]),
     r"source has non-finite samples \(NaN or inf\) in row 0"),
])
def test_bad_sources_fail_clearly(pruned, source, message):
    with pytest.raises(ValueError, match=message):
        pruned.extract_features(source, mask=False)


@pytest.mark.parametrize("output_layer", [0, -1, 4, 2.0])
def test_output_layer_outside_the_encoder_is_refused(pruned, output_layer):
    with pytest.raises(ValueError, match=r"output_layer must be a layer number in \[1, 3\]"):
        pruned.extract_features(torch.zeros(1, 16000), mask=False, output_layer=output_layer)


def test_load_pruned_hubert_names_a_checkpoint_that_is_not_hubert(mt_checkpoint):
    from npy_tome_layer import load_pruned_hubert

    with pytest.raises(ValueError, match=r"checkpoint_last.pt: a checkpoint of task "
                                         r"'speech_and_text_translation', not a HuBERT file"):
        load_pruned_hubert(mt_checkpoint[0])


# an all-padding row (an empty utterance) is accepted and comes back fully masked:
# test_reduction_interface.py
@pytest.mark.parametrize("valid,message", [
    (1, r"row 1 of source has 1 valid samples: HuBERT needs at least 400"),
    (200, r"row 1 of source has 200 valid samples: HuBERT needs at least 400")])
def test_rows_shorter_than_a_frame_fail_clearly(pruned, valid, message):
    source = torch.randn(2, 16000) * 0.1
    padding_mask = torch.zeros(2, 16000, dtype=torch.bool)
    padding_mask[1, valid:] = True
    with pytest.raises(ValueError, match=message):
        pruned.extract_features(source, padding_mask=padding_mask, mask=False)


@pytest.mark.parametrize("padding_mask", [torch.zeros(2, 100, dtype=torch.bool),
                                          torch.zeros(2, 16000)])
def test_padding_mask_must_match_the_source(pruned, padding_mask):
    with pytest.raises(ValueError, match=r"padding_mask must be a bool tensor shaped like "
                                         r"source \(2, 16000\)"):
        pruned.extract_features(torch.randn(2, 16000), padding_mask=padding_mask, mask=False)



# --- 5-9, 11: preparation of a damaged MuST-C copy ---------------------------

@pytest.fixture
def mustc(tmp_path, st_corpus):
    from .test_prepare_mustc import write_corpus

    write_corpus(str(tmp_path / "mustc"), {"train": [[8000, 9000]], "dev": [[7000]]})
    txt = tmp_path / "mustc" / "en-de" / "data" / "{0}" / "txt" / "{0}.{1}"
    return {"root": str(tmp_path / "mustc"), "out": str(tmp_path / "out"),
            "txt": lambda split, ext: txt.parent.parent.parent / split / "txt" / f"{split}.{ext}",
            "spm": st_corpus["spm"], "dict": st_corpus["dict"]}


def prepare_fails(mustc, message):
    from npy_tome_layer.tools.prepare_mustc import PreparationError, prepare

    with pytest.raises(PreparationError, match=message):
        prepare(mustc["root"], "de", mustc["out"], mustc["spm"], mustc["dict"], log=lambda m: None)


def test_malformed_yaml(mustc):
    mustc["txt"]("dev", "yaml").write_text("- {duration: 1.0, offset: [\n")
    prepare_fails(mustc, r"dev: .*dev.yaml: not valid YAML at line \d+")
    assert os.path.isfile(os.path.join(mustc["out"], "train.tsv"))  # other splits go on


def test_translation_not_utf8(mustc):
    path = mustc["txt"]("dev", "de")
    path.write_bytes(b"Guten Tag\xff\n")
    prepare_fails(mustc, r"dev: .*dev.de: line 1 is not UTF-8 \(byte 0xff\)")


@pytest.mark.parametrize("field,value,message", [
    ("offset", "abc", r"offset 'abc' / duration .* are not finite numbers of seconds"),
    ("wav", 11, r"wav 11 is not the name of a file in .*wav")])
def test_segment_fields_of_the_wrong_type(mustc, field, value, message):
    import yaml

    path = mustc["txt"]("dev", "yaml")
    segments = yaml.safe_load(path.read_text())
    segments[0][field] = value
    path.write_text(yaml.safe_dump(segments))
    prepare_fails(mustc, r"dev: line 1 \(.*\): " + message)


def test_missing_yaml(mustc):
    os.remove(mustc["txt"]("dev", "yaml"))
    prepare_fails(mustc, r"dev: .*dev.yaml not found")


def test_empty_wav_is_called_empty(mustc):
    wav = glob.glob(os.path.join(mustc["root"], "en-de", "data", "dev", "wav", "*.wav"))[0]
    open(wav, "wb").close()
    prepare_fails(mustc, r"dev: line 1 \(.*\): .*\.wav is empty \(0 bytes\)")


def test_failed_split_leaves_no_partial_mt_data(mustc):
    from npy_tome_layer.tools.prepare_mustc import prepare

    os.remove(mustc["txt"]("dev", "yaml"))
    prepare_fails(mustc, r"dev.yaml not found")
    assert not os.path.exists(os.path.join(mustc["out"], "mt"))
    from .test_prepare_mustc import write_corpus  # the data, fixed

    import shutil
    shutil.rmtree(mustc["root"])
    write_corpus(mustc["root"], {"train": [[8000, 9000]], "dev": [[7000]]})
    prepare(mustc["root"], "de", mustc["out"], mustc["spm"], mustc["dict"], log=lambda m: None)
    assert os.path.isfile(os.path.join(mustc["out"], "mt", "valid.en-de.de.idx"))


def test_line_separator_inside_a_sentence(mustc):
    from npy_tome_layer.tools.prepare_mustc import prepare

    path = mustc["txt"]("dev", "de")
    path.write_text("Ein Satz\u2028mit Trenner.\n", encoding="utf-8")
    prepare(mustc["root"], "de", mustc["out"], mustc["spm"], mustc["dict"], log=lambda m: None)
    with open(os.path.join(mustc["out"], "dev.tsv"), encoding="utf-8") as f:
        assert len(f.read().split("\n")) == 3  # header, one row, final newline


# --- 13: an utterance longer than one batch ----------------------------------

def test_utterance_longer_than_max_tokens_is_named(st_corpus):
    """fairseq asserted "Sentences lengths should not exceed max_tokens", naming nothing."""
    from fairseq import options, tasks

    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation", "--max-tokens", "1000", "--cpu"])
    task = tasks.setup_task(args)
    task.load_dataset("tst-COMMON")
    with pytest.raises(ValueError, match=r"tst-COMMON.tsv:2 \(id ted_\d+_0\): \d+ samples, "
                                         r"more than --max-tokens 1000"):
        task.get_batch_iterator(task.datasets["tst-COMMON"], max_tokens=1000)


# --- 4, 10: remote checkpoint paths, two preparations at once ------------------

def test_checkpoint_behind_a_path_handler_is_checked_where_it_lands(tmp_path, monkeypatch):
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    local = tmp_path / "cached.pt"
    checkpoint_utils.torch_persistent_save(
        {"model": {}, "args": None, "cfg": None, "optimizer_history": [
            {"criterion_name": "c", "optimizer_name": "o", "lr_scheduler_state": {"best": 1.0},
             "num_updates": 1}], "extra_state": {}}, str(local))
    monkeypatch.setattr(PathManager, "get_local_path",
                        staticmethod(lambda path, **kw: str(local) if "://" in path else path))
    state = checkpoint_utils.load_checkpoint_to_cpu("https://example.invalid/model.pt")
    assert state["optimizer_history"][0]["num_updates"] == 1


def test_two_preparations_on_one_output(mustc):
    from npy_tome_layer.tools.prepare_mustc import output_lock

    with output_lock(mustc["out"]):
        prepare_fails(mustc, r"out: another preparation is writing here")
    assert not glob.glob(os.path.join(mustc["out"], "*.tsv"))


@pytest.mark.parametrize("flag,value,message", [
    ("--pruning-rate", "0", "must be a number in (0, 1], got '0'"),
    ("--pruning-rate", "1.5", "must be a number in (0, 1], got '1.5'"),
    ("--pruning-rate", "-0.1", "must be a number in (0, 1], got '-0.1'"),
    ("--pruning-rate", "nan", "must be a number in (0, 1], got 'nan'"),
    ("--pruning-min-rate", "abc", "must be a number in (0, 1], got 'abc'"),
    ("--pruning-init-layer", "-1", "must be a whole number >= 0, got '-1'"),
    ("--pruning-schedule-updates", "-5", "must be a whole number >= 0, got '-5'"),
    ("--conv-reduction-stride", "1", "must be a whole number >= 2, got '1'"),
])
def test_pruning_flags_are_checked_by_the_parser(flag, value, message):
    """fairseq's own parser names the flag: one line, exit 2, before anything is built."""
    from fairseq import options

    parser = options.get_training_parser()
    with pytest.raises(SystemExit) as exit_info, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        options.parse_args_and_arch(parser, [
            "data", "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--arch", "hubert_transformer_pruning_layer",
            flag, value])
    assert exit_info.value.code == 2
    assert f"error: argument {flag}: {message}" in err.getvalue()
    assert "Traceback" not in err.getvalue()
