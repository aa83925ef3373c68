"""Property-based tests of every parser of user input: generated inputs either
succeed with a result that keeps the stated invariants, or raise the project's
one bad-input error (``InputError``; argparse's ``ArgumentTypeError`` for flag
types) - never another exception. Each test is bounded to a few seconds."""
import argparse
import importlib
import math
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from npy_tome_layer.errors import InputError
from npy_tome_layer.io.audio import MIN_SAMPLES, SAMPLE_RATE
from npy_tome_layer.io.flags import (cosine_flag, finite_number_flag, keep_rate_flag,
                                     positive_number_flag, share_flag, whole_number_flag)
from npy_tome_layer.reduction.keep_rate import KeepRateSchedule
from npy_tome_layer.values import finite_number, share, whole_number
from npy_tome_layer.reduction.selection import (coverage_counts, keep_counts, select_by_windows,
                                                select_frames, window_quotas)
from npy_tome_layer.st.dataset import COLUMNS, breaks_a_field, parse_audio_ref, read_manifest
from npy_tome_layer.st.task import check_model_overrides_text, overridable_names
from npy_tome_layer.tools.prepare_mustc import (is_plain_file_name, read_lines, read_split,
                                                read_yaml_segments, seconds, tsv_text)

from npy_tome_layer.encoder.config import HUBERT_SIZES
from npy_tome_layer.tools.benchmark.cli import audio_seconds_flag, width_flag

from .conftest import REPO

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# text as a user's files hold it: any character, and those that break formats
nasty_text = st.text(alphabet=st.one_of(
    st.characters(exclude_categories=("Cs",)), st.sampled_from(list("\t\n\r:*&!|>-[]{}#'\"\\\u2028\u200b\ufeff0123456789."))),
    max_size=60)
# any value a YAML field can hold
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), nasty_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(nasty_text, inner, max_size=3)),
    max_leaves=6)
flag_text = st.one_of(nasty_text, st.integers().map(str), st.floats().map(str),
                      st.sampled_from(["0", "1", "1.0", "-0", "1e-9", "nan", "inf", "-inf", "0x10",
                                       "1_000", " 3 ", "٣", "²", "1e400", "True", ""]))


# --- numeric flags of the plugin (fairseq's parser) and of every tool ---------

def numeric_actions():
    """(program, flag, type) of every flag whose type is not a plain string."""
    import npy_tome_layer  # noqa: F401
    from npy_tome_layer.st.model import HubertTransformerPruningModel

    parser = argparse.ArgumentParser()
    HubertTransformerPruningModel.add_args(parser)
    own = ("--pruning-", "--token-reduction", "--conv-reduction")  # DeltaLM's are fairseq's
    found = [("fairseq-train", a.option_strings[0], a.type) for a in parser._actions
             if a.type not in (None, str) and a.option_strings[0].startswith(own)]

    class Parsed(Exception):
        pass

    def capture(self, args=None, namespace=None):
        raise Parsed(self)
    for tool in ("prepare_mustc", "average_checkpoints", "tune_lenpen", "compare_runs", "sweep",
                 "study", "benchmark", "visualize_pruning", "inspect_checkpoint"):
        module = importlib.import_module(f"npy_tome_layer.tools.{tool}")
        original = argparse.ArgumentParser.parse_args
        argparse.ArgumentParser.parse_args = capture
        try:
            module.main([])
        except Parsed as e:
            tool_parser = e.args[0]
        finally:
            argparse.ArgumentParser.parse_args = original
        found += [(tool, a.option_strings[0] if a.option_strings else a.dest, a.type)
                  for a in tool_parser._actions if a.type not in (None, str)]
    return found


ACTIONS = numeric_actions()
MODEL_WIDTHS = {cfg["encoder_embed_dim"] for cfg in HUBERT_SIZES.values()}
FLAG_TYPES = {width_flag: lambda v: v in MODEL_WIDTHS,
              keep_rate_flag: lambda v: 0 < v <= 1,
              share_flag: lambda v: 0 <= v <= 1,
              cosine_flag: lambda v: -1 <= v <= 1,
              finite_number_flag: math.isfinite,
              positive_number_flag: lambda v: math.isfinite(v) and v > 0,
              # an audio length: at least one HuBERT frame's samples (issue 43, B4)
              audio_seconds_flag: lambda v: math.isfinite(v) and v * SAMPLE_RATE >= MIN_SAMPLES}


def invariant_of(flag_type):
    if flag_type in FLAG_TYPES:
        return FLAG_TYPES[flag_type]
    minimum = int(flag_type.__name__.rsplit(" ", 1)[-1])  # "whole number >= N"
    return lambda v: isinstance(v, int) and v >= minimum


def test_every_numeric_flag_has_a_checked_type():
    """No bare int/float: those accept nan, inf, negative counts and rates > 1."""
    unchecked = [(prog, flag) for prog, flag, kind in numeric_actions()
                 if kind not in FLAG_TYPES and "whole number" not in getattr(kind, "__name__", "")]
    assert not unchecked, unchecked


@FUZZ
@given(text=flag_text, which=st.integers(0, 10 ** 6))
def test_flag_types_return_a_value_in_range_or_argparse_error(text, which):
    kinds = sorted({kind for _, _, kind in ACTIONS}, key=lambda k: getattr(k, "__name__", ""))
    kind = kinds[which % len(kinds)]
    try:
        value = kind(text)
    except argparse.ArgumentTypeError as e:
        assert repr(text) in str(e)
        return
    assert invariant_of(kind)(value), (kind, text, value)


@settings(max_examples=60, deadline=None)
@given(value=flag_text, name=st.sampled_from(["NPROC", "NNODES", "MASTER_PORT"]))
def test_env_numbers_are_checked_in_one_line(value, name):
    assume("\x00" not in value)
    env = {"PATH": os.environ["PATH"], "DEVICE": "cpu", name: value}
    proc = subprocess.run(["bash", "-c", f"source {REPO}/scripts/env.sh && echo WORLD=$WORLD"],
                          capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        number = int(value or {"NPROC": "1", "NNODES": "1", "MASTER_PORT": "29500"}[name], 10)
        assert 1 <= number <= (65535 if name == "MASTER_PORT" else 999999999)
        assert proc.stdout.startswith("WORLD=")
    else:
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {name} must be")
        assert len(proc.stderr.strip().split("\n")) == 1


# --- the keep rate schedule and the keep-count rule --------------------------

rate_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(),
                        st.floats(0, 1), nasty_text)


@FUZZ
@given(rate=rate_values, max_rate=rate_values, min_rate=rate_values, updates=rate_values,
       at=st.integers(-10, 10 ** 6))
def test_keep_rate_schedule_is_valid_or_an_input_error(rate, max_rate, min_rate, updates, at):
    try:
        schedule = KeepRateSchedule.from_arguments(rate, max_rate, min_rate, updates)
    except InputError:
        return
    r = schedule.rate_at(at)
    assert 0 < schedule.min_rate <= r <= schedule.max_rate <= 1
    assert schedule.rate_at(at + 1) <= r


@FUZZ
@given(lengths=st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=8), rate=st.floats(0, 1))
def test_keep_counts_are_ceil_rate_n_and_in_range(lengths, rate):
    assume(rate > 0)
    k = keep_counts(torch.tensor(lengths), rate).tolist()
    for n, kept in zip(lengths, k):
        assert kept == (0 if n == 0 else max(1, math.ceil(rate * n)))
        assert (n == 0 and kept == 0) or 1 <= kept <= n


@FUZZ
@given(data=st.data(), rate=st.floats(0.01, 1.0))
def test_selected_frames_are_the_top_k_valid_frames_in_time_order(data, rate):
    bsz = data.draw(st.integers(1, 4))
    tsz = data.draw(st.integers(1, 24))
    lengths = data.draw(st.lists(st.integers(0, tsz), min_size=bsz, max_size=bsz))
    # few distinct values: many ties
    scores = torch.tensor(data.draw(st.lists(
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5, -1.0, 1e-30]), min_size=tsz, max_size=tsz),
        min_size=bsz, max_size=bsz)))
    padding = torch.arange(tsz).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    indices, new_mask = select_frames(scores, padding, rate)
    for b, n in enumerate(lengths):
        kept = indices[b][~new_mask[b]].tolist()
        assert len(kept) == (0 if n == 0 else max(1, math.ceil(rate * n)))
        assert kept == sorted(set(kept)) and all(i < n for i in kept)  # valid, time order
        dropped = [i for i in range(n) if i not in kept]
        if kept and dropped:
            assert min(scores[b, kept]) >= max(scores[b, dropped])


@FUZZ
@given(data=st.data(), coverage=st.floats(0.001, 1.0), floor=st.floats(0, 1),
       window=st.integers(1, 12), rate=st.floats(0.01, 1.0))
def test_adaptive_counts_are_in_range_and_windows_keep_their_quotas(data, coverage, floor,
                                                                     window, rate):
    bsz, tsz = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 30))
    lengths = data.draw(st.lists(st.integers(0, tsz), min_size=bsz, max_size=bsz))
    scores = torch.tensor(data.draw(st.lists(st.lists(
        st.floats(0, 10, allow_subnormal=False), min_size=tsz, max_size=tsz),
        min_size=bsz, max_size=bsz)))
    padding = torch.arange(tsz).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    counts = coverage_counts(scores, padding, coverage, floor).tolist()
    for n, m in zip(lengths, counts):
        assert (n == 0 and m == 0) or max(1, math.ceil(floor * n) if floor else 1) <= m <= n
    wanted = keep_counts(torch.tensor(lengths), rate)
    indices, new_mask = select_by_windows(scores, padding, wanted, window)
    for b, n in enumerate(lengths):
        kept = indices[b][~new_mask[b]].tolist()
        assert len(kept) == int(wanted[b]) and kept == sorted(set(kept)) and all(
            i < n for i in kept)
        quota = window_quotas(n, int(wanted[b]), window).tolist()
        assert [sum(1 for i in kept if i // window == w) for w in range(len(quota))] == quota


# --- preparation: segment lists, text files, times, file names ---------------

@FUZZ
@given(text=st.one_of(nasty_text, st.lists(yaml_values, max_size=4).map(
    lambda v: yaml.safe_dump(v, allow_unicode=True))))
def test_segment_list_reader_returns_a_list_or_an_input_error(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        segments = read_yaml_segments(str(path), "train")
    except InputError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    assert isinstance(segments, list)


@FUZZ
@given(data=st.binary(max_size=200))
def test_text_files_read_as_lines_split_at_newline_only(tmp_path, data):
    path = tmp_path / "x.de"
    path.write_bytes(data)
    try:
        lines = read_lines(str(path), "train")
    except InputError as e:
        assert "line " in str(e)
        return
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    expected = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    assert len(lines) == expected


@FUZZ
@given(value=yaml_values)
def test_segment_times_are_finite_floats_or_none(value):
    t = seconds(value)
    assert t is None or (isinstance(t, float) and math.isfinite(t))
    assert not (isinstance(value, bool) and t is not None)


@FUZZ
@given(name=yaml_values)
def test_accepted_wav_names_stay_inside_the_folder(name):
    if is_plain_file_name(name):
        folder = "/data/en-de/data/train/wav"
        assert os.path.dirname(os.path.normpath(os.path.join(folder, name))) == folder


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """One split folder with one 1-second talk."""
    root = tmp_path_factory.mktemp("fuzz_split")
    for sub in ("wav", "txt"):
        os.makedirs(root / "en-de" / "data" / "train" / sub)
    sf.write(str(root / "en-de" / "data" / "train" / "wav" / "talk.wav"),
             np.zeros(SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
    return root / "en-de"


segments = st.lists(st.fixed_dictionaries({
    "offset": st.one_of(st.floats(-1, 2), yaml_values),
    "duration": st.one_of(st.floats(0, 1.2), yaml_values),
    "wav": st.one_of(st.just("talk.wav"), st.just("missing.wav"), yaml_values)}),
    min_size=0, max_size=4)


@FUZZ
@given(records=segments, en=st.lists(nasty_text, min_size=0, max_size=4),
       de=st.lists(nasty_text, min_size=0, max_size=4))
def test_split_reader_gives_exact_spans_or_an_input_error(talk, records, en, de):
    txt = talk / "data" / "train" / "txt"
    (txt / "train.yaml").write_text(yaml.safe_dump(records, allow_unicode=True), encoding="utf-8")
    for lang, lines in (("en", en), ("de", de)):
        (txt / f"train.{lang}").write_text("".join(line + "\n" for line in lines),
                                           encoding="utf-8")
    try:
        rows = read_split(str(talk), "train", "de", log=lambda *a: None)
    except InputError:
        return
    assert rows and len(rows) == len(records)  # a split of no segments is refused
    for row, record in zip(rows, records):
        path, offset, n = row["audio"].rsplit(":", 2)
        assert int(offset) == round(record["offset"] * SAMPLE_RATE)
        assert int(n) == round(record["duration"] * SAMPLE_RATE) == row["n_frames"]
        assert MIN_SAMPLES <= int(n) and int(offset) + int(n) <= SAMPLE_RATE
        assert os.path.basename(path) == "talk.wav"
        assert "\t" not in row["tgt_text"] and "\n" not in row["tgt_text"]


# --- manifests and audio references ------------------------------------------

@FUZZ
@given(lines=st.lists(st.lists(nasty_text, min_size=1, max_size=7).map("\t".join), max_size=5),
       header=st.booleans())
@example(lines=["a\tb.wav\t\u00b2\tx\ty\tz"], header=True)
def test_manifest_reader_returns_checked_rows_or_an_input_error(tmp_path, lines, header):
    path = tmp_path / "x.tsv"
    body = (["\t".join(COLUMNS)] if header else []) + lines
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    try:
        rows = read_manifest(str(path))
    except InputError:
        return
    assert rows and [r["_line"] for r in rows] == sorted({r["_line"] for r in rows})
    for r in rows:
        assert set(COLUMNS) <= set(r) and r["n_frames"].isascii() and r["n_frames"].isdigit()


@FUZZ
@given(value=nasty_text)
@example("talk.wav:\u00b2:5")  # str.isdigit() is True for "²", int() refuses it
@example("talk.wav:\u0663:5")  # Arabic-Indic three: a digit to int(), not to a manifest
def test_audio_references_parse_to_whole_sample_spans(value):
    ref = parse_audio_ref(value, "/base")
    assert ref.offset >= 0 and ref.num_samples >= -1 and os.path.isabs(ref.path)


@FUZZ
@given(path=nasty_text, offset=st.integers(0, 10 ** 12), n=st.integers(0, 10 ** 12))
def test_audio_references_round_trip(path, offset, n):
    assume(path and not path.startswith("/"))
    ref = parse_audio_ref(f"{path}:{offset}:{n}", "/base")
    assert (ref.path, ref.offset, ref.num_samples) == (os.path.join("/base", path), offset, n)


# --- fourth probe: the API's numbers, audio samples, checkpoints, dictionaries

api_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 6), st.floats(),
                       nasty_text, st.integers(-3, 5).map(np.int64),
                       st.floats(-2, 2).map(np.float64))


@FUZZ
@given(value=api_values, minimum=st.integers(0, 2))
@example(value=True, minimum=0)  # the probe's output_layer=True: a bool is not a number
@example(value=-5, minimum=0)  # the probe's pruning_schedule_updates=-5
def test_api_number_checks_agree_with_the_flags(value, minimum):
    """A value the API takes is one the flag takes written out, and the same;
    booleans and strings never pass."""
    checks = [
        (lambda v: whole_number("x", v, minimum), whole_number_flag(minimum),
         lambda v: type(v) is int and v >= minimum),
        (lambda v: share("x", v), share_flag, lambda v: type(v) is float and 0 <= v <= 1),
        (lambda v: finite_number("x", v), finite_number_flag,
         lambda v: type(v) is float and math.isfinite(v)),
    ]
    for check, flag, holds in checks:
        try:
            got = check(value)
        except InputError as e:
            assert str(e).startswith("x must be") and "\n" not in str(e)
            continue
        assert holds(got) and not isinstance(value, (bool, str))
        assert flag(str(value)) == got


def hubert_fields():
    import dataclasses

    from fairseq.models.hubert.hubert import HubertConfig

    return {f.name: f.type for f in dataclasses.fields(HubertConfig) if f.name != "_name"}


@FUZZ
@given(name=st.sampled_from(sorted(hubert_fields())), value=api_values)
@example(name="encoder_layerdrop", value=5.0)  # the probe's
def test_hubert_overrides_are_checked_or_an_input_error(name, value):
    from npy_tome_layer.encoder.config import (PROBABILITY_MARKS, hubert_config,
                                               hubert_model_config, with_overrides)

    cfg = hubert_config(hubert_model_config("tiny"))
    try:
        with_overrides(cfg, {name: value})
    except InputError as e:
        assert "\n" not in str(e)
        return
    kind, got = hubert_fields()[name], cfg[name]
    if kind in (bool, int, float):
        assert isinstance(value, bool) == (kind is bool)
    if kind is float:
        assert math.isfinite(got)
        if any(mark in name for mark in PROBABILITY_MARKS):
            assert 0 <= got <= 1
    if kind is int:
        assert got >= 0


@settings(max_examples=40, deadline=None)
@given(layer=api_values)
@example(layer=True)  # the probe's: once taken as layer 1
def test_output_layer_is_a_layer_or_an_input_error(hubert_tiny, layer):
    from npy_tome_layer import load_pruned_hubert

    global _TINY
    if "_TINY" not in globals():
        _TINY = load_pruned_hubert(hubert_tiny, pruning_rate=0.9)
    audio = torch.zeros(1, 800)
    try:
        with torch.no_grad():
            x, _ = _TINY.extract_features(audio, output_layer=layer)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert layer is None or (type(layer) is not bool and 1 <= layer <= 3)
    with torch.no_grad():
        same, _ = _TINY.extract_features(audio, output_layer=None if layer is None else int(layer))
    torch.testing.assert_close(x, same)


@FUZZ
@given(name=nasty_text)
@example(name="t\nx.wav")  # the probe's: written as a row pointing at "t x.wav"
def test_accepted_wav_names_round_trip_through_a_manifest(tmp_path, name):
    """A name preparation accepts comes back from the manifest as itself."""
    if not is_plain_file_name(name) or breaks_a_field(name):
        return
    folder = "/data/en-de/data/train/wav"
    row = {"id": "talk_0", "audio": f"{folder}/{name}:0:{MIN_SAMPLES}", "n_frames": MIN_SAMPLES,
           "tgt_text": "a", "src_text": "b", "speaker": "s"}
    path = tmp_path / "x.tsv"
    path.write_text(tsv_text([row]), encoding="utf-8")
    rows = read_manifest(str(path))
    assert len(rows) == 1
    assert parse_audio_ref(rows[0]["audio"], "/").path == os.path.join(folder, name)


@FUZZ
@given(data=st.data())
def test_the_first_non_finite_sample_of_a_segment_is_found(tmp_path, data):
    """Preparation's check, block by block, finds what the dataset reads:
    float32 samples (a double of 1e300 is inf there); integer files hold none."""
    from unittest import mock

    from npy_tome_layer.io import audio

    n = data.draw(st.integers(1, 40))
    subtype = data.draw(st.sampled_from(["FLOAT", "DOUBLE", "PCM_16"]))
    values = [0.0, 0.5, -1.0] + ([] if subtype == "PCM_16" else [math.nan, math.inf, -math.inf,
                                                                 1e300])
    samples = np.array(data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n)))
    start = data.draw(st.integers(0, n - 1))
    frames = data.draw(st.integers(1, n - start))
    path = str(tmp_path / "x.wav")
    sf.write(path, samples, SAMPLE_RATE, subtype=subtype)
    with mock.patch.object(audio, "CHECK_BLOCK", data.draw(st.integers(1, 9))):
        found = audio.first_non_finite_sample(path, sf.info(path), start, frames)
    read = sf.read(path, dtype="float32")[0][start:start + frames]
    bad = np.flatnonzero(~np.isfinite(read))
    assert found == (start + int(bad[0]) if len(bad) else None)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=st.one_of(yaml_values, st.fixed_dictionaries({"model": st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.lists(st.sampled_from([0.0, 1.0, math.nan, math.inf]),
                                               min_size=1, max_size=3).map(torch.tensor)),
    # the least of a training checkpoint that fairseq's upgrade step reads
    "optimizer_history": st.just([{"num_updates": 1, "lr_scheduler_state": {}}]),
    "extra_state": st.just({"train_iterator": None})})))
@example(value=[1, 2])  # the probe's: a list ended in "list indices must be integers"
def test_a_checkpoint_file_loads_as_a_dict_or_one_line(tmp_path, value):
    from npy_tome_layer.io.checkpoints import CheckpointError, load_checkpoint

    path = tmp_path / "x.pt"
    torch.save(value, path)
    try:
        state = load_checkpoint(str(path))
    except CheckpointError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        model = value.get("model") if isinstance(value, dict) else None
        if isinstance(model, dict):
            broken = next((k for k, t in model.items() if not torch.isfinite(t).all()), None)
            assert broken is not None and f"tensor {broken} holds NaN or inf" in str(e)
        return
    assert isinstance(state, dict)
    for weights in (state.get("model"), state.get("weights")):
        if isinstance(weights, dict):
            assert all(torch.isfinite(t).all() for t in weights.values() if torch.is_tensor(t))


@FUZZ
@given(data=st.one_of(st.binary(max_size=120),
                      st.lists(st.tuples(nasty_text, st.integers(-2, 99)), max_size=4).map(
                          lambda rows: "".join(f"{w} {c}\n" for w, c in rows).encode(
                              "utf-8", "surrogatepass"))))
@example(data=b"\x0a\x10\x00\x00\x80\xe7")  # the start of an spm.model: the probe's --dict
def test_a_dictionary_file_loads_or_is_one_line(tmp_path, data):
    from fairseq.data import Dictionary

    from npy_tome_layer.io.dictionary import load_dictionary

    path = tmp_path / "dict.txt"
    path.write_bytes(data)
    try:
        dictionary = load_dictionary(str(path), "--dict d")
    except InputError as e:
        assert str(e).startswith("--dict d: not a fairseq dictionary (")
        return
    assert isinstance(dictionary, Dictionary)


# --- fifth probe: the API's padding masks, --model-overrides keys

def mask_rows(length):
    """Rows of a padding mask: right padding (the collater's), left padding,
    a hole, or anything."""
    cut = st.integers(0, length)
    right = cut.map(lambda n: [False] * n + [True] * (length - n))
    left = cut.map(lambda n: [True] * n + [False] * (length - n))
    hole = st.tuples(cut, cut).map(lambda ab: [min(ab) <= i < max(ab) for i in range(length)])
    return st.one_of(right, left, hole, st.lists(st.booleans(), min_size=length,
                                                 max_size=length))


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(mask_rows(1600), min_size=1, max_size=3))
@example(rows=[[False] * 1000 + [True] * 600, [True] * 600 + [False] * 1000])  # A09
def test_a_padding_mask_is_right_padding_or_an_input_error(hubert_tiny, rows):
    """The API reads a row as its valid samples, then padding: a mask saying
    anything else is refused in one line; one it takes gives every row what
    the row alone gives."""
    from npy_tome_layer import load_pruned_hubert

    global _TINY_PRUNED
    if "_TINY_PRUNED" not in globals():
        _TINY_PRUNED = load_pruned_hubert(hubert_tiny, pruning_rate=0.9)
    mask = torch.tensor(rows)
    audio = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    valid = (~mask).sum(dim=1)
    right = all(not row[i] or row[i + 1] for row in rows for i in range(len(row) - 1))
    takes = right and all(n == 0 or n >= MIN_SAMPLES for n in valid.tolist())
    try:
        with torch.no_grad():
            x, x_mask = _TINY_PRUNED.extract_features(audio, padding_mask=mask)
    except InputError as e:
        assert not takes and "\n" not in str(e)
        return
    assert takes
    for row, n in enumerate(valid.tolist()):
        if n == 0:
            assert x_mask[row].all()
            continue
        with torch.no_grad():
            alone, _ = _TINY_PRUNED.extract_features(audio[row:row + 1, :n])
        kept = ~x_mask[row]
        torch.testing.assert_close(x[row, kept], alone[0], atol=1e-5, rtol=1e-4)


@FUZZ
@given(keys=st.lists(st.one_of(st.sampled_from(sorted(overridable_names())), nasty_text),
                     min_size=1, max_size=4))
@example(keys=["pruning-rate"])  # G05
def test_model_override_keys_are_the_models_or_an_input_error(keys):
    overrides = {key: 1 for key in keys}
    try:
        got = check_model_overrides_text(argparse.Namespace(model_overrides=repr(overrides)))
    except InputError as e:
        assert "\n" not in str(e)
        first_unknown = next(key for key in overrides if key not in overridable_names())
        assert str(e).startswith(f"--model-overrides key {first_unknown!r}:")
        return
    assert got == overrides and set(keys) <= overridable_names()
