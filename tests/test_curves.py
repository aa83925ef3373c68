"""The study's learning curves, read off fairseq's training log (evaluation/curves.py)."""
import json

import pytest

from npy_tome_layer.evaluation.curves import (best_update, read_off, training_seconds,
                                              updates_to_reach, validation_curves)

# fairseq 0.12's --log-format simple lines (as a study run logged them), with a training line
# that must not count
SIMPLE = """\
2026-12-07 20:52:07 | INFO | train_inner | epoch 002:     27 / 48 loss=3.514, bleu=99, num_updates=75, lr=0.00225
2026-12-07 20:52:18 | INFO | dev | epoch 003 | valid on 'dev' subset | loss 2.221 | bleu 13.17 | wps 653.2 | num_updates 100
2026-12-07 20:52:30 | INFO | tst-COMMON | epoch 003 | valid on 'tst-COMMON' subset | loss 2.24 | bleu 11.66 | num_updates 100
2026-12-07 20:53:03 | INFO | dev | epoch 005 | valid on 'dev' subset | loss 2.002 | bleu 35.93 | num_updates 200 | best_bleu 35.93
2026-12-07 20:53:15 | INFO | tst-COMMON | epoch 005 | valid on 'tst-COMMON' subset | loss 2.1 | bleu 30.5 | num_updates 200 | best_bleu 35.93
2026-12-07 20:54:03 | INFO | dev | epoch 007 | valid on 'dev' subset | loss 2.0 | bleu 35.93 | num_updates 300 | best_bleu 35.93
2026-12-07 20:54:15 | INFO | tst-COMMON | epoch 007 | valid on 'tst-COMMON' subset | loss 2.0 | bleu 33.0 | num_updates 300 | best_bleu 35.93
2026-12-07 20:55:03 | INFO | dev | epoch 009 | valid on 'dev' subset | loss 2.0 | bleu 30.0 | num_updates 400 | best_bleu 35.93
2026-12-07 20:55:15 | INFO | tst-COMMON | epoch 009 | valid on 'tst-COMMON' subset | loss 2.0 | bleu 34.0 | num_updates 400 | best_bleu 35.93
[study] training took 230 s
"""


def test_simple_log_curves_and_what_the_study_reads_off():
    curves = validation_curves(SIMPLE)
    assert curves == {"dev": [(100, 13.17), (200, 35.93), (300, 35.93), (400, 30.0)],
                      "tst-COMMON": [(100, 11.66), (200, 30.5), (300, 33.0), (400, 34.0)]}
    # fairseq's checkpoint_best.pt is overwritten on a tie (>=): the later of two equal peaks
    assert best_update(curves["dev"]) == 300
    run = read_off(SIMPLE + "[study] training took 20 s\n", "dev", "tst-COMMON", 0.95)
    assert run["best_update"] == 300 and run["curve_plateau"] == 33.0 and run["updates"] == 400
    assert run["updates_to_plateau_share"] == 300  # 95 % of 33.0 is 31.35: not 30.5
    assert run["training_seconds"] == 250


def test_updates_to_reach_is_the_first_validation_at_the_level():
    curve = [(100, 10.0), (200, 31.0), (300, 31.4), (400, 33.0)]
    assert updates_to_reach(curve, 0.95 * 33.0) == 300
    assert updates_to_reach(curve, 40.0) is None


def test_json_log_curves_and_a_resumed_run_counts_a_validation_once():
    lines = [json.dumps({"epoch": 1, "train_loss": "3.1", "train_num_updates": "50"}),
             json.dumps({"epoch": 1, "dev_loss": "2.2", "dev_bleu": "12.5",
                         "dev_num_updates": "100"}),
             json.dumps({"epoch": 1, "tst-COMMON_bleu": "11", "tst-COMMON_num_updates": "100"}),
             json.dumps({"epoch": 1, "dev_loss": "2.2", "dev_bleu": "13.5",
                         "dev_num_updates": "100"})]
    text = "\n".join(f"2026-12-07 20:00:00 | INFO | x | {line}" for line in lines)
    assert validation_curves(text) == {"dev": [(100, 13.5)], "tst-COMMON": [(100, 11.0)]}
    assert training_seconds(text) == 0


def test_a_log_without_the_curves_subset_is_named():
    with pytest.raises(ValueError, match="no validation of tst-COMMON in the log"):
        read_off(SIMPLE.replace("tst-COMMON", "other"), "dev", "tst-COMMON")


def test_the_study_reports_each_runs_curve_plateau_and_interval(st_corpus, fixed_checkpoint,
                                                                tmp_path, capsys):
    """tools/study on one checkpoint decoded as two modes, each with a training
    log: the log's numbers per run and per mode, the bootstrap half-width, the
    train split's BLEU, and the curves' plot."""
    import hashlib
    import os

    from npy_tome_layer.tools import study

    from .conftest import REPO, run_cli

    out = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation", "--tgt-lang", "de", "--path", fixed_checkpoint,
        "--gen-subset", "dev", "--beam", "1", "--max-tokens", "100000", "--cpu",
        "--num-workers", "0", "--scoring", "sacrebleu", "--required-batch-size-multiple", "1"])
    with open(fixed_checkpoint, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    generated = tmp_path / "generate.txt"
    generated.write_text(f"# checkpoint sha256 {digest} {fixed_checkpoint}\n" + out)
    log = tmp_path / "train.log"
    # selected by the log's dev lines (as dev2), the curve its tst-COMMON lines (as dev)
    log.write_text(SIMPLE.replace("dev", "dev2").replace("tst-COMMON", "dev"))
    args = ["--data", st_corpus["data"], "--subset", "dev", "--out", str(tmp_path / "study"),
            "--reference-size", "tiny", "--repeats", "1", "--cpu", "--beam", "1",
            "--selected-by", "dev2"]
    for mode in ("baseline", "fixed"):
        args += ["--run", mode, "1", fixed_checkpoint, str(generated),
                 "--log", mode, "1", str(log)]
    study.main(args)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    run = report["runs"][0]
    assert (run["best_update"], run["updates"], run["curve_plateau"]) == (300, 400, 33.0)
    assert run["updates_to_plateau_share"] == 300 and run["training_seconds"] == 230
    assert 0 <= run["bleu_half_width"] <= 100
    mode = report["modes"][1]
    assert (mode["updates"], mode["best_update"], mode["training_seconds"]) == (400, 300, 230)
    assert report["train_bleu"]["mode"] == "baseline" and report["train_bleu"]["bleu"] >= 0
    table = (tmp_path / "study" / "study.md").read_text()
    assert "| 300 / 400 | 300 | 3.8 min |" in table
    assert "baseline seed 1 translates the train split at" in table
    assert (tmp_path / "study" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        study.parse_arguments(args + ["--log", "baseline", "2", str(log)])
    assert "--log baseline 2: no --run baseline 2" in capsys.readouterr().err


def test_modes_of_one_setting_are_timed_with_their_own_counts():
    """ctc and its control ctc_loss share a final setting (ctc from layer 7)
    but keep 34 % and 100 % of the frames: each is timed replaying its own
    counts (the study had shown ctc's speedup for both); modes whose counts
    follow the setting share its timing."""
    from npy_tome_layer.tools.study import timing_key, timing_keys

    ctc, prune = ("ctc", 1.0, 7), ("prune", 0.9, 0)
    settings = {"ctc": ctc, "ctc_loss": ctc, "fixed": prune, "fixed_from_standins": prune}
    kept = {timing_key(ctc, "ctc"): [[3]], timing_key(ctc, "ctc_loss"): [[9]]}
    keys = timing_keys(settings, kept)
    assert keys["ctc"] != keys["ctc_loss"] and {keys["ctc"], keys["ctc_loss"]} <= set(kept)
    assert keys["fixed"] == keys["fixed_from_standins"] == prune
