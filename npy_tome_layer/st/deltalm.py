"""DeltaLM (microsoft/unilm ``deltalm``) on fairseq's transformer classes.

The encoder is fairseq's; the decoder layer is DeltaLM's interleaved one:
self-attention -> FFN (fc3/fc4, ffn_layer_norm) -> cross-attention -> FFN
(fc1/fc2, final_layer_norm). Parameter names are fairseq's; one function,
``released_key_to_fairseq``, maps the released checkpoint's names.
"""
import logging
from typing import Dict, Optional

import torch
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import (
    TransformerConfig,
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
    base_architecture,
)
from fairseq.modules import LayerNorm
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase

from ..errors import InputError
from ..io.checkpoints import load_checkpoint

logger = logging.getLogger(__name__)


class DeltaLMDecoderLayer(TransformerDecoderLayerBase):
    """Decoder layer with an extra FFN between self- and cross-attention."""

    def __init__(self, cfg, no_encoder_attn=False, add_bias_kv=False, add_zero_attn=False):
        super().__init__(cfg, no_encoder_attn, add_bias_kv, add_zero_attn)
        ffn_dim = cfg.decoder.ffn_embed_dim
        self.fc3 = self.build_fc1(self.embed_dim, ffn_dim, self.quant_noise,
                                  self.quant_noise_block_size)
        self.fc4 = self.build_fc2(ffn_dim, self.embed_dim, self.quant_noise,
                                  self.quant_noise_block_size)
        self.ffn_layer_norm = LayerNorm(self.embed_dim, export=cfg.export)

    def _sublayer(self, x, layer_norm, fn):
        residual = x
        if self.normalize_before:
            x = layer_norm(x)
        x = self.residual_connection(self.dropout_module(fn(x)), residual)
        if not self.normalize_before:
            x = layer_norm(x)
        return x

    def _ffn(self, x, fc_in, fc_out):
        return fc_out(self.activation_dropout_module(self.activation_fn(fc_in(x))))

    def forward(self, x, encoder_out=None, encoder_padding_mask=None, incremental_state=None,
                prev_self_attn_state=None, prev_attn_state=None, self_attn_mask=None,
                self_attn_padding_mask=None, need_attn=False, need_head_weights=False):
        if prev_self_attn_state is not None or prev_attn_state is not None:
            raise NotImplementedError("DeltaLM layers take state via incremental_state only")
        need_attn = need_attn or need_head_weights
        x = self._sublayer(x, self.self_attn_layer_norm, lambda h: self.self_attn(
            query=h, key=h, value=h, key_padding_mask=self_attn_padding_mask,
            incremental_state=incremental_state, need_weights=False, attn_mask=self_attn_mask,
        )[0])
        x = self._sublayer(x, self.ffn_layer_norm, lambda h: self._ffn(h, self.fc3, self.fc4))
        attn = None
        if self.encoder_attn is not None and encoder_out is not None:
            def cross_attention(h):
                nonlocal attn
                h, attn = self.encoder_attn(
                    query=h, key=encoder_out, value=encoder_out,
                    key_padding_mask=encoder_padding_mask, incremental_state=incremental_state,
                    static_kv=True, need_weights=need_attn or (not self.training and self.need_attn),
                    need_head_weights=need_head_weights,
                )
                return h
            x = self._sublayer(x, self.encoder_attn_layer_norm, cross_attention)
        x = self._sublayer(x, self.final_layer_norm, lambda h: self._ffn(h, self.fc1, self.fc2))
        return x, attn, None


class DeltaLMEncoder(TransformerEncoderBase):
    """fairseq's encoder, plus an entry for already-embedded (speech) features."""

    def forward_features(self, features: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """features: B x T x C in place of token embeddings; padding_mask B x T.

        Goes through fairseq's own forward with ``token_embeddings``; the stand-in
        tokens only tell it where the padding is.
        """
        tokens = torch.full(features.shape[:2], self.dictionary.unk(), dtype=torch.long,
                            device=features.device)
        if padding_mask is not None:
            tokens = tokens.masked_fill(padding_mask, self.padding_idx)
        lengths = tokens.ne(self.padding_idx).sum(dim=1)
        return self.forward(tokens, lengths, token_embeddings=features)

    def forward_embedding(self, src_tokens, token_embedding: Optional[torch.Tensor] = None):
        """Changed for speech features (``token_embedding`` given): no learned
        positions and no embedding scale, as CRESS's speech path. Positions are
        DeltaLM's 512 text positions; the subsampled speech of a long talk
        segment exceeds them, and the convolutions already encode order."""
        if token_embedding is None:
            return super().forward_embedding(src_tokens)
        x = token_embedding
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x)
        if self.quant_noise is not None:
            x = self.quant_noise(x)
        return x, token_embedding


class DeltaLMDecoder(TransformerDecoderBase):
    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        return DeltaLMDecoderLayer(TransformerConfig.from_namespace(cfg), no_encoder_attn)


@register_model("deltalm")
class DeltaLMModel(TransformerModel):
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--pretrained-deltalm-checkpoint", type=str, metavar="FILE",
                            help="released DeltaLM weights (deltalm-base.pt / deltalm-large.pt)")

    @classmethod
    def build_model(cls, args, task):
        model = super().build_model(args, task)
        path = getattr(args, "pretrained_deltalm_checkpoint", None)
        if path:
            load_released_deltalm(model.encoder, model.decoder, path)
        return model

    @classmethod
    def build_encoder(cls, cfg, src_dict, embed_tokens):
        return DeltaLMEncoder(TransformerConfig.from_namespace(cfg), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, cfg, tgt_dict, embed_tokens):
        return DeltaLMDecoder(TransformerConfig.from_namespace(cfg), tgt_dict, embed_tokens,
                              no_encoder_attn=cfg.no_cross_attention)


def released_key_to_fairseq(key: str) -> Optional[str]:
    """Released DeltaLM name -> fairseq name (``encoder.*``/``decoder.*``), or None."""
    side, _, rest = key.partition(".")
    side = {"src_embedding": "encoder", "tgt_embedding": "decoder"}.get(side, side)
    if side not in ("encoder", "decoder") or not rest:
        return None
    rest = rest.replace("emb_layer_norm.", "layernorm_embedding.")
    if side == "encoder":
        rest = rest.replace(".ffn.fc", ".fc")
    else:
        rest = rest.replace(".ffn_1.fc1.", ".fc3.").replace(".ffn_1.fc2.", ".fc4.")
        rest = rest.replace(".ffn_2.fc", ".fc")
    return f"{side}.{rest}"


def _vocabulary_rows(name, released: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Embedding rows follow the model's dictionary: extra released rows are
    dropped, rows the release lacks keep their fresh initialisation."""
    if released.shape[1:] != current.shape[1:]:
        raise InputError(f"{name}: released shape {tuple(released.shape)} vs model "
                         f"{tuple(current.shape)}")
    rows = min(released.size(0), current.size(0))
    merged = current.detach().clone()
    merged[:rows] = released[:rows]
    return merged


def load_released_deltalm(encoder, decoder, path: str) -> None:
    """Strictly load a released DeltaLM file (``{"weights": {...}}``) into a
    DeltaLM encoder and decoder. Every released tensor must land somewhere
    and every model tensor must be covered."""
    state = load_checkpoint(path)
    if "weights" not in state:
        raise InputError(f"{path}: not a released DeltaLM file (no 'weights'; keys: {sorted(state)})")
    released: Dict[str, torch.Tensor] = state["weights"]
    modules = {"encoder": encoder, "decoder": decoder}
    targets = {f"{side}.{k}": v
               for side, module in modules.items()
               for k, v in module.state_dict().items()}
    # tied or bookkeeping entries that the release does not carry
    optional = {k for k in targets if k.endswith(".version") or k.endswith("_float_tensor")
                or k == "decoder.output_projection.weight"}
    new_state, unknown, bad_shapes, seen = {}, [], [], set()
    for key, tensor in released.items():
        name = released_key_to_fairseq(key)
        if name is None or name not in targets:
            unknown.append(key)
            continue
        seen.add(name)
        if name.endswith(("embed_tokens.weight", "embed_positions.weight")):
            new_state[name] = _vocabulary_rows(name, tensor, targets[name])
        elif tensor.shape != targets[name].shape:
            bad_shapes.append(f"{key} {tuple(tensor.shape)} -> {name} {tuple(targets[name].shape)}")
        else:
            new_state[name] = tensor
    missing = sorted(set(targets) - seen - optional)
    if unknown or missing or bad_shapes:
        raise InputError(
            f"{path}: released DeltaLM weights do not match the model:\n"
            f"  unknown keys: {unknown}\n  missing keys: {missing}\n"
            f"  shape mismatches: {bad_shapes}"
        )
    for side, module in modules.items():
        prefix = side + "."
        part = {k[len(prefix):]: v for k, v in new_state.items() if k.startswith(prefix)}
        module.load_state_dict(part, strict=False)
    logger.info("loaded %d released DeltaLM tensors from %s", len(released), path)


def _deltalm_defaults(args, embed, ffn, enc_layers, dec_layers, heads):
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", embed)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", ffn)
    args.encoder_layers = getattr(args, "encoder_layers", enc_layers)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", heads)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", dec_layers)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", args.encoder_attention_heads)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", False)
    args.encoder_learned_pos = getattr(args, "encoder_learned_pos", True)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", True)
    args.layernorm_embedding = getattr(args, "layernorm_embedding", True)
    args.no_scale_embedding = getattr(args, "no_scale_embedding", True)
    args.activation_fn = getattr(args, "activation_fn", "gelu")
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
    args.max_source_positions = getattr(args, "max_source_positions", 512)
    args.max_target_positions = getattr(args, "max_target_positions", 512)
    base_architecture(args)


@register_model_architecture("deltalm", "deltalm_base")
def deltalm_base(args):
    _deltalm_defaults(args, 768, 3072, 12, 6, 12)


@register_model_architecture("deltalm", "deltalm_large")
def deltalm_large(args):
    _deltalm_defaults(args, 1024, 4096, 24, 12, 16)
