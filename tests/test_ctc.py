"""The ctc reduction: a CTC head's labels decide which frames are one token
(runs of one label averaged, plainly or weighted by the label's probability;
blank runs kept or dropped; padding never merged), its loss on the
transcript's characters (finite under padding and half-precision autocast,
unalignable rows counted), the CTC vocabulary, and training and decoding
through plain fairseq-train / fairseq-generate."""
import os

import pytest
import torch

from npy_tome_layer import build_pruned_hubert
from npy_tome_layer.encoder.config import hubert_model_config
from npy_tome_layer.errors import InputError
from npy_tome_layer.reduction import Tokens, build_reduction
from npy_tome_layer.st.ctc_vocabulary import SPACE, CTCVocabulary, vocabulary_text

from .conftest import REPO, VENV_BIN, common_train_args, run_cli
from .test_pruned_hubert import waveforms

V = 4  # blank, three labels


def labelled_tokens(labels, lengths, confidence=None):
    """Tokens whose states are one-hot rows of ``labels`` (B x T; scaled by
    ``confidence`` where given), and a head that reads the label back: its
    argmax is the label, its probability grows with the confidence."""
    labels = torch.tensor(labels)
    x = torch.nn.functional.one_hot(labels, V).float()
    if confidence is not None:
        x = x * torch.tensor(confidence).unsqueeze(-1)
    mask = torch.arange(labels.size(1)).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    positions = torch.arange(labels.size(1)).expand(labels.size(0), -1)
    return Tokens(x, mask, positions, outputs={})


def ctc_reduction(**settings):
    reduction = build_reduction("ctc", V, ctc_vocab_size=V, **settings)
    with torch.no_grad():
        reduction.head.weight.copy_(torch.eye(V) * 10.0)
        reduction.head.bias.zero_()
    return reduction


LABELS = [[1, 1, 0, 0, 2, 2, 2, 1],
          [3, 3, 0, 3, 3, 3, 3, 3]]  # row 1: 5 valid frames, its padding labelled 3 too
LENGTHS = [8, 5]


def test_runs_of_one_label_become_one_token_and_padding_never_joins():
    out = ctc_reduction().reduce(labelled_tokens(LABELS, LENGTHS), None, 1.0, 3)
    assert out.spans.tolist()[0] == [[0, 1], [2, 3], [4, 6], [7, 7]]
    assert out.spans.tolist()[1][:3] == [[0, 1], [2, 2], [3, 4]]
    assert out.padding_mask.tolist() == [[False] * 4, [False] * 3 + [True]]
    assert out.sizes[0].tolist() == [2.0, 2.0, 3.0, 1.0]
    assert out.positions[0].tolist() == [0, 2, 4, 7]  # each run named by its first frame
    # the plain average: a run of one-hot rows of one label is that row
    assert torch.equal(out.x[0], torch.nn.functional.one_hot(torch.tensor([1, 0, 2, 1]), V).float())


def test_the_weighted_average_weighs_each_frame_by_its_labels_probability():
    confidence = [[1.0, 0.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0] * 8]
    tokens = labelled_tokens(LABELS, LENGTHS, confidence)
    reduction = ctc_reduction(ctc_merge="weighted")
    out = reduction.reduce(tokens, None, 1.0, 3)
    probs = (tokens.x[0, :2] @ reduction.head.weight.T).softmax(-1)[:, 1]
    expected = (tokens.x[0, :2] * probs.unsqueeze(-1)).sum(0) / probs.sum()
    torch.testing.assert_close(out.x[0, 0], expected)
    plain = ctc_reduction().reduce(labelled_tokens(LABELS, LENGTHS, confidence), None, 1.0, 3)
    torch.testing.assert_close(plain.x[0, 0], tokens.x[0, :2].mean(0))
    assert not torch.allclose(out.x[0, 0], plain.x[0, 0])


def test_dropped_blank_runs_leave_the_rest_in_order_and_never_empty_a_row():
    labels = [[1, 1, 0, 0, 2, 2, 2, 1], [0, 0, 0, 0, 0, 0, 0, 0]]
    out = ctc_reduction(ctc_blanks="drop").reduce(labelled_tokens(labels, [8, 5]), None, 1.0, 3)
    assert out.spans.tolist()[0] == [[0, 1], [4, 6], [7, 7]]
    assert out.padding_mask.tolist() == [[False] * 3, [False] + [True] * 2]  # the blank run stays
    assert out.spans.tolist()[1][0] == [0, 4]


def test_none_keeps_every_frame_and_still_gives_the_loss_its_logits():
    tokens = labelled_tokens(LABELS, LENGTHS)
    out = ctc_reduction(ctc_merge="none").reduce(tokens, None, 1.0, 3)
    assert out is tokens and tokens.outputs["ctc_logits"].shape == (2, 8, V)
    assert tokens.outputs["ctc_lengths"].tolist() == LENGTHS


def test_a_row_alone_equals_itself_in_a_padded_batch():
    torch.manual_seed(0)
    model = build_pruned_hubert(hubert_model_config("tiny"), token_reduction="ctc",
                                ctc_vocab_size=6, pruning_init_layer=1).eval()
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        x, x_mask = model.extract_features(source, padding_mask=mask)
        alone, _ = model.extract_features(source[1:, :9000])
    assert x.size(1) < 51  # runs were merged
    n = alone.size(1)
    assert int((~x_mask[1]).sum()) == n
    torch.testing.assert_close(x[1, :n], alone[0], atol=1e-5, rtol=1e-5)


def ctc_loss_of(reduction, tokens, targets, lengths):
    reduction.reduce(tokens, None, 1.0, 3)
    sample = {"ctc_target": torch.tensor(targets), "ctc_target_lengths": torch.tensor(lengths)}
    return reduction.loss(tokens.outputs, sample)["ctc"], reduction.statistics(tokens.outputs,
                                                                                sample)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_loss_is_finite_under_padding_and_autocast_and_unalignable_rows_count(dtype):
    reduction = ctc_reduction(ctc_weight=0.5)
    tokens = labelled_tokens(LABELS, LENGTHS)
    # row 0 aligns; row 1 has 5 frames for 4 labels with two repeats: it cannot
    targets, lengths = [[1, 2, 1, 0], [3, 3, 3, 3]], [3, 4]
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        loss, counts = ctc_loss_of(reduction, tokens, targets, lengths)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    reference, _ = ctc_loss_of(ctc_reduction(ctc_weight=0.5), labelled_tokens(LABELS, LENGTHS),
                               targets, lengths)
    torch.testing.assert_close(loss, reference)
    assert counts == {"ctc_unaligned_rows": 1}
    # the unaligned row adds nothing (zero_infinity); row 0 alone gives the same loss
    alone, _ = ctc_loss_of(ctc_reduction(ctc_weight=0.5), labelled_tokens(LABELS[:1], [8]),
                           targets[:1], lengths[:1])
    torch.testing.assert_close(loss, alone)


def test_the_loss_without_transcript_labels_says_where_they_come_from():
    reduction = ctc_reduction()
    tokens = labelled_tokens(LABELS, LENGTHS)
    reduction.reduce(tokens, None, 1.0, 3)
    with pytest.raises(InputError, match="ctc_vocab.txt"):
        reduction.loss(tokens.outputs, {})


def test_settings_are_checked_when_built(hubert_tiny):
    from npy_tome_layer import load_pruned_hubert

    with pytest.raises(InputError, match="token_reduction ctc needs ctc_vocab_size"):
        load_pruned_hubert(hubert_tiny, token_reduction="ctc")
    with pytest.raises(InputError, match=r"ctc_merge must be one of \('average', 'weighted', "
                                         r"'none'\), got 'mean'"):
        load_pruned_hubert(hubert_tiny, token_reduction="ctc", ctc_vocab_size=6, ctc_merge="mean")
    with pytest.raises(InputError, match=r"must be < 3 for a 3-layer encoder, got 3"):
        load_pruned_hubert(hubert_tiny, token_reduction="ctc", ctc_vocab_size=6,
                           pruning_init_layer=3)
    with pytest.raises(InputError, match="the keep rate does not apply"):
        load_pruned_hubert(hubert_tiny, token_reduction="ctc", ctc_vocab_size=6,
                           pruning_rate=0.8)
    with pytest.raises(InputError, match="ctc_weight 0.5 is read by token_reduction ctc"):
        load_pruned_hubert(hubert_tiny, pruning_rate=0.8, ctc_weight=0.5)


def test_the_vocabulary_is_the_train_transcripts_characters(tmp_path):
    text = vocabulary_text(["Hello  World", "it's"])
    assert text.splitlines() == sorted(set("helowrdit's" + SPACE))
    path = tmp_path / "ctc_vocab.txt"
    path.write_text(text, encoding="utf-8")
    vocabulary = CTCVocabulary.from_file(str(path))
    assert vocabulary.size == len(text.splitlines()) + 2
    labels = vocabulary.encode("Hi  wOrld!")
    assert labels[1].item() == vocabulary.index["i"] and labels[2].item() == vocabulary.index[SPACE]
    assert labels[-1].item() == 1  # "!" is not in the file: the unknown label
    for content, words in (("a\ncd\n", ":2: a CTC vocabulary line holds one character"),
                           ("a\na\n", "a character is listed twice"), ("", "is empty")):
        path.write_text(content, encoding="utf-8")
        with pytest.raises(InputError, match=words):
            CTCVocabulary.from_file(str(path))
    with pytest.raises(InputError, match="not found"):
        CTCVocabulary.from_file(str(tmp_path / "none.txt"))


def test_ctc_and_its_control_train_and_decode_with_fairseq(st_corpus, mt_checkpoint,
                                                         fixed_checkpoint, tmp_path):
    """fairseq-train with --token-reduction ctc (the head's size from the data
    folder's ctc_vocab.txt, which prepare_mustc wrote) logs the CTC loss, from
    the stand-ins or from a trained run without a head (the recipe's start:
    the head starts fresh; with one subsampler layer where the run had two,
    the subsampler too: fairseq refused the checkpoint's shapes); the checkpoint
    decodes with fairseq-generate and nothing but audio."""
    data = st_corpus["data"]
    assert os.path.isfile(os.path.join(data, "ctc_vocab.txt"))
    starts = {"average": ["--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0]],
              "none": ["--finetune-from-model", fixed_checkpoint],
              "weighted": ["--finetune-from-model", fixed_checkpoint,
                           "--conv-kernel-sizes", "5"]}
    for merge, start in starts.items():
        save = tmp_path / merge
        log = run_cli("fairseq-train", common_train_args(st_corpus, save) + [
            "--st-training", "--arch", "hubert_transformer_pruning_layer",
            "--token-reduction", "ctc", "--pruning-init-layer", "1", "--ctc-merge", merge,
            "--ctc-weight", "0.5", "--hubert-model-path", st_corpus["hubert"],
            "--conv-channels", "32", "--max-tokens", "100000", "--max-update", "2",
            "--valid-subset", "dev", "--no-epoch-checkpoints"] + start)
        assert "reduction_ctc_loss" in log and "reduction_ctc_unaligned_rows" in log
        if merge != "average":
            assert "token_reduction ctc starts its own weights fresh" in log
        assert ("the subsampler differs from the checkpoint's (4 tensors there, 2 here): it "
                "starts fresh" in log) == (merge == "weighted")
        out = run_cli("fairseq-generate", [
            data, "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--tgt-lang", "de",
            "--path", str(save / "checkpoint_last.pt"), "--gen-subset", "dev", "--beam", "1",
            "--max-tokens", "100000", "--cpu", "--num-workers", "0", "--max-len-b", "5"])
        assert "BLEU" in out


def ctc_task(data, **args):
    from argparse import Namespace

    from npy_tome_layer.st.task import SpeechAndTextTranslationTask

    return SpeechAndTextTranslationTask.setup_task(Namespace(**{
        "data": data, "config_yaml": "config.yaml", "ddp_backend": "legacy_ddp",
        "distributed_world_size": 1, "st_training": True, "mt_finetune": False,
        "ext_mt_training": False, "replace_audio": None, "ctc_vocab": None,
        "token_reduction": "ctc", **args}))


def test_a_row_without_a_transcript_is_named_when_ctc_trains_on_it(st_corpus):
    from npy_tome_layer.st.dataset import read_manifest

    data = st_corpus["data"]
    with open(os.path.join(data, "dev.tsv"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    fields = lines[2].split("\t")
    fields[header.index("src_text")] = ""
    with open(os.path.join(data, "dev_untranscribed.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:2] + ["\t".join(fields)] + lines[3:]) + "\n")
    row = read_manifest(os.path.join(data, "dev_untranscribed.tsv"))[1]
    with pytest.raises(InputError, match=rf"dev_untranscribed.tsv:{row['_line']} \(id {row['id']}\)"
                                         r": no transcript \(src_text\)"):
        ctc_task(data).load_dataset("dev_untranscribed")
    # a model that does not train on transcripts reads the same rows
    ctc_task(data, token_reduction="prune").load_dataset("dev_untranscribed")


def test_a_vocabulary_of_another_size_than_the_checkpoints_head_is_named(st_corpus):
    from argparse import Namespace

    from npy_tome_layer.st.model import take_reduction_inputs

    task = ctc_task(st_corpus["data"])
    size = task.ctc_vocabulary.size
    args = Namespace(token_reduction="ctc", ctc_vocab_size=None)
    take_reduction_inputs(args, task)
    assert args.ctc_vocab_size == size
    with pytest.raises(InputError, match=rf"ctc_vocab.txt: gives ctc_vocab_size {size}, but the "
                                         rf"model was built with {size + 3}"):
        take_reduction_inputs(Namespace(token_reduction="ctc", ctc_vocab_size=size + 3), task)


def test_the_visualiser_labels_each_token_with_its_run_label(hubert_tiny, tmp_path):
    """Which frames became one token, with the label the head gave them; a
    --ctc-vocab for a model without a CTC head is one line."""
    import subprocess

    import soundfile as sf

    from npy_tome_layer import load_pruned_hubert
    from npy_tome_layer.tools.visualize_pruning import (ctc_run_labels, draw, encode,
                                                        run_shading, survival)

    path = tmp_path / "ctc_vocab.txt"
    path.write_text(vocabulary_text(["the house"]), encoding="utf-8")
    vocabulary = CTCVocabulary.from_file(str(path))
    assert [vocabulary.label(i) for i in range(vocabulary.size)] == ["_", "?"] + sorted(
        set("thehouse" + SPACE))
    model = load_pruned_hubert(hubert_tiny, token_reduction="ctc", pruning_init_layer=1,
                               ctc_vocab_size=vocabulary.size)
    audio = (0.1 * torch.randn(24000, generator=torch.Generator().manual_seed(0))).numpy()
    encoded = encode(model, audio)
    labels = ctc_run_labels(encoded, vocabulary)
    # one label per token the CTC reduction made, at the centre of its run, in time order
    assert len(labels) == encoded.spans[0].shape[1] and 0 < len(labels) <= encoded.frames
    assert [at for at, _ in labels] == sorted(at for at, _ in labels)
    assert {text for _, text in labels} <= set(vocabulary.label(i) for i in range(vocabulary.size))
    out = tmp_path / "ctc.png"
    draw(audio, survival(model, audio, encoded), 1, "ctc", str(out),
         run_shading(encoded.spans, encoded.frames), labels=labels)
    assert out.read_bytes()[:4] == b"\x89PNG"
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 16000)
    proc = subprocess.run(
        [os.path.join(VENV_BIN, "python"), "-m",
         "npy_tome_layer.tools.visualize_pruning", "--wav", str(wav), "--checkpoint", hubert_tiny,
         "--out", str(tmp_path / "p.png"), "--ctc-vocab", str(path)],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        f"--ctc-vocab {path}: the model's reduction, prune, has no CTC head")
    assert not (tmp_path / "p.png").exists()
