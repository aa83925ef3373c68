import os
import sys

import pytest

import npy_tome_layer  # noqa: F401  (registration + checkpoint-loading fix)
from npy_tome_layer.demo.standins import write_hubert_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def hubert_tiny(tmp_path_factory):
    """Base-like: post-LN, GroupNorm front end, required_seq_len_multiple=2."""
    path = str(tmp_path_factory.mktemp("hubert") / "hubert_tiny.pt")
    write_hubert_checkpoint(path, "tiny", num_clusters=20)
    return path


@pytest.fixture(scope="session")
def hubert_tiny_preln(tmp_path_factory):
    """Large-like: pre-LN (layer_norm_first), layer_norm front end."""
    path = str(tmp_path_factory.mktemp("hubert") / "hubert_tiny_preln.pt")
    write_hubert_checkpoint(path, "tiny", num_clusters=20, layer_norm_first=True,
                            extractor_mode="layer_norm", encoder_layers=4)
    return path


TINY_DELTALM = ["--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
                "--encoder-layers", "2", "--decoder-layers", "2",
                "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]


def run_cli(tool, args, cwd=None):
    """Run a fairseq console script from this venv; fail with its output tail."""
    import subprocess

    proc = subprocess.run([os.path.join(VENV_BIN, tool)] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def st_corpus(tmp_path_factory):
    """Real speech in MuST-C layout, prepared; tiny official-format checkpoints."""
    from npy_tome_layer.demo.corpus import build_demo_corpus
    from npy_tome_layer.demo.phrases import all_sentences
    from npy_tome_layer.tools.prepare_mustc import prepare
    from npy_tome_layer.demo.standins import (
        write_deltalm_checkpoint, write_deltalm_dictionary, write_sentencepiece)

    root = tmp_path_factory.mktemp("st")
    pre = root / "pretrained"
    pre.mkdir()
    spm_model = write_sentencepiece(all_sentences(), str(pre / "spm"), 1000)
    dict_size = write_deltalm_dictionary(spm_model, str(pre / "dict.txt"))
    hubert = str(pre / "hubert.pt")
    write_hubert_checkpoint(hubert, "tiny", num_clusters=20)
    deltalm = str(pre / "deltalm.pt")
    # more rows than the dictionary, as the release has (250104 vs 250001)
    write_deltalm_checkpoint(deltalm, vocab_rows=dict_size + 3, embed=32, ffn=64,
                             encoder_layers=2, decoder_layers=2)
    build_demo_corpus(str(root / "mustc"), "de",
                      {"train": (3, 4), "dev": (1, 4), "tst-COMMON": (1, 4)})
    data = root / "data"
    prepare(str(root / "mustc"), "de", str(data), spm_model, str(pre / "dict.txt"),
            log=lambda *a: None)
    return {"root": root, "data": str(data), "hubert": hubert, "deltalm": deltalm,
            "dict": str(pre / "dict.txt"), "spm": spm_model, "dict_size": dict_size}


def common_train_args(corpus, save_dir):
    return [corpus["data"], "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--tgt-lang", "de",
            "--text-data", os.path.join(corpus["data"], "mt"),
            "--criterion", "speech_and_text_translation", "--label-smoothing", "0.1",
            "--optimizer", "adam", "--lr", "1e-3", "--cpu", "--no-progress-bar",
            "--log-interval", "1", "--num-workers", "0", "--seed", "1",
            "--required-batch-size-multiple", "1", "--save-dir", str(save_dir)] + TINY_DELTALM


@pytest.fixture(scope="session")
def mt_checkpoint(st_corpus):
    """fairseq-train MT fine-tuning from the released-format DeltaLM file."""
    save = st_corpus["root"] / "ckpt_mt"
    log = run_cli("fairseq-train", common_train_args(st_corpus, save) + [
        "--ext-mt-training", "--arch", "deltalm_base",
        "--pretrained-deltalm-checkpoint", st_corpus["deltalm"],
        "--max-tokens", "100000", "--max-tokens-text", "500", "--max-update", "3",
        "--valid-subset", "dev"])
    return str(save / "checkpoint_last.pt"), log


@pytest.fixture(scope="session")
def fixed_checkpoint(st_corpus, mt_checkpoint, tmp_path_factory):
    """An ST checkpoint trained 2 updates at keep rate 0.9 from layer 0."""
    save = tmp_path_factory.mktemp("fixed_ckpt")
    run_cli("fairseq-train", common_train_args(st_corpus, save) + [
        "--st-training", "--mt-finetune", "--arch", "hubert_transformer_pruning_layer",
        "--pruning-rate", "0.9", "--hubert-model-path", st_corpus["hubert"],
        "--load-pretrained-mt-encoder-decoder-from", mt_checkpoint[0], "--conv-channels", "32",
        "--max-tokens", "100000", "--max-update", "2", "--valid-subset", "dev",
        "--no-epoch-checkpoints"])
    return str(save / "checkpoint_last.pt")
