"""Training means what it means in CRESS (the code the paper is built on):
the multitask loss, the MT stage, dev BLEU for checkpoint selection, the
paper's command line, multi-worker backends, long inputs."""
import os
import re

import pytest
import torch

from .conftest import REPO, common_train_args, run_cli

USER_DIR = os.path.join(REPO, "npy_tome_layer")


def build(corpus, mt_checkpoint, tmp_path, *flags):
    from fairseq import options, tasks

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, common_train_args(corpus, tmp_path) + [
        "--arch", "hubert_transformer_pruning_layer", "--hubert-model-path", corpus["hubert"],
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0],
        "--conv-channels", "32", "--max-tokens", "100000", "--max-tokens-text", "300",
        "--valid-subset", "dev", *flags])
    task = tasks.setup_task(args)
    model = task.build_model(args)
    criterion = task.build_criterion(args)
    task.load_dataset("train")
    dataset = task.datasets["train"]
    batch = dataset.collater([dataset[i] for i in range(3)])
    return task, model, criterion, batch


class BackwardOnly:
    """What task.train_step needs of an optimizer."""

    def backward(self, loss):
        loss.backward()


def losses(criterion, model, sample, training):
    model.eval()  # no dropout: the same forward every call
    criterion.train(training)
    with torch.no_grad():
        return criterion(model, sample)


def test_mt_finetune_is_the_mt_loss_of_the_batch_transcripts(st_corpus, mt_checkpoint, tmp_path):
    task, model, criterion, batch = build(st_corpus, mt_checkpoint, tmp_path,
                                          "--st-training", "--mt-finetune")
    # the transcripts travel with the speech batch, as token ids of the manifest's src_text
    rows = task.datasets["train"].rows
    spm = task.build_bpe()
    texts = [spm.decode(task.dictionary.string(t[t.ne(task.dictionary.pad())]))
             for t in batch["transcript"]["src_tokens"]]
    assert texts == [rows[int(i)]["src_text"] for i in batch["id"]]

    st_loss, st_size, _ = losses(criterion, model, batch, training=False)
    mt_batch = dict(batch, net_input=dict(batch["transcript"],
                                          prev_output_tokens=batch["net_input"]["prev_output_tokens"]))
    mt_loss, _, _ = losses(criterion, model, mt_batch, training=False)
    loss, size, logs = losses(criterion, model, batch, training=True)
    torch.testing.assert_close(loss, st_loss + mt_loss)
    assert size == st_size == batch["ntokens"]  # 1:1, normalised by the ST batch's tokens
    torch.testing.assert_close(logs["st_loss"], st_loss)
    torch.testing.assert_close(logs["mt_loss"], mt_loss)
    assert logs["ext_mt_sample_size"] == 0
    # validation: ST alone
    val_loss, _, val_logs = losses(criterion, model, batch, training=False)
    assert val_logs["mt_sample_size"] == 0 and torch.equal(val_loss, st_loss)

    # no separate MT batch is drawn for --mt-finetune
    criterion.train()  # as fairseq's trainer does
    _, size, logs = task.train_step(batch, model, criterion, BackwardOnly(), 0)
    assert task._mt_train is None and size == batch["ntokens"]
    assert logs["mt_sample_size"] > 0 and logs["ext_mt_sample_size"] == 0


def test_st_training_alone_is_the_st_loss(st_corpus, mt_checkpoint, tmp_path):
    _, model, criterion, batch = build(st_corpus, mt_checkpoint, tmp_path, "--st-training")
    loss, size, logs = losses(criterion, model, batch, training=True)
    st_loss, _, _ = losses(criterion, model, batch, training=False)
    torch.testing.assert_close(loss, st_loss)
    assert logs["mt_sample_size"] == 0 and size == batch["ntokens"]


def test_ext_mt_training_adds_text_batches_and_says_so(st_corpus, mt_checkpoint, tmp_path):
    task, model, criterion, batch = build(st_corpus, mt_checkpoint, tmp_path,
                                          "--st-training", "--ext-mt-training")

    criterion.train()
    _, size, logs = task.train_step(batch, model, criterion, BackwardOnly(), 0)
    assert logs["ext_mt_sample_size"] > 0 and logs["mt_sample_size"] == 0
    assert size == batch["ntokens"] + logs["ext_mt_sample_size"]


def test_speech_longer_than_the_text_positions(st_corpus, mt_checkpoint, tmp_path):
    """48 s of audio -> 600 subsampled frames, more than DeltaLM's 512 positions:
    speech gets no learned positions (as CRESS), so any length encodes."""
    _, model, _, _ = build(st_corpus, mt_checkpoint, tmp_path, "--st-training",
                           "--pruning-rate", "1.0")
    model.eval()
    audio = torch.randn(1, 48 * 16000) * 0.1
    with torch.no_grad():
        out = model.encoder(audio, torch.tensor([audio.size(1)]))
    frames = out["encoder_out"][0].size(0)
    assert frames > 512 and torch.isfinite(out["encoder_out"][0]).all()


def test_audio_limit_covers_mustc_by_default():
    from fairseq import options

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "data", "--user-dir", USER_DIR, "--task", "speech_and_text_translation",
        "--arch", "hubert_transformer_pruning_layer", "--max-tokens", "1"])
    assert args.max_audio_samples == 900000  # CRESS's limit (56 s); MuST-C segments are shorter


@pytest.mark.parametrize("backend,extra,ok", [
    ("pytorch_ddp", [], False), ("c10d", [], False),
    ("pytorch_ddp", ["--find-unused-parameters"], True), ("legacy_ddp", [], True)])
def test_multi_worker_backend_is_checked_before_training(backend, extra, ok):
    from argparse import Namespace

    from npy_tome_layer.st.task import check_ddp_backend

    args = Namespace(distributed_world_size=2, ddp_backend=backend,
                     find_unused_parameters=bool(extra))
    if ok:
        check_ddp_backend(args)
    else:
        with pytest.raises(ValueError, match="--ddp-backend legacy_ddp"):
            check_ddp_backend(args)
    check_ddp_backend(Namespace(distributed_world_size=1, ddp_backend=backend))


def paper_command(corpus, mt_checkpoint, save_dir):
    """The paper's ST command (CRESS's ST+MT stage with the pruning arch), with
    tiny sizes and a few updates added at the end."""
    return [
        corpus["data"], "--text-data", os.path.join(corpus["data"], "mt"), "--tgt-lang", "de",
        "--user-dir", USER_DIR,
        "--config-yaml", "config.yaml", "--train-subset", "train", "--valid-subset", "dev",
        "--save-dir", str(save_dir), "--num-workers", "0", "--max-tokens", "2000000",
        "--batch-size", "32", "--max-tokens-text", "4096",
        "--task", "speech_and_text_translation", "--criterion", "speech_and_text_translation",
        "--label-smoothing", "0.1", "--arch", "hubert_transformer_pruning_layer",
        "--pruning-rate", "0.9", "--pruning-init-layer", "0",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-4",
        "--lr-scheduler", "inverse_sqrt", "--weight-decay", "0.0001",
        "--no-progress-bar", "--log-format", "json", "--log-interval", "1",
        "--ddp-backend=legacy_ddp", "--warmup-updates", "4000", "--clip-norm", "0.0",
        "--seed", "1", "--update-freq", "2", "--layernorm-embedding", "--patience", "10",
        "--st-training", "--mt-finetune", "--hubert-model-path", corpus["hubert"],
        "--eval-bleu", "--eval-bleu-args", '{"beam": 8}', "--eval-bleu-print-samples",
        "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric",
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0],
        # tiny sizes for CI
        "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-layers", "2",
        "--decoder-layers", "2", "--encoder-attention-heads", "4",
        "--decoder-attention-heads", "4", "--conv-channels", "32", "--cpu",
        "--required-batch-size-multiple", "1", "--max-epoch", "6", "--lr", "3e-3",
        "--warmup-updates", "1",
    ]


def test_the_papers_command_line_selects_by_dev_bleu(st_corpus, mt_checkpoint, tmp_path):
    import json

    save = tmp_path / "st"
    log = run_cli("fairseq-train", paper_command(st_corpus, mt_checkpoint, save))
    valid = [json.loads(line.split("| INFO | dev | ")[1]) for line in log.splitlines()
             if "| INFO | dev | " in line]
    assert len(valid) == 6 and all("dev_bleu" in v for v in valid), log[-3000:]
    train = [json.loads(line.split("| INFO | train | ")[1]) for line in log.splitlines()
             if "| INFO | train | " in line]
    assert {"train_st_loss", "train_mt_loss", "train_loss"} <= set(train[-1])
    assert "example hypothesis: " in log and "example reference: " in log
    assert os.path.isfile(save / "checkpoint_best.pt")
    best = max(float(v["dev_bleu"]) for v in valid)
    assert float(valid[-1]["dev_best_bleu"]) == best

    # dev BLEU is the number fairseq-generate prints for the same checkpoint and split
    out = run_cli("fairseq-generate", [
        st_corpus["data"], "--user-dir", USER_DIR, "--task", "speech_and_text_translation",
        "--gen-subset", "dev", "--path", save / "checkpoint_last.pt", "--beam", "8",
        "--max-tokens", "2000000", "--batch-size", "32", "--scoring", "sacrebleu", "--cpu",
        "--required-batch-size-multiple", "1"])
    generated = re.search(r"Generate dev with beam=8: BLEU = ([0-9.]+)", out).group(1)
    assert float(generated) == pytest.approx(float(valid[-1]["dev_bleu"]), abs=0.005)


def test_tune_lenpen_on_dev(st_corpus, mt_checkpoint, tmp_path):
    from npy_tome_layer.tools.tune_lenpen import main

    save = tmp_path / "st"
    run_cli("fairseq-train", common_train_args(st_corpus, save) + [
        "--st-training", "--mt-finetune", "--arch", "hubert_transformer_pruning_layer",
        "--hubert-model-path", st_corpus["hubert"],
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0], "--conv-channels", "32",
        "--max-tokens", "100000", "--max-update", "1", "--valid-subset", "dev",
        "--no-epoch-checkpoints"])
    table = tmp_path / "lenpen.tsv"
    table.write_text("# target language\tlenpen\nde\t1.2\nfr\t1.8\n")
    argv = ["--checkpoint", str(save / "checkpoint_last.pt"), "--data", st_corpus["data"],
            "--tgt-lang", "de", "--lenpens", "0.5", "2.0", "--beam", "2", "--cpu"]
    main(argv)
    assert table.read_text() == "# target language\tlenpen\nde\t1.2\nfr\t1.8\n"  # not asked
    main(argv + ["--write", str(table)])
    lines = table.read_text().splitlines()
    assert lines[0] == "# target language\tlenpen" and lines[2] == "fr\t1.8"
    assert re.fullmatch(r"de\t(0\.5|2)", lines[1])


def test_dev_bleu_of_batches_is_the_corpus_bleu(st_corpus):
    """Statistics summed over validation batches (and workers) give sacreBLEU's
    corpus score of all sentences, not a mean of batch scores."""
    import sacrebleu
    from fairseq import metrics

    from npy_tome_layer.st.criterion import (
        SpeechAndTextTranslationCriterion)
    from npy_tome_layer.st.task import (
        BLEU_ORDER, SpeechAndTextTranslationTask)

    hyps = ["Wir können die Zukunft ändern.", "Das ist gut", "Ich danke Ihnen sehr.",
            "Eine Geschichte", "Sie hat es gesehen."]
    refs = ["Wir können die Zukunft verändern.", "Das ist sehr gut.", "Ich danke Ihnen.",
            "Lassen Sie mich Ihnen eine Geschichte erzählen.", "Sie hat es gesehen."]
    logs = []
    for lo, hi in ((0, 2), (2, 3), (3, 5)):
        stats = sacrebleu.corpus_bleu(hyps[lo:hi], [refs[lo:hi]])
        log = {"loss": 1.0, "nll_loss": 1.0, "ntokens": 1, "nsentences": 1, "sample_size": 1,
               "_bleu_sys_len": stats.sys_len, "_bleu_ref_len": stats.ref_len}
        for i in range(BLEU_ORDER):
            log[f"_bleu_counts_{i}"] = stats.counts[i]
            log[f"_bleu_totals_{i}"] = torch.tensor(stats.totals[i])  # as summed by workers
        logs.append(log)
    task = SpeechAndTextTranslationTask.__new__(SpeechAndTextTranslationTask)
    task._bleu = ("generator", "bpe", "detok")  # only its presence matters here
    with metrics.aggregate() as agg:
        task.reduce_metrics(logs, SpeechAndTextTranslationCriterion.__new__(
            SpeechAndTextTranslationCriterion))
        bleu = agg.get_smoothed_values()["bleu"]
    expected = sacrebleu.BLEU().corpus_score(hyps, [refs]).score
    assert 0 < expected < 100 and bleu == pytest.approx(round(expected, 2))


def test_empty_hypotheses_log_bleu_zero():
    """A validation pass whose hypotheses are all empty has no n-grams; it
    still logs 'bleu' (0.0) with its statistics."""
    from fairseq import metrics

    from npy_tome_layer.st.criterion import (
        SpeechAndTextTranslationCriterion)
    from npy_tome_layer.st.task import (
        BLEU_ORDER, SpeechAndTextTranslationTask)

    log = {"loss": 1.0, "nll_loss": 1.0, "ntokens": 1, "nsentences": 2, "sample_size": 1,
           "_bleu_sys_len": 0, "_bleu_ref_len": 9}
    for i in range(BLEU_ORDER):
        log[f"_bleu_counts_{i}"] = 0
        log[f"_bleu_totals_{i}"] = 0
    task = SpeechAndTextTranslationTask.__new__(SpeechAndTextTranslationTask)
    task._bleu = ("generator", "bpe", "detok")
    criterion = SpeechAndTextTranslationCriterion.__new__(SpeechAndTextTranslationCriterion)
    with metrics.aggregate() as agg:
        task.reduce_metrics([log], criterion)
        values = agg.get_smoothed_values()
        ref_len = agg["_bleu_ref_len"].sum
    assert values["bleu"] == 0.0 and ref_len == 9
    with metrics.aggregate() as agg:  # a training step carries no statistics: no bleu
        task.reduce_metrics([{k: v for k, v in log.items() if not k.startswith("_bleu")}],
                            criterion)
        assert "bleu" not in agg.get_smoothed_values()


def test_paper_command_survives_a_model_that_says_nothing(st_corpus, mt_checkpoint, tmp_path):
    """Generation limited to length 0 makes every dev hypothesis empty (EOS
    only): --best-checkpoint-metric bleu needs 'bleu' logged all the same."""
    import json

    save = tmp_path / "st"
    argv = paper_command(st_corpus, mt_checkpoint, save)
    argv[argv.index("--eval-bleu-args") + 1] = (
        '{"beam": 2, "max_len_a": 0, "max_len_b": 0, "min_len": 0}')
    argv[argv.index("--max-epoch") + 1] = "2"
    log = run_cli("fairseq-train", argv)
    valid = [json.loads(line.split("| INFO | dev | ")[1]) for line in log.splitlines()
             if "| INFO | dev | " in line]
    assert len(valid) == 2 and all(float(v["dev_bleu"]) == 0.0 for v in valid), log[-3000:]
    assert os.path.isfile(save / "checkpoint_best.pt")
