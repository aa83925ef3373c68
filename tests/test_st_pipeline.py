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


def test_generate_without_the_pretrained_files(st_checkpoint, st_corpus, mt_checkpoint, tmp_path):
    ckpt, _ = st_checkpoint
    gone = {st_corpus["hubert"]: str(tmp_path / "hubert_moved.pt"),
            mt_checkpoint[0]: str(tmp_path / "mt_moved.pt")}
    for path, moved in gone.items():
        shutil.move(path, moved)
    try:
        out = run_cli("fairseq-generate", [
            st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--gen-subset", "tst-COMMON",
            "--path", ckpt, "--beam", "8", "--lenpen", "1.2", "--scoring", "sacrebleu",
            "--max-tokens", "100000", "--cpu", "--max-len-a", "0", "--max-len-b", "8",
            "--required-batch-size-multiple", "1"])
    finally:
        for path, moved in gone.items():
            shutil.move(moved, path)
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


def test_visualise_an_st_checkpoint(st_checkpoint, tmp_path):
    import numpy as np
    import torch

    from npy_tome_layer.tools.visualize_pruning import load_for_visualisation, survival

    ckpt, _ = st_checkpoint
    model = load_for_visualisation(ckpt, None, None)
    assert model.encoder.keep_rate == pytest.approx(0.8)  # the rate the schedule reached
    state = torch.load(ckpt, weights_only=True)["model"]
    torch.testing.assert_close(model.encoder.layers[0].fc1.weight,
                               state["encoder.hubert.encoder.layers.0.fc1.weight"])
    grid = survival(model, np.random.default_rng(0).standard_normal(16000).astype("float32"))
    assert grid.shape[0] == 3 and grid[-1].sum() < grid.shape[1]


@pytest.mark.parametrize("reduction", ["merge", "conv"])
def test_train_the_alternatives_from_the_command_line(st_corpus, mt_checkpoint, tmp_path, reduction):
    import torch

    save = tmp_path / reduction
    run_cli("fairseq-train", common_train_args(st_corpus, save) + [
        "--st-training", "--arch", "hubert_transformer_pruning_layer",
        "--hubert-model-path", st_corpus["hubert"], "--token-reduction", reduction,
        "--pruning-rate", "0.8", "--pruning-init-layer", "1", "--conv-channels", "32",
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0],
        "--max-tokens", "100000", "--max-update", "2", "--valid-subset", "dev",
        "--no-epoch-checkpoints"])
    state = torch.load(save / "checkpoint_last.pt", weights_only=True)
    has_conv = "encoder.hubert.encoder.length_reduction.conv.weight" in state["model"]
    assert has_conv == (reduction == "conv")
    assert state["cfg"]["model"].token_reduction == reduction


def test_decode_timing_of_a_checkpoint(st_checkpoint, st_corpus):
    from npy_tome_layer.tools.benchmark import decode_timing

    ckpt, _ = st_checkpoint
    table = decode_timing({"pruned": ckpt}, st_corpus["data"], "tst-COMMON", beam=2)
    row = next(line for line in table.splitlines() if line.startswith("| pruned |"))
    _, _, beam, utterances, decode_s, encoder_s, _ = row.split("|")
    assert int(beam) == 2 and int(utterances) == 4
    assert float(decode_s) >= float(encoder_s) > 0


def _hypotheses(out):
    return sorted(re.findall(r"^D-(\d+)\t\S+\t(.*)$", out, flags=re.M))


def test_a_pruned_checkpoint_translates_alike_in_any_batch(st_checkpoint, st_corpus):
    """New checkpoints are batch-invariant: fairseq-generate with one large
    batch and with one utterance per batch gives the same hypotheses, and each
    utterance's encoder output in the batch equals its own alone."""
    import torch
    from fairseq import checkpoint_utils

    ckpt, _ = st_checkpoint
    assert torch.load(ckpt, weights_only=True)["cfg"]["model"].fairseq_padding is False
    common = [st_corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
              "--task", "speech_and_text_translation", "--gen-subset", "tst-COMMON",
              "--path", ckpt, "--beam", "4", "--cpu", "--required-batch-size-multiple", "1",
              "--max-len-a", "0", "--max-len-b", "12"]
    batched = run_cli("fairseq-generate", common + ["--max-tokens", "4000000"])
    single = run_cli("fairseq-generate", common + ["--batch-size", "1"])
    assert len(_hypotheses(batched)) == 4 and _hypotheses(batched) == _hypotheses(single)

    def encoder_outputs(overrides):
        models, _, task = checkpoint_utils.load_model_ensemble_and_task(
            [ckpt], arg_overrides={"data": st_corpus["data"], **overrides})
        task.load_dataset("tst-COMMON")
        data, encoder = task.datasets["tst-COMMON"], models[0].eval().encoder
        batch = data.collater([data[i] for i in range(len(data))])["net_input"]
        with torch.no_grad():
            out = encoder(batch["src_tokens"], batch["src_lengths"])
            diffs = []
            for b, n in enumerate(batch["src_lengths"].tolist()):
                alone = encoder(batch["src_tokens"][b:b + 1, :n], batch["src_lengths"][b:b + 1])
                x, mask = out["encoder_out"][0][:, b], out["encoder_padding_mask"][0][b]
                x_alone = alone["encoder_out"][0][:, 0]
                if int((~mask).sum()) != x_alone.size(0):
                    diffs.append(float("inf"))
                else:
                    diffs.append(float((x[~mask] - x_alone).abs().max()))
        assert len(set(batch["src_lengths"].tolist())) > 1  # the batch is padded
        return diffs

    assert max(encoder_outputs({})) <= 1e-4
    # the test can see the difference: fairseq's padded front end changes the rows
    assert max(encoder_outputs({"fairseq_padding": True})) > 1e-3


def test_normalising_long_audio_in_half_precision():
    """HuBERT large's per-utterance normalisation counts samples in fp32: in
    fp16 a row of more than 65,504 samples would count to inf."""
    import torch

    from npy_tome_layer.st.model import _normalize_valid

    audio = torch.randn(2, 100000) * 0.3 + 0.1
    padding = torch.zeros(2, 100000, dtype=torch.bool)
    padding[1, 70000:] = True
    expected = _normalize_valid(audio, padding)
    half = _normalize_valid(audio.half(), padding)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), expected, atol=2e-2, rtol=1e-2)
    assert expected[0].std().item() == pytest.approx(1.0, abs=1e-3)
