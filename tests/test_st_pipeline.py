"""The real command line: fairseq-train ST (pruned, multitask) -> fairseq-generate -> BLEU,
on espeak-ng speech, with the HuBERT file gone at generation time."""
import os
import re
import shutil

import pytest

from .conftest import REPO, common_train_args, run_cli


@pytest.fixture(scope="module")
def st_checkpoint(st_corpus, mt_checkpoint):
    save = st_corpus["root"] / "ckpt_st"
    log = run_cli("fairseq-train", common_train_args(st_corpus, save) + [
        "--st-training", "--mt-finetune", "--arch", "hubert_transformer_pruning_layer_schedule",
        "--hubert-model-path", st_corpus["hubert"],
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0],
        "--pruning-max-rate", "1.0", "--pruning-min-rate", "0.8",
        "--pruning-schedule-updates", "2", "--conv-channels", "32",
        "--max-tokens", "100000", "--max-tokens-text", "300", "--max-update", "4",
        "--valid-subset", "dev"])
    return str(save / "checkpoint_last.pt"), log


def test_training_logs_both_losses(st_checkpoint):
    _, log = st_checkpoint
    assert re.search(r"st_loss[ =][0-9.]+", log) and re.search(r"mt_loss[ =][0-9.]+", log)
    assert "accuracy" in log and "num_updates 4" in log


def test_generate_without_the_hubert_file(st_checkpoint, st_corpus, tmp_path):
    ckpt, _ = st_checkpoint
    moved = str(tmp_path / "hubert_moved.pt")
    shutil.move(st_corpus["hubert"], moved)
    try:
        out = run_cli("fairseq-generate", [
            st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--gen-subset", "tst-COMMON",
            "--path", ckpt, "--beam", "8", "--lenpen", "1.2", "--scoring", "sacrebleu",
            "--max-tokens", "100000", "--cpu", "--max-len-a", "0", "--max-len-b", "8",
            "--required-batch-size-multiple", "1"])
    finally:
        shutil.move(moved, st_corpus["hubert"])
    assert re.search(r"Generate tst-COMMON with beam=8: BLEU = [0-9.]+", out)
    assert re.search(r"sacreBLEU signature: nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:", out)
    assert len(re.findall(r"^D-\d+\t", out, flags=re.M)) == 4
    # references come back detokenised (no sentencepiece marks)
    refs = re.findall(r"^T-\d+\t(.*)$", out, flags=re.M)
    assert "Wir können die Zukunft verändern." in refs or any("\u2581" not in r for r in refs)


def test_checkpoint_evaluates_at_the_rate_it_reached(st_checkpoint):
    from fairseq import checkpoint_utils

    ckpt, _ = st_checkpoint
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [ckpt], arg_overrides={"data": os.path.dirname(ckpt) + "/../data"})
    assert models[0].encoder.hubert.encoder.keep_rate == pytest.approx(0.8)
