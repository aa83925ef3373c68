"""MuST-C preparation on a corpus with known samples: row counts, exact
read-back of every segment, bad segments reported by split and line,
re-runs that keep finished work."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml
from fairseq.data import Dictionary, data_utils

from npy_tome_layer.st.dataset import SpeechTranslationDataset
from npy_tome_layer.demo.phrases import LANGUAGES, TRANSLATIONS, phrase_pairs
from npy_tome_layer.tools.prepare_mustc import PreparationError, prepare

SR = 16000


def write_corpus(root, talks, seed=0):
    """talks: {split: [segment lengths in samples per talk, ...]}. Each talk is
    one PCM_16 wav of random samples; returns {split: [int16 array per segment]}."""
    rng = np.random.default_rng(seed)
    pairs = phrase_pairs("de")
    expected, k = {}, 0
    for split, per_talk in talks.items():
        base = os.path.join(root, "en-de", "data", split)
        os.makedirs(os.path.join(base, "wav"))
        os.makedirs(os.path.join(base, "txt"))
        records, en, de, expected[split] = [], [], [], []
        for t, lengths in enumerate(per_talk):
            name = f"ted_{split}_{t}.wav"
            pos, chunks = 1234, [rng.integers(-3000, 3000, 1234, dtype=np.int16)]
            for n in lengths:
                seg = rng.integers(-20000, 20000, n, dtype=np.int16)
                records.append({"duration": n / SR, "offset": pos / SR, "rW": 3, "uW": 0,
                                "speaker_id": f"spk{t}", "wav": name})
                expected[split].append(seg)
                gap = rng.integers(-100, 100, 777, dtype=np.int16)
                chunks += [seg, gap]
                pos += n + 777
                en.append(pairs[k % len(pairs)][0])
                de.append(pairs[k % len(pairs)][1])
                k += 1
            sf.write(os.path.join(base, "wav", name), np.concatenate(chunks), SR, subtype="PCM_16")
        with open(os.path.join(base, "txt", f"{split}.yaml"), "w") as f:
            yaml.safe_dump(records, f, default_flow_style=None)
        for lang, lines in (("en", en), ("de", de)):
            with open(os.path.join(base, "txt", f"{split}.{lang}"), "w") as f:
                f.write("\n".join(lines) + "\n")
    return expected


TALKS = {"train": [[8000, 12345, 4000], [9999, 5000]], "dev": [[7000, 3210]],
         "tst-COMMON": [[4321, 6000]], "tst-HE": [[5000]]}


@pytest.fixture
def prepared(tmp_path, st_corpus):
    expected = write_corpus(str(tmp_path / "mustc"), TALKS)
    out = tmp_path / "out"
    logs = []
    prepare(str(tmp_path / "mustc"), "de", str(out), st_corpus["spm"], st_corpus["dict"],
            log=logs.append)
    return out, expected, logs


def test_row_counts_equal_segment_counts(prepared):
    out, expected, _ = prepared
    for split, segments in expected.items():
        with open(out / f"{split}.tsv") as f:
            assert len(f.read().splitlines()) == 1 + len(segments), split
    # the MT binaries hold the same sentence pairs (dev -> valid, tst-COMMON -> test)
    for split, mt_name in (("train", "train"), ("dev", "valid"), ("tst-COMMON", "test")):
        for lang in ("en", "de"):
            ds = data_utils.load_indexed_dataset(str(out / "mt" / f"{mt_name}.en-de.{lang}"), None)
            assert len(ds) == len(expected[split]), (split, lang)


def test_tsv_audio_reads_back_exactly_the_segment(prepared):
    out, expected, _ = prepared
    for split, segments in expected.items():
        ds = SpeechTranslationDataset.from_tsv(str(out / f"{split}.tsv"), Dictionary(),
                                               lambda s: s, shuffle=False)
        assert len(ds) == len(segments)
        for i, seg in enumerate(segments):
            np.testing.assert_array_equal(ds[i]["source"].numpy(), seg.astype(np.float32) / 32768)


def test_rerun_keeps_finished_outputs(prepared, st_corpus, tmp_path):
    out, _, _ = prepared
    before = {p: os.stat(out / p).st_mtime_ns for p in ("train.tsv", "config.yaml", "mt")}
    logs = []
    prepare(str(tmp_path / "mustc"), "de", str(out), st_corpus["spm"], st_corpus["dict"],
            log=logs.append)
    assert {p: os.stat(out / p).st_mtime_ns for p in before} == before
    assert any("train.tsv exists, kept" in line for line in logs)
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def _edit_yaml(path, edit):
    with open(path) as f:
        records = yaml.safe_load(f)
    edit(records)
    with open(path, "w") as f:
        yaml.safe_dump(records, f)


def test_bad_segments_reported_by_split_and_line(tmp_path, st_corpus):
    root = str(tmp_path / "mustc")
    write_corpus(root, TALKS)
    train_yaml = os.path.join(root, "en-de", "data", "train", "txt", "train.yaml")

    def break_segments(records):
        records[2]["duration"] = 100.0            # line 3: past the end of its wav
        records[4]["wav"] = "ted_missing.wav"     # line 5: no such wav
    _edit_yaml(train_yaml, break_segments)
    dev_de = os.path.join(root, "en-de", "data", "dev", "txt", "dev.de")
    with open(dev_de) as f:
        lines = f.read().splitlines()
    with open(dev_de, "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")     # dev: one translation missing
    out = tmp_path / "out"
    with pytest.raises(PreparationError) as err:
        prepare(root, "de", str(out), st_corpus["spm"], st_corpus["dict"], log=lambda *a: None)
    msg = str(err.value)
    assert "train: line 3 (ted_train_0.wav): segment" in msg and "lies outside" in msg
    assert "train: line 5 (ted_missing.wav): " in msg and "ted_missing.wav does not exist" in msg
    assert "train: line 1 " not in msg and "train: line 4 " not in msg
    assert "dev.yaml has 2 segments, dev.en 2 lines, dev.de 1 lines" in msg
    # no manifest for the broken splits, the good ones are written
    assert not (out / "train.tsv").exists() and not (out / "dev.tsv").exists()
    assert (out / "tst-COMMON.tsv").exists()


def test_cli_reports_one_clear_error(tmp_path, st_corpus):
    root = str(tmp_path / "mustc")
    write_corpus(root, {"train": [[4000, 4000]], "dev": [[4000]]})
    _edit_yaml(os.path.join(root, "en-de", "data", "train", "txt", "train.yaml"),
               lambda r: r[1].update(offset=-1.0))
    proc = subprocess.run([sys.executable, "-m", "npy_tome_layer.tools.prepare_mustc",
                           "--mustc-root", root, "--tgt-lang", "de", "--out", str(tmp_path / "o"),
                           "--spm-model", st_corpus["spm"], "--dict", st_corpus["dict"]],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "train: line 2 (ted_train_0.wav): segment -1.0s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_phrase_sets_cover_all_eight_pairs_and_the_stand_in_vocabulary(st_corpus):
    import sentencepiece as spm

    assert set(LANGUAGES) == {"de", "es", "fr", "it", "nl", "pt", "ro", "ru"}
    sp = spm.SentencePieceProcessor(model_file=st_corpus["spm"])
    for lang, lines in TRANSLATIONS.items():
        assert len(lines) == 36 and all(s.strip() for s in lines), lang
        assert len(set(lines)) == 36, lang
        for s in lines:
            assert sp.unk_id() not in sp.encode(s), (lang, s)  # DeltaLM's spm is multilingual too


@pytest.mark.parametrize("field,value,words", [
    ("wav", "../../../outside.wav", "is not the name of a file in"),
    ("wav", "/etc/passwd", "is not the name of a file in"),
    ("duration", float("nan"), "are not finite numbers of seconds"),
    ("offset", float("inf"), "are not finite numbers of seconds"),
    ("offset", True, "are not finite numbers of seconds"),
])
def test_segments_that_point_outside_or_are_not_finite_are_refused(tmp_path, st_corpus, field,
                                                                    value, words):
    root = str(tmp_path / "mustc")
    write_corpus(root, {"train": [[4000, 4000]], "dev": [[4000]]})
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"")
    _edit_yaml(os.path.join(root, "en-de", "data", "train", "txt", "train.yaml"),
               lambda r: r[1].update({field: value}))
    with pytest.raises(PreparationError) as err:
        prepare(root, "de", str(tmp_path / "out"), st_corpus["spm"], st_corpus["dict"],
                log=lambda *a: None)
    assert "train: line 2 " in str(err.value) and words in str(err.value)
    assert not (tmp_path / "out" / "train.tsv").exists()


def test_yaml_aliases_are_refused_at_once(tmp_path):
    """Nine lines of nested aliases would expand to 10^9 items: refused before loading."""
    from npy_tome_layer.tools.prepare_mustc import read_yaml_segments

    path = tmp_path / "train.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},"
                     f"*{prev},*{prev}]")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PreparationError) as err:
        read_yaml_segments(str(path), "train")
    assert "line 2: YAML aliases" in str(err.value) and len(str(err.value)) < 300
