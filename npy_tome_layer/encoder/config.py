"""HuBERT configurations: a checkpoint's ``cfg.model`` completed to fairseq's
``HubertConfig``, and configurations by size (the official base and large, and
smaller ones of the same shape for stand-ins, tests and the demo)."""
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models.hubert.hubert import HubertConfig
from omegaconf import DictConfig, OmegaConf, open_dict

def hubert_config(model_cfg) -> HubertConfig:
    """Checkpoint ``cfg.model`` -> full HubertConfig (older files miss newer fields)."""
    if not isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.create(
            vars(model_cfg) if not isinstance(model_cfg, dict) else model_cfg
        )
    model_cfg = model_cfg.copy()
    with open_dict(model_cfg):
        model_cfg.pop("_name", None)
    return merge_with_parent(HubertConfig(), model_cfg, remove_missing=True)


HUBERT_SIZES = {
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                 encoder_attention_heads=12, final_dim=256, extractor_mode="default",
                 layer_norm_first=False),
    "large": dict(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096,
                  encoder_attention_heads=16, final_dim=768, extractor_mode="layer_norm",
                  layer_norm_first=True),
    # the demo's stand-in: base depth and front end, narrower layers, so the
    # pruning saving shows at CPU training cost
    "small": dict(encoder_layers=12, encoder_embed_dim=384, encoder_ffn_embed_dim=1536,
                  encoder_attention_heads=6, final_dim=128, extractor_mode="default",
                  layer_norm_first=False),
    # the built-in demo's: base depth (12 layers, so 0.9^12 is the real saving) and
    # front-end strides, narrow enough to train from scratch in minutes on a CPU
    "demo": dict(encoder_layers=12, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                 encoder_attention_heads=4, final_dim=32, extractor_mode="default",
                 layer_norm_first=False, conv_pos=32, conv_pos_groups=4,
                 conv_feature_layers="[(48,10,5)] + [(48,3,2)] * 4 + [(48,2,2)] * 2"),
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
