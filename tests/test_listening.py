"""The floor every BLEU table is read against: distinct hypotheses, the
no-audio decoding (--replace-audio silence) and one constant sentence; a
model that writes one sentence for every utterance is marked, one that
translates is not."""
import hashlib
import re

import pytest
import torch

from npy_tome_layer.evaluation.listening import (assess, distinct_share, listening_mark,
                                                 most_frequent_target)

from .conftest import run_cli

REFERENCES = [f"der Lehrer {i} sieht den Brief {i % 7} in der Schule nummer {i}"
              for i in range(40)]


def test_one_sentence_for_every_utterance_is_marked_as_not_listening():
    constant = ["der Lehrer sieht den Brief in der Schule"] * 40
    heard = assess(constant, REFERENCES, no_audio=list(constant),
                   constant_sentence="die Frau liest das Buch")
    assert heard.distinct == 1 / 40 and not heard.listens
    assert listening_mark(heard) == "NO (few distinct)"
    assert heard.bleu == heard.no_audio_bleu  # it writes what it writes for silence


def test_distinct_outputs_at_the_floor_are_not_listening_either():
    # every hypothesis differs, but it is no closer to its reference than the
    # decoding of silence is: noise at the floor
    noisy = [f"der Lehrer sieht x{i}" for i in range(40)]
    silence = [f"der Lehrer sieht y{i}" for i in range(40)]
    heard = assess(noisy, REFERENCES, silence, constant_sentence="die Frau")
    assert heard.distinct == 1.0 and not heard.listens
    assert listening_mark(heard) == "NO (at the floor)"


def test_a_translating_model_listens():
    close = [r.replace("Schule", "Stadt") for r in REFERENCES]
    silence = ["der Lehrer sieht den Brief in der Schule"] * 40
    heard = assess(close, REFERENCES, silence, constant_sentence="der Lehrer sieht")
    assert heard.listens and listening_mark(heard) == "yes"
    assert heard.bleu > heard.floor and heard.p_above_floor < 0.05
    assert heard.floor == max(heard.no_audio_bleu, heard.constant_bleu)


def test_assess_needs_one_hypothesis_of_each_kind_per_utterance():
    with pytest.raises(ValueError, match="one each per utterance"):
        assess(["a", "b"], ["a"], ["a", "b"], "a")


def test_distinct_share_and_the_most_frequent_target(tmp_path):
    assert distinct_share(["a", "b", "a", "c"]) == 0.75 and distinct_share([]) == 0.0
    manifest = tmp_path / "train.tsv"
    rows = ["id\taudio\tn_frames\ttgt_text\tsrc_text\tspeaker"]
    for i, target in enumerate(["Hallo.", "Guten Tag.", "Guten Tag.", "Hallo.", "Tschüss."]):
        rows.append(f"u{i}\tx.wav\t16000\t{target}\tsource\tspk")
    manifest.write_text("\n".join(rows) + "\n")
    assert most_frequent_target(str(manifest)) == "Hallo."  # a tie goes to the earlier row


def test_replace_audio_silence_keeps_each_length_and_drops_the_words(st_corpus,
                                                                     fixed_checkpoint):
    from npy_tome_layer.evaluation.decoding import load_st_model

    _, heard, task = load_st_model(fixed_checkpoint, st_corpus["data"], "dev")
    task.args.replace_audio = "silence"
    task.load_dataset("dev")
    silent = task.datasets["dev"]
    assert len(silent) == len(heard)
    for i in range(len(heard)):
        audio, nothing = heard[i]["source"], silent[i]["source"]
        assert nothing.shape == audio.shape and not nothing.any() and audio.abs().sum() > 0
        assert torch.equal(silent[i]["target"], heard[i]["target"])


def test_fairseq_generate_takes_replace_audio(st_corpus, fixed_checkpoint):
    import os

    from npy_tome_layer.evaluation.decoding import USER_DIR

    out = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", USER_DIR, "--task", "speech_and_text_translation",
        "--tgt-lang", "de", "--path", fixed_checkpoint, "--gen-subset", "dev", "--beam", "2",
        "--max-tokens", "400000", "--scoring", "sacrebleu", "--cpu", "--replace-audio", "silence"])
    assert re.search(r"^Generate dev with beam=2: BLEU = [0-9.]+", out, flags=re.M)
    assert len(re.findall(r"^D-\d+\t", out, flags=re.M)) == 4
    assert os.path.isfile(fixed_checkpoint)


def test_compare_runs_shows_the_floor_next_to_each_bleu(st_corpus, fixed_checkpoint, tmp_path,
                                                        capsys):
    from npy_tome_layer.evaluation.decoding import decode
    from npy_tome_layer.tools.compare_runs import main

    decoded = decode(fixed_checkpoint, st_corpus["data"], "dev", beam=2, cpu=True)
    generate_out = tmp_path / "generate.txt"
    # evaluate.sh's record of the checkpoint that decoded (compare_runs checks it)
    digest = hashlib.sha256(open(fixed_checkpoint, "rb").read()).hexdigest()
    generate_out.write_text(f"# checkpoint sha256 {digest} {fixed_checkpoint}\n" + "".join(f"T-{i}\t{r}\nD-{i}\t-1.0\t{h}\n" for i, (h, r) in enumerate(
        zip(decoded.hypotheses, decoded.references))) +
        f"Generate dev with beam=2: BLEU = {decoded.bleu:.2f} 0/0/0/0\n")
    main(["--data", st_corpus["data"], "--subset", "dev", "--beam", "2", "--cpu",
          "--repeats", "1", "--reference-size", "tiny",
          "--run", f"fixed={fixed_checkpoint}:{generate_out}",
          "--run", f"unscored={fixed_checkpoint}"])
    out = capsys.readouterr().out
    assert "| distinct hypotheses | no-audio BLEU | listens |" in out
    assert "| HuBERT frames kept | frames into DeltaLM per target subword |" in out
    row = re.search(r"^\| fixed \| prune 0\.9 \(from 0\) \| ([0-9.]+) \| (\d+) % \| ([0-9.]+) "
                    r"\| (yes|NO \([a-z ]+\)) \|", out, flags=re.M)
    assert row, out
    distinct = len(set(decoded.hypotheses)) / len(decoded.hypotheses)
    assert int(row.group(2)) == round(100 * distinct)
    # two updates from a random stand-in do not listen
    assert row.group(4).startswith("NO")
    assert re.search(r"^\| unscored \| prune 0\.9 \(from 0\) \| n/a \| n/a \| n/a \| n/a \|", out,
                     flags=re.M)
    assert re.search(r"most frequent target for every utterance scores [0-9.]+", out)


def test_spread_and_entropy_measures():
    from npy_tome_layer.tools.diagnose_listening import attention_entropy, mean_cosine_distance

    same = torch.ones(5, 3)
    assert abs(mean_cosine_distance(same)) < 1e-12
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert abs(mean_cosine_distance(opposite) - 2.0) < 1e-12
    assert abs(attention_entropy(torch.full((3, 8), 1 / 8)) - 1.0) < 1e-9
    peaked = torch.zeros(3, 8)
    peaked[:, 2] = 1.0
    assert attention_entropy(peaked) < 1e-6 and attention_entropy(torch.ones(4, 1)) == 0.0


def test_diagnosis_of_a_checkpoint(st_corpus, fixed_checkpoint, capsys):
    from npy_tome_layer.tools.diagnose_listening import main

    main(["--data", st_corpus["data"], "--subset", "dev", "--run", f"fixed={fixed_checkpoint}"])
    out = capsys.readouterr().out
    row = re.search(r"^\| fixed \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| (-?[0-9.]+) \|$", out,
                    flags=re.M)
    assert row, out
    hubert_spread, encoder_spread, entropy, _ = map(float, row.groups())
    assert 0 < hubert_spread <= 2 and 0 < encoder_spread <= 2 and 0 < entropy <= 1


def write_generate_output(path, hypotheses, references):
    """fairseq-generate's D- and T- lines, as tools read them."""
    path.write_text("".join(f"T-{i}\t{r}\nD-{i}\t-0.1\t{h}\n"
                            for i, (h, r) in enumerate(zip(hypotheses, references))),
                    encoding="utf-8")
    return str(path)


def test_paired_pools_each_modes_seeds_and_tests_each_pair(tmp_path, capsys):
    """tools.paired: two modes of two seeds each, the seeds pooled in seed order;
    a mode that copies the references beats one that writes one sentence."""
    from npy_tome_layer.tools import paired

    refs = [f"die frau {w} den ball im park" for w in ("sieht", "hält", "wirft", "findet")] * 5
    runs = []
    for seed in (2, 1):  # given out of order: pooled by seed
        runs += ["--run", "good", str(seed),
                 write_generate_output(tmp_path / f"good{seed}.txt", refs, refs)]
        runs += ["--run", "one", str(seed),
                 write_generate_output(tmp_path / f"one{seed}.txt", [refs[0]] * len(refs), refs)]
    paired.main(runs + ["--pair", "good", "one"])
    row = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"\| good \| one \| 100\.00 \| [0-9.]+ \| \+[0-9.]+ \| 0\.0001 \|", row), row
    with pytest.raises(SystemExit):  # a mode that is not a --run's: argparse's one line
        paired.main(runs + ["--pair", "good", "nosuch"])
    assert "--pair good nosuch: nosuch is not a mode of --run (modes: good one)" in \
        capsys.readouterr().err
    other = write_generate_output(tmp_path / "other.txt", refs, refs[::-1])
    with pytest.raises(SystemExit, match="paired: mode bad: its seeds' references differ"):
        paired.main(runs + ["--run", "bad", "1", other, "--pair", "good", "bad"])
