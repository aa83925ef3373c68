"""Stand-ins for the downloads: pretrained files in the official formats,
random weights, any size. Tests and the demo use them; with the real
``hubert_base_ls960.pt`` / ``deltalm-base.pt`` the same loaders run unchanged.
"""
from typing import Optional

import torch
from fairseq.data.dictionary import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

from .checkpoint_loading import save_atomically

# Official HuBERT shapes (hubert_base_ls960.pt / hubert_large_ll60k.pt).
HUBERT_SIZES = {
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                 encoder_attention_heads=12, final_dim=256, extractor_mode="default",
                 layer_norm_first=False),
    "large": dict(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096,
                  encoder_attention_heads=16, final_dim=768, extractor_mode="layer_norm",
                  layer_norm_first=True),
    # small enough for unit tests; same front-end strides (320 samples/frame)
    "tiny": dict(encoder_layers=3, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                 encoder_attention_heads=4, final_dim=16, extractor_mode="default",
                 layer_norm_first=False, conv_pos=16, conv_pos_groups=4,
                 conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"),
}


def hubert_model_config(size: str = "base", **overrides) -> dict:
    """``cfg.model`` of an official HuBERT checkpoint, as the plain dict fairseq saves."""
    fields = dict(HUBERT_SIZES[size], label_rate=50.0)
    fields.update(overrides)
    cfg = OmegaConf.to_container(OmegaConf.structured(HubertConfig(**fields)), resolve=True, enum_to_str=True)
    cfg["_name"] = "hubert"
    return cfg


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
        labels=["km"], label_rate=50.0, sample_rate=16000, normalize=normalize,
    )), resolve=True, enum_to_str=True)
    task_cfg["_name"] = "hubert_pretraining"
    dictionary = Dictionary()
    for i in range(num_clusters):
        dictionary.add_symbol(str(i))
    build_cfg = OmegaConf.merge(OmegaConf.structured(HubertConfig), {k: v for k, v in model_cfg.items() if k != "_name"})
    model = HubertModel(build_cfg, OmegaConf.create(task_cfg), [dictionary])
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
