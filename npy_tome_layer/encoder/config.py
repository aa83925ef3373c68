"""HuBERT configurations: a checkpoint's ``cfg.model`` completed to fairseq's
``HubertConfig``, and configurations by size (the official base and large, and
smaller ones of the same shape for stand-ins, tests and the demo)."""
import dataclasses

from fairseq.dataclass.utils import merge_with_parent
from fairseq.models.hubert.hubert import HubertConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import InputError, shorten
from ..values import finite_number, share, whole_number

# HubertConfig's float fields that are probabilities: dropouts, layerdrop, the
# masking probabilities (fairseq's own flags take any float for them)
PROBABILITY_MARKS = ("dropout", "layerdrop", "_prob")


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


def checked_override(name: str, value):
    """An override of HubertConfig field ``name`` as a plain Python value, or
    InputError: OmegaConf would take True as a dropout of 1.0 and 5.0 as a
    layerdrop, and fail on numpy numbers with a traceback. Booleans for bool
    fields, probabilities in [0, 1], other floats finite, ints whole >= 0 (all
    of HubertConfig's ints are sizes or counts)."""
    kinds = {f.name: f.type for f in dataclasses.fields(HubertConfig)}
    if name not in kinds or name == "_name":
        raise InputError(f"unknown HuBERT config field {name!r}")
    kind = kinds[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be True or False, got {value!r}")
        return value
    if kind is float:
        if any(mark in name for mark in PROBABILITY_MARKS):
            return share(name, value)
        return finite_number(name, value)
    if kind is int:
        return whole_number(name, value, 0)
    return value  # strings and choices: OmegaConf checks them


def with_overrides(cfg: HubertConfig, overrides: dict) -> HubertConfig:
    """``cfg`` with fields replaced (dropout, encoder_layerdrop, ...), as
    fine-tuning does; each value checked by ``checked_override``."""
    for name, value in overrides.items():
        value = checked_override(name, value)
        try:
            cfg[name] = value
        except OmegaConfBaseException as e:  # a choice that is not one (extractor_mode)
            raise InputError(f"{name}: {shorten(str(e).splitlines()[0])}") from None
    return cfg


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
