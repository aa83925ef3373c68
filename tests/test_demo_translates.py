"""The demo's corpus holds sentences out, and a trained checkpoint can be
pruned at inference time by the sweep (the same BLEU fairseq-generate prints)."""
import json
import os
import re

import pytest
import yaml

from .conftest import REPO, run_cli


def test_held_out_sentences_never_occur_in_train():
    from npy_tome_layer.demo import grammar as g

    for sizes in ({"train": 400, "dev": 40, "tst-COMMON": 40},
                  {"train": 6, "dev": 4, "tst-COMMON": 4}):
        splits = g.split_combinations(sizes)
        assert {k: len(v) for k, v in splits.items()} == sizes
        train = set(splits["train"])
        train_words = {w for c in train for w in g.sentence("en", c).rstrip(".").lower().split()}
        for held_out in ("dev", "tst-COMMON"):
            assert not train & set(splits[held_out])
            for c in splits[held_out]:  # every word of a held-out sentence occurs in train
                assert set(g.sentence("en", c).rstrip(".").lower().split()) <= train_words
        assert not set(splits["dev"]) & set(splits["tst-COMMON"])


@pytest.mark.parametrize("lang,expected", [
    ("de", "Der Arzt will das Buch im Park."),
    ("es", "El médico quiere el libro en el parque."),
    ("fr", "Le médecin veut le livre dans le parc.")])
def test_translations_are_built_word_for_word(lang, expected):
    from npy_tome_layer.demo import grammar as g

    combo = (5, 4, 2, 5)
    assert g.sentence("en", combo) == "The doctor wants the book in the park."
    assert g.sentence(lang, combo) == expected


def test_held_out_splits_are_spoken_by_people_never_heard_in_train(st_corpus):
    from npy_tome_layer.demo.speech import VOICES

    txt = os.path.join(str(st_corpus["root"]), "mustc", "en-de", "data", "{0}", "txt", "{0}.{1}")
    people = {}
    for split in ("train", "dev", "tst-COMMON"):
        with open(txt.format(split, "yaml")) as f:
            people[split] = {VOICES[seg["speaker_id"]].person for seg in yaml.safe_load(f)}
    # scripts/install.sh installs flite and Festival's voices (CI runs it as root)
    assert len(people["train"]) == 3, people  # the fixture's three train talks
    assert people["dev"] and people["tst-COMMON"]
    assert not (people["dev"] | people["tst-COMMON"]) & people["train"], people
    with open(txt.format("train", "en")) as f:
        train = set(f.read().splitlines())
    with open(txt.format("tst-COMMON", "en")) as f:
        assert not train & set(f.read().splitlines())


def test_voices_name_their_people_once():
    from npy_tome_layer.demo.corpus import HELD_OUT_SPEAKERS, TRAIN_SPEAKERS
    from npy_tome_layer.demo.speech import VOICES

    train = {VOICES[s].person for s in TRAIN_SPEAKERS}
    held_out = [VOICES[s].person for s in HELD_OUT_SPEAKERS]
    assert len(set(held_out)) == len(held_out) and not train & set(held_out)


def test_without_flite_and_festival_the_corpus_falls_back_to_espeak_with_a_warning(
        monkeypatch, tmp_path, capsys):
    from npy_tome_layer.demo import corpus, speech

    monkeypatch.setattr(speech, "_flite_voices", lambda: frozenset())
    monkeypatch.setattr(speech, "_festival_voices", lambda: frozenset())
    corpus.build_demo_corpus(str(tmp_path), "de", {"train": (2, 3), "dev": (1, 2),
                                                   "tst-COMMON": (1, 2)})
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "flite_rms" in err and "festvox-kdlpc16k" in err
    with open(tmp_path / "en-de" / "data" / "dev" / "txt" / "dev.yaml") as f:
        assert {seg["speaker_id"] for seg in yaml.safe_load(f)} <= set(
            corpus.FALLBACK_HELD_OUT_SPEAKERS)


def test_speech_is_resampled_without_aliasing():
    import numpy as np
    from npy_tome_layer.demo.speech import resample

    rate = 22050  # espeak-ng's rate; flite's kal speaks at 8000, Festival's SLT at 32000
    t = np.arange(rate) / rate
    kept, above_nyquist = (np.sin(2 * np.pi * f * t) for f in (1000.0, 10000.0))
    spectrum = lambda x: np.abs(np.fft.rfft(resample(x, rate)[2000:-2000]))  # noqa: E731
    # 10 kHz cannot be represented at 16 kHz; interpolation folds it onto 6 kHz
    assert spectrum(above_nyquist).max() < 0.01 * spectrum(kept).max()
    assert len(resample(kept, rate)) == 16000
    up = resample(np.sin(2 * np.pi * 1000.0 * np.arange(8000) / 8000), 8000)
    assert len(up) == 16000 and abs(np.abs(up[2000:-2000]).max() - 1) < 0.02


@pytest.mark.parametrize("speaker", ["flite_kal", "festival_slt", "espeak_a"])
def test_every_engine_speaks_at_16_khz(speaker):
    from npy_tome_layer.demo.speech import speak

    wav = speak("the doctor wants the book", speaker)
    assert wav.dtype.name == "float32" and 0.5 * 16000 < len(wav) < 5 * 16000
    assert abs(float(abs(wav).max()) - 0.5) < 1e-3


def test_sweep_of_a_trained_checkpoint(fixed_checkpoint, st_corpus, tmp_path):
    from npy_tome_layer.tools.sweep import main

    out = tmp_path / "sweep"
    main(["--checkpoint", fixed_checkpoint, "--data", st_corpus["data"], "--subset", "dev",
          "--rates", "1.0", "0.9", "0.8", "--init-layers", "0", "1", "--out", str(out),
          "--beam", "2", "--cpu", "--repeats", "2", "--coverages", "0.9", "0.5"])
    records = json.loads((out / "sweep.json").read_text())
    assert [(r["rate"], r["coverage"], r["init_layer"]) for r in records] == [
        (1.0, None, 0), (0.9, None, 0), (0.8, None, 0), (1.0, None, 1), (0.9, None, 1),
        (0.8, None, 1), (None, 0.9, 0), (None, 0.5, 0), (None, 0.9, 1), (None, 0.5, 1)]
    for r in records:
        assert set(r) == {"reduction", "rate", "coverage", "init_layer", "bleu", "distinct",
                          "no_audio_bleu", "listens", "constant_bleu", "frames_kept",
                          "deltalm_frames_per_subword", "encoder_seconds", "speedup",
                          "base_speedup"}
        assert r["deltalm_frames_per_subword"] > 0
        # each setting beside its floor; two updates from tiny stand-ins do not listen
        assert 0 < r["distinct"] <= 1 and 0 <= r["no_audio_bleu"] <= 100 and not r["listens"]
        assert r["reduction"] == ("prune" if r["coverage"] is None else "coverage")
        assert r["base_speedup"] is None  # not asked for (--reference-size)
        assert r["encoder_seconds"] > 0 and r["speedup"] > 0 and 0 <= r["bleu"] <= 100
    layer0 = [r["frames_kept"] for r in records if r["init_layer"] == 0]
    assert layer0[0] == 1.0 and layer0[0] > layer0[1] > layer0[2]  # falls with the rate
    assert layer0[3] > layer0[4]  # and with the coverage
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "sweep.md").read_text()
    assert "trained at keep rate 0.9 from layer 0" in table and table.count("\n| rate 0.8 |") == 2
    assert "| distinct hypotheses | no-audio BLEU | listens |" in table
    assert "most frequent target for every utterance scores" in table

    # the rate-1.0 row is plain fairseq-generate on the checkpoint trained at 0.9
    generated = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation", "--gen-subset", "dev",
        "--path", fixed_checkpoint, "--beam", "2", "--max-tokens", "4000000", "--cpu",
        "--scoring", "sacrebleu", "--required-batch-size-multiple", "1",
        "--model-overrides", "{'pruning_rate': 1.0}"])
    bleu = float(re.search(r"BLEU = ([0-9.]+)", generated).group(1))
    assert records[0]["bleu"] == pytest.approx(bleu, abs=0.005)
    # and the 0.9 row is the checkpoint as trained
    generated = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation", "--gen-subset", "dev",
        "--path", fixed_checkpoint, "--beam", "2", "--max-tokens", "4000000", "--cpu",
        "--scoring", "sacrebleu", "--required-batch-size-multiple", "1"])
    bleu = float(re.search(r"BLEU = ([0-9.]+)", generated).group(1))
    assert records[1]["bleu"] == pytest.approx(bleu, abs=0.005)


def test_sweep_of_several_reductions_at_base_size(fixed_checkpoint, st_corpus, tmp_path):
    """One record per (reduction, rate, init layer); the reductions that keep
    prune's counts keep its frames; the dense setting is decoded once."""
    from npy_tome_layer.tools.sweep import main

    out = tmp_path / "sweep"
    main(["--checkpoint", fixed_checkpoint, "--data", st_corpus["data"], "--subset", "dev",
          "--rates", "1.0", "0.7", "--init-layers", "0", "--out", str(out), "--beam", "2",
          "--cpu", "--repeats", "1", "--reductions", "prune", "uniform", "adjacent", "fold",
          "--reference-size", "tiny"])
    records = json.loads((out / "sweep.json").read_text())
    assert [(r["reduction"], r["rate"], r["init_layer"]) for r in records] == [
        (name, rate, 0) for name in ("prune", "uniform", "adjacent", "fold")
        for rate in (1.0, 0.7)]
    dense = [r for r in records if r["rate"] == 1.0]
    assert len({r["bleu"] for r in dense}) == 1 and all(r["frames_kept"] == 1.0 for r in dense)
    assert all(r["base_speedup"] == 1.0 for r in dense)
    pruned = [r for r in records if r["rate"] == 0.7]
    assert len({r["frames_kept"] for r in pruned}) == 1 and pruned[0]["frames_kept"] < 1.0
    assert all(r["base_speedup"] > 0 for r in pruned)
    table = (out / "sweep.md").read_text()
    assert "| rate 0.7 | fold | 0 |" in table and "speedup at base size" in table
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_choose_coverage_finds_the_share_that_keeps_a_target_of_frames(fixed_checkpoint,
                                                                       st_corpus):
    from npy_tome_layer.tools.choose_coverage import choose, coverage_overrides, frames_share

    coverage, share = choose(fixed_checkpoint, st_corpus["data"], "dev", 0.5, log=lambda m: None)
    assert 0 < coverage < 1 and abs(share - 0.5) < 0.1
    assert frames_share(fixed_checkpoint, st_corpus["data"], "dev",
                        coverage_overrides(coverage, 0)) == share


def test_sweep_refuses_bad_rates(fixed_checkpoint, st_corpus, tmp_path, capsys):
    from npy_tome_layer.tools.sweep import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", fixed_checkpoint, "--data", st_corpus["data"],
              "--rates", "1.5", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "argument --rates: must be a number in (0, 1], got '1.5'" in capsys.readouterr().err


def test_generate_decodes_every_row_of_a_small_split(fixed_checkpoint, st_corpus):
    """fairseq's default --required-batch-size-multiple 8 decoded 8 rows of 12,
    and none (ZeroDivisionError) of a split with fewer than 8."""
    out = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation", "--gen-subset", "dev",
        "--path", fixed_checkpoint, "--beam", "2", "--max-tokens", "400000", "--cpu",
        "--scoring", "sacrebleu", "--max-len-b", "5"])
    assert len(re.findall(r"^D-\d+\t", out, flags=re.M)) == 4


def test_tune_lenpen_refuses_nan(fixed_checkpoint, st_corpus, capsys):
    from npy_tome_layer.tools.tune_lenpen import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", fixed_checkpoint, "--data", st_corpus["data"], "--tgt-lang", "de",
              "--lenpens", "nan", "1.0"])
    assert exit_info.value.code == 2
    assert "argument --lenpens: must be a finite number, got 'nan'" in capsys.readouterr().err
