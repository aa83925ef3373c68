"""Stand-ins for the downloads: pretrained files in the official formats,
random weights, any size. Tests and the demo use them; with the real
``hubert_base_ls960.pt`` / ``deltalm-base.pt`` the same loaders run unchanged.
"""
from typing import Optional

import torch
from fairseq.data.dictionary import Dictionary
from fairseq.models.hubert.hubert import HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

from ..errors import InputError
from ..encoder.config import HUBERT_SIZES, hubert_config, hubert_model_config
from ..encoder.pruned_hubert import REDUCTION_PREFIX
from ..io.atomic import save_atomically, write_text_atomically
from ..io.audio import SAMPLE_RATE
from ..io.checkpoints import load_checkpoint
from ..st.model import PRETRAINING_HEADS, st_hubert_weights

# Official HuBERT shapes (hubert_base_ls960.pt / hubert_large_ll60k.pt).
def write_hubert_checkpoint(path: str, size: str = "base", num_clusters: int = 500,
                            seed: Optional[int] = 0, **overrides) -> dict:
    """Write an official-format HuBERT file (``cfg``/``model``/``task_state``)
    with random weights; returns its ``cfg.model``."""
    if seed is not None:
        torch.manual_seed(seed)
    model_cfg = hubert_model_config(size, **overrides)
    normalize = model_cfg["extractor_mode"] == "layer_norm"  # as HuBERT large
    task_cfg = OmegaConf.to_container(OmegaConf.structured(HubertPretrainingConfig(
        data="/checkpoint/does-not-exist", label_dir="/checkpoint/labels-do-not-exist",
        labels=["km"], label_rate=50.0, sample_rate=SAMPLE_RATE, normalize=normalize,
    )), resolve=True, enum_to_str=True)
    task_cfg["_name"] = "hubert_pretraining"
    dictionary = Dictionary()
    for i in range(num_clusters):
        dictionary.add_symbol(str(i))
    model = HubertModel(hubert_config(model_cfg), OmegaConf.create(task_cfg), [dictionary])
    state = {
        "args": None,
        "cfg": {"_name": None, "common": {"fp16": True, "seed": 1337},
                "model": model_cfg, "task": task_cfg,
                "criterion": {"_name": "hubert", "pred_masked_weight": 1.0}},
        "model": model.state_dict(),
        "task_state": {"dictionaries": [dictionary]},
        "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": None}, "num_updates": 400000}],
        "extra_state": {},
        "last_optimizer_state": None,
    }
    save_atomically(state, path)
    return model_cfg


def export_hubert_from_st(st_checkpoint: str, hubert_file: str, out: str) -> None:
    """Write the HuBERT of a trained ST checkpoint as an official-format file.

    The demo's stand-in for HuBERT pre-training: the official file carries
    speech knowledge that random weights lack, and pruning by attention only
    means something when attention does. ``hubert_file`` (the file the ST run
    started from) gives cfg, task state and the pre-training heads the ST
    model dropped."""
    # the file as written (fairseq's loader would turn cfg into a DictConfig,
    # which torch's weights-only loader then refuses to read back)
    official = torch.load(hubert_file, map_location="cpu", weights_only=True)
    trained = {k: v for k, v in st_hubert_weights(load_checkpoint(st_checkpoint)["model"]).items()
               if not k.startswith(REDUCTION_PREFIX)}
    missing = [k for k in official["model"] if k not in trained
               and not k.startswith(PRETRAINING_HEADS)]
    if missing or not trained:
        raise InputError(f"{st_checkpoint}: its HuBERT does not match {hubert_file} "
                         f"(missing {missing[:5]})")
    official["model"] = {k: trained.get(k, v) for k, v in official["model"].items()}
    save_atomically(official, out)


# --- DeltaLM: sentencepiece model, dict.txt, released weights ----------------

def write_sentencepiece(texts, model_prefix: str, vocab_size: int = 300) -> str:
    """Train a small unigram sentencepiece model (DeltaLM ships ``spm.model``)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
        character_coverage=1.0, model_type="unigram", hard_vocab_limit=False,
        minloglevel=2,
    )
    path = model_prefix + ".model"
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return path


def write_deltalm_dictionary(spm_model: str, path: str) -> int:
    """``dict.txt`` in fairseq format, one piece per line (specials excluded:
    fairseq's Dictionary adds <s> <pad> </s> <unk> itself). Returns len(Dictionary)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spm_model)
    pieces = (sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i)))
    write_text_atomically(path, "".join(f"{piece} 1\n" for piece in pieces))
    return len(Dictionary.load(path))


def deltalm_released_shapes(vocab_rows: int, embed: int, ffn: int, encoder_layers: int,
                            decoder_layers: int, positions: int = 514) -> dict:
    """Key -> shape of a released DeltaLM file (``weights`` of deltalm-base.pt)."""
    shapes = {}
    for side in ("src_embedding", "tgt_embedding"):
        shapes[f"{side}.embed_tokens.weight"] = (vocab_rows, embed)
        shapes[f"{side}.embed_positions.weight"] = (positions, embed)
        shapes[f"{side}.emb_layer_norm.weight"] = (embed,)
        shapes[f"{side}.emb_layer_norm.bias"] = (embed,)

    def linear(prefix, n_in, n_out):
        shapes[f"{prefix}.weight"] = (n_out, n_in)
        shapes[f"{prefix}.bias"] = (n_out,)

    def norm(prefix):
        shapes[f"{prefix}.weight"] = (embed,)
        shapes[f"{prefix}.bias"] = (embed,)

    for i in range(encoder_layers):
        p = f"encoder.layers.{i}"
        for proj in "qkv":
            linear(f"{p}.self_attn.{proj}_proj", embed, embed)
        linear(f"{p}.self_attn.out_proj", embed, embed)
        linear(f"{p}.ffn.fc1", embed, ffn)
        linear(f"{p}.ffn.fc2", ffn, embed)
        norm(f"{p}.self_attn_layer_norm")
        norm(f"{p}.final_layer_norm")
    for i in range(decoder_layers):
        p = f"decoder.layers.{i}"
        for attn in ("self_attn", "encoder_attn"):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear(f"{p}.{attn}.{proj}", embed, embed)
        for ffn_name in ("ffn_1", "ffn_2"):
            linear(f"{p}.{ffn_name}.fc1", embed, ffn)
            linear(f"{p}.{ffn_name}.fc2", ffn, embed)
        for n in ("self_attn_layer_norm", "ffn_layer_norm", "encoder_attn_layer_norm",
                  "final_layer_norm"):
            norm(f"{p}.{n}")
    return shapes


def write_deltalm_checkpoint(path: str, vocab_rows: int = 250104, embed: int = 768,
                             ffn: int = 3072, encoder_layers: int = 12,
                             decoder_layers: int = 6, positions: int = 514,
                             seed: Optional[int] = 0) -> dict:
    """Released-format DeltaLM file with random weights; returns the weights."""
    g = torch.Generator().manual_seed(seed or 0)

    def init(key, shape):
        # unit layer norms and zero biases, as fairseq initialises them: random
        # norm weights (~0.02) would shrink every post-LN layer's output to
        # almost nothing, and the model would learn to ignore its encoder
        if "layer_norm" in key:
            return torch.ones(shape) if key.endswith(".weight") else torch.zeros(shape)
        if key.endswith(".bias"):
            return torch.zeros(shape)
        return torch.randn(*shape, generator=g) * 0.02

    weights = {k: init(k, shape)
               for k, shape in deltalm_released_shapes(vocab_rows, embed, ffn, encoder_layers,
                                                       decoder_layers, positions).items()}
    # the release shares embeddings between both sides
    for part in ("embed_tokens", "embed_positions"):
        weights[f"tgt_embedding.{part}.weight"] = weights[f"src_embedding.{part}.weight"]
    save_atomically({"weights": weights}, path)
    return weights


def main():
    """Write every stand-in the demo needs into --out: spm.model, dict.txt,
    hubert.pt (official format, small), deltalm.pt (released format, small).
    With --hubert-from-st CKPT --hubert FILE: write the HuBERT of a trained ST
    checkpoint (started from FILE) in the official format to --out instead."""
    import argparse
    import os

    from .phrases import all_sentences

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hubert-size", default="tiny", choices=sorted(HUBERT_SIZES))
    parser.add_argument("--hubert-from-st", metavar="CKPT")
    parser.add_argument("--hubert", metavar="FILE", help="the HuBERT file CKPT started from")
    args = parser.parse_args()
    if args.hubert_from_st:
        if not args.hubert:
            parser.error("--hubert-from-st needs --hubert FILE")
        export_hubert_from_st(args.hubert_from_st, args.hubert, args.out)
        print(args.out)
        return
    os.makedirs(args.out, exist_ok=True)
    spm_model = write_sentencepiece(all_sentences(), os.path.join(args.out, "spm"), 1000)
    size = write_deltalm_dictionary(spm_model, os.path.join(args.out, "dict.txt"))
    write_hubert_checkpoint(os.path.join(args.out, "hubert.pt"), args.hubert_size)
    write_deltalm_checkpoint(os.path.join(args.out, "deltalm.pt"), vocab_rows=size + 3,
                             embed=64, ffn=128, encoder_layers=2, decoder_layers=2)
    print(args.out)


if __name__ == "__main__":
    main()
