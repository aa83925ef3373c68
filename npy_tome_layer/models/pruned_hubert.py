"""HuBERT whose transformer shortens the sequence between layers.

Thin fairseq glue over ``modules/token_reduction.py`` (which reduction, what
it needs, how it reduces) and ``modules/frame_pruning.py`` (the pruning rule):

* ``ReducibleAttention``: fairseq's ``MultiheadAttention`` that, while
  ``collecting(evidence)`` is active around its layer, computes attention
  explicitly and hands the reduction what it asked for (blocks of fp32
  probabilities, or keys). Otherwise it is fairseq's module, fast path
  included. Installed by changing the class of fairseq's own instances
  (as ToMe patches timm), so every setting of the original is kept.
* ``PrunedTransformerEncoder`` overrides only ``extract_features``, the layer
  loop, and returns the padding mask and kept indices with the states.
* ``PrunedHubertModel`` overrides ``forward`` (the feature path), so
  ``forward(features_only=True)``, ``extract_features`` and the ST encoder all
  return masks aligned with their features. Parameter names are fairseq's
  (the conv reduction's are ``encoder.length_reduction.*``, as before), so
  official state dicts and older ST checkpoints load as-is.
"""
import contextlib
import contextvars
import logging
import numbers
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data.dictionary import Dictionary
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.models.wav2vec.utils import pad_to_multiple
from fairseq.models.wav2vec.wav2vec2 import TransformerEncoder
from fairseq.modules import Fp32GroupNorm, MultiheadAttention
from fairseq.utils import index_put
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.profiler import record_function

from ..checkpoint_loading import load_checkpoint
from ..modules.keep_rate import KeepRateSchedule
from ..modules.token_reduction import (
    REDUCE_LABEL,
    AttentionEvidence,
    Tokens,
    TokenReduction,
    build_reduction,
)
from ..speech import SAMPLE_RATE

logger = logging.getLogger(__name__)

# The evidence the running layer's attention fills; set only around one layer call.
_EVIDENCE: contextvars.ContextVar[Optional[AttentionEvidence]] = contextvars.ContextVar(
    "token_reduction_evidence", default=None)


@contextlib.contextmanager
def collecting(evidence: Optional[AttentionEvidence]):
    """Make the attention inside this block fill ``evidence`` (None: fast path)."""
    token = _EVIDENCE.set(evidence)
    try:
        yield evidence
    finally:
        _EVIDENCE.reset(token)


# Valid samples per row (B,) of the waveforms the conv front end is reading;
# set only around the front end of a batch-invariant model's padded batch.
_VALID_SAMPLES: contextvars.ContextVar[Optional[torch.Tensor]] = contextvars.ContextVar(
    "valid_samples", default=None)


@contextlib.contextmanager
def reading_valid_samples(num_samples: Optional[torch.Tensor]):
    token = _VALID_SAMPLES.set(num_samples)
    try:
        yield
    finally:
        _VALID_SAMPLES.reset(token)


def conv_output_lengths(lengths: torch.Tensor, convs) -> torch.Tensor:
    """Output length of a chain of unpadded convolutions ``(kernel, stride)``."""
    for kernel, stride in convs:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


class ValidFramesGroupNorm(Fp32GroupNorm):
    """fairseq's fp32 GroupNorm of HuBERT-base's first conv layer
    (``extractor_mode: default``), which normalises each channel over the
    whole time axis: in a padded batch the statistics include the padding, so
    a padded row's features differ from the same audio alone. While
    ``reading_valid_samples`` is active, each row's statistics are taken over
    its own valid frames only (``input_convs``: the convolutions before this
    norm, to turn samples into frames). Changed from fairseq: ``forward`` only."""

    input_convs = ()

    def forward(self, x):  # B x C x T
        num_samples = _VALID_SAMPLES.get()
        if num_samples is None:
            return super().forward(x)
        bsz, channels, length = x.shape
        frames = conv_output_lengths(num_samples, self.input_convs).clamp(min=0)
        valid = (torch.arange(length, device=x.device).unsqueeze(0) < frames.unsqueeze(1))
        valid = valid.float()[:, None, None, :]  # B x 1 x 1 x T
        grouped = x.float().reshape(bsz, self.num_groups, channels // self.num_groups, length)
        count = (valid.sum(dim=-1, keepdim=True) * grouped.size(2)).clamp(min=1)
        mean = (grouped * valid).sum(dim=(2, 3), keepdim=True) / count
        var = (((grouped - mean) * valid) ** 2).sum(dim=(2, 3), keepdim=True) / count
        out = ((grouped - mean) / torch.sqrt(var + self.eps)).reshape(bsz, channels, length)
        if self.affine:
            out = out * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]
        return out.type_as(x)


def make_front_end_batch_invariant(feature_extractor, conv_layers) -> None:
    """Give each GroupNorm of fairseq's conv front end the valid-frames forward."""
    convs = []
    for block, (_, kernel, stride) in zip(feature_extractor.conv_layers, conv_layers):
        convs.append((kernel, stride))
        for module in block.modules():
            if type(module) is Fp32GroupNorm:
                module.__class__ = ValidFramesGroupNorm  # adds behaviour
                module.input_convs = tuple(convs)


class ReducibleAttention(MultiheadAttention):
    """fairseq's self-attention, plus: when an ``AttentionEvidence`` is being
    collected, attention is computed explicitly (the probabilities are needed
    anyway) with the softmax in fp32 whatever the input dtype, and each block
    of probabilities or the keys go to the evidence. Changed from fairseq:
    ``forward`` only; no state of its own."""

    # On the CPU the whole B x H x T x T map at once is memory-bound (at 10 s
    # x 8 it took 2.4x as long as fused attention, blocks of ~2 MB 1.3x), so
    # the map is built block by block. CUDA takes it in one go.
    cpu_block_bytes = 2 << 20

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, **kwargs):
        evidence = _EVIDENCE.get()
        if evidence is None:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        tgt_len, bsz, embed_dim = query.shape
        heads, head_dim = self.num_heads, self.head_dim

        def split_heads(t):  # T x B x C -> B x H x T x d
            return t.reshape(tgt_len, bsz, heads, head_dim).permute(1, 2, 0, 3)

        q = split_heads(self.q_proj(query) * self.scaling)
        k = split_heads(self.k_proj(key))
        v = split_heads(self.v_proj(value))
        if evidence.needs_keys:
            evidence.add_keys(k)
        key_bias = None  # B x 1 x 1 x T fp32, added to the fp32 logits
        if evidence.key_log_size is not None:
            key_bias = evidence.key_log_size[:, None, None, :].float()
        if key_padding_mask is not None:
            pad = torch.zeros(bsz, 1, 1, tgt_len, device=q.device).masked_fill_(
                key_padding_mask[:, None, None, :].bool(), float("-inf"))
            key_bias = pad if key_bias is None else key_bias + pad
        rows_per_block, heads_per_block = self._block_shape(bsz, tgt_len, q.device)
        outputs = []
        for r in range(0, bsz, rows_per_block):
            rows = slice(r, min(r + rows_per_block, bsz))
            row_outputs = []
            for h in range(0, heads, heads_per_block):
                block = (rows, slice(h, min(h + heads_per_block, heads)))
                logits = torch.matmul(q[block], k[block].transpose(-1, -2))
                # in place: matmul's backward needs q and k, not its output
                if attn_mask is not None:
                    logits += attn_mask
                logits = logits.float()  # in place below too: a copy unless already fp32
                if key_bias is not None:
                    logits += key_bias[rows]
                probs = logits.softmax(dim=-1)
                if evidence.needs_probabilities:
                    evidence.add_probabilities(probs, rows, heads, key_padding_mask)
                row_outputs.append(
                    torch.matmul(self.dropout_module(probs.type_as(v)), v[block]))
            outputs.append(torch.cat(row_outputs, dim=1) if len(row_outputs) > 1
                           else row_outputs[0])
        out = torch.cat(outputs, dim=0) if len(outputs) > 1 else outputs[0]  # B x H x T x d
        out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        return self.out_proj(out), None

    def _block_shape(self, bsz: int, length: int, device: torch.device):
        """(batch rows, heads) per block of the attention map."""
        if device.type != "cpu":
            return bsz, self.num_heads
        per_head = max(1, self.cpu_block_bytes // (4 * length * length))
        if per_head >= self.num_heads:
            return max(1, per_head // self.num_heads), self.num_heads
        return 1, per_head


def attention_padding_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The key mask the attention sees: a row with no valid frame (a caller's
    empty utterance) attends to its filler, so its states stay finite; its
    output stays fully masked."""
    if padding_mask is None:
        return None
    return padding_mask & (~padding_mask).any(dim=1, keepdim=True)


class EncoderResult(NamedTuple):
    """Second output of ``PrunedTransformerEncoder`` (fairseq's is layer_results)."""

    padding_mask: Optional[torch.Tensor]  # B x T' for the returned states
    kept_indices: List[torch.Tensor]  # original frame index per kept position, per layer >= init
    layer_results: list


class PrunedTransformerEncoder(TransformerEncoder):
    """wav2vec2/HuBERT transformer that shortens the sequence from layer
    ``pruning_init_layer`` on with a registered ``TokenReduction`` (kept as
    ``length_reduction``, the conv reduction's state-dict prefix)."""

    def __init__(self, args, schedule: KeepRateSchedule, pruning_init_layer: int = 0,
                 token_reduction: str = "prune", conv_stride: int = 2, reduction_seed: int = 0):
        super().__init__(args)
        num_layers = len(self.layers)
        if isinstance(pruning_init_layer, bool) or not isinstance(pruning_init_layer,
                                                                  numbers.Integral):
            raise ValueError(f"pruning_init_layer must be a whole number, got "
                             f"{pruning_init_layer!r}")
        if not 0 <= pruning_init_layer <= num_layers:
            raise ValueError(
                f"pruning_init_layer must be in [0, {num_layers}] for a "
                f"{num_layers}-layer encoder, got {pruning_init_layer}"
            )
        if args.layer_type != "transformer" or args.checkpoint_activations:
            raise ValueError(
                "frame pruning supports layer_type='transformer' without "
                f"checkpoint_activations, got layer_type={args.layer_type!r}, "
                f"checkpoint_activations={args.checkpoint_activations}"
            )
        self.schedule = schedule
        self.pruning_init_layer = pruning_init_layer
        self.length_reduction: TokenReduction = build_reduction(
            token_reduction, self.embedding_dim, conv_stride, reduction_seed)
        self.length_reduction.check(schedule.min_rate, pruning_init_layer, num_layers)
        self.num_updates = 0
        for layer in self.layers:
            layer.self_attn.__class__ = ReducibleAttention  # adds behaviour, no state

    @property
    def token_reduction(self) -> str:
        return self.length_reduction.name

    def set_num_updates(self, num_updates):
        """Called by fairseq's trainer, and on checkpoint load."""
        self.num_updates = num_updates

    @property
    def keep_rate(self) -> float:
        return self.schedule.rate_at(self.num_updates)

    @property
    def final_setting(self) -> tuple:
        """(reduction, keep rate, init layer) once any schedule has ended: the
        setting a trained model evaluates at."""
        return self.length_reduction.name, self.schedule.min_rate, self.pruning_init_layer

    def shortens(self) -> bool:
        """Whether the sequence leaves shorter than it came in, at the current rate."""
        return any(self.length_reduction.acts_after(i, self.pruning_init_layer, self.keep_rate)
                   for i in range(len(self.layers)))

    def extract_features(self, x, padding_mask=None, tgt_layer=None, min_layer=0,
                         corpus_key=None):
        """fairseq's layer loop plus the reduction -> (x, EncoderResult)."""
        rate, reduction, init = self.keep_rate, self.length_reduction, self.pruning_init_layer
        if padding_mask is not None:
            x = index_put(x, padding_mask, 0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        bsz, orig_len = x.size(0), x.size(1)
        x, pad_length = pad_to_multiple(x, self.required_seq_len_multiple, dim=-2, value=0)
        if pad_length > 0:
            if padding_mask is None:
                padding_mask = x.new_zeros((bsz, orig_len), dtype=torch.bool)
            padding_mask, _ = pad_to_multiple(
                padding_mask, self.required_seq_len_multiple, dim=-1, value=True
            )
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = x.transpose(0, 1)  # T x B x C

        # original frame index of every current position
        positions = torch.arange(x.size(0), device=x.device).unsqueeze(0).expand(bsz, -1)
        sizes = None
        kept_indices, layer_results = [], []
        shortened = False
        for i, layer in enumerate(self.layers):
            # draw like fairseq does, so RNG streams match the dense encoder
            dropout_probability = np.random.random() if self.layerdrop > 0 else 1
            runs = not self.training or dropout_probability > self.layerdrop
            acting = reduction.acts_after(i, init, rate)
            evidence = None
            if runs and i >= init:
                evidence = reduction.evidence(
                    Tokens(x.transpose(0, 1), padding_mask, positions, sizes), acting)
            if runs:
                with collecting(evidence):
                    x, (_, layer_result) = layer(
                        x, self_attn_padding_mask=attention_padding_mask(padding_mask),
                        need_weights=False)
            reduces = acting and (runs or reduction.acts_after_dropped_layer)
            if reduces:
                with record_function(REDUCE_LABEL):
                    tokens = reduction.reduce(
                        Tokens(x.transpose(0, 1), padding_mask, positions, sizes), evidence,
                        rate, i)
                    # the steps return a transposed view; the layers after
                    # it ran up to 15 % slower on that (CPU, 10 s x 8)
                    x = tokens.x.transpose(0, 1).contiguous()
                    padding_mask, positions, sizes = (
                        tokens.padding_mask, tokens.positions, tokens.sizes)
                shortened = True
            if i >= init and (runs or reduces):
                # before any reduction the filler frames are still there
                width = positions.size(1) - (0 if shortened else pad_length)
                kept_indices.append(positions[:, :width])
            if runs and i >= min_layer:
                layer_results.append((x, None, layer_result))
            if i == tgt_layer:
                break

        x = x.transpose(0, 1)  # B x T x C
        if pad_length > 0 and not shortened:
            # a reduction already dropped the filler frames; otherwise undo as fairseq does
            x = x[:, :-pad_length]
            padding_mask = padding_mask[:, :-pad_length]
        return x, EncoderResult(padding_mask, kept_indices, layer_results)


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


class PrunedHubertModel(HubertModel):
    """HubertModel with ``PrunedTransformerEncoder``.

    ``forward(features_only=True)`` returns ``x`` with the ``padding_mask`` of
    the frames that are left, ``features`` (conv front end) with
    ``features_padding_mask``, and ``kept_indices``: the original frame index
    of each kept frame, one B x T' tensor per layer from the init layer on
    (padded positions hold filler indices). ``last_kept_indices`` repeats the
    last call's, for interactive use.
    """

    def __init__(self, cfg: HubertConfig, task_cfg, dictionaries: List[Optional[Dictionary]],
                 schedule: KeepRateSchedule, pruning_init_layer: int = 0,
                 fairseq_padding: bool = False, padding_mask_from_conv_lengths: bool = False,
                 token_reduction: str = "prune", conv_stride: int = 2, reduction_seed: int = 0):
        super().__init__(cfg, task_cfg, dictionaries)
        self.encoder = PrunedTransformerEncoder(cfg, schedule, pruning_init_layer,
                                                token_reduction, conv_stride, reduction_seed)
        self.conv_layers = eval(cfg.conv_feature_layers)  # noqa: S307 (fairseq's format)
        # batch-invariant unless fairseq_padding: front-end statistics and the
        # frame mask come from each row's own length
        self.fairseq_padding = fairseq_padding
        self.padding_mask_from_conv_lengths = padding_mask_from_conv_lengths or not fairseq_padding
        if not fairseq_padding:
            make_front_end_batch_invariant(self.feature_extractor, self.conv_layers)
        self.last_kept_indices: List[torch.Tensor] = []

    def frame_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Conv feature extractor output length for each input length."""
        return conv_output_lengths(num_samples, [(k, s) for _, k, s in self.conv_layers])

    def reading_rows(self, padding_mask: Optional[torch.Tensor]):
        """Context of the conv front end: each row's own valid samples, unless
        the model reproduces fairseq's padded front end."""
        if self.fairseq_padding or padding_mask is None:
            return contextlib.nullcontext()
        return reading_valid_samples((~padding_mask).sum(dim=1))

    @property
    def min_samples(self) -> int:
        """Samples the conv front end needs for one frame (400 for HuBERT)."""
        span, step = 1, 1
        for _, kernel, stride in self.conv_layers:
            span += (kernel - 1) * step
            step *= stride
        return span

    def check_source(self, source, padding_mask=None):
        """(B x samples float source, padding mask) or a one-line ValueError:
        a 1-D source is one utterance, float64 is converted to the model's
        dtype, integer PCM and non-finite samples are refused."""
        if source.dim() == 1:
            source = source.unsqueeze(0)
            padding_mask = None if padding_mask is None else padding_mask.reshape(1, -1)
        if source.dim() != 2:
            raise ValueError("source must be B x samples (or one utterance of samples), got "
                             f"shape {tuple(source.shape)}")
        if source.size(1) == 1 and source.size(0) >= self.min_samples:
            raise ValueError(f"source has shape {tuple(source.shape)}, samples x 1: pass "
                             "B x samples (source.T, or source[:, 0] for one utterance)")
        if not source.is_floating_point():
            dtype = str(source.dtype).replace("torch.", "")
            raise ValueError(f"source is {dtype} PCM: convert to float in [-1, 1] "
                             "(samples / 32768)")
        if source.size(1) < self.min_samples:
            raise ValueError(f"source has {source.size(1)} samples: HuBERT needs at least "
                             f"{self.min_samples} (one frame)")
        if padding_mask is not None:
            if padding_mask.shape != source.shape or padding_mask.dtype != torch.bool:
                raise ValueError(f"padding_mask must be a bool tensor shaped like source "
                                 f"{tuple(source.shape)}, got {padding_mask.dtype} "
                                 f"{tuple(padding_mask.shape)}")
            valid = (~padding_mask).sum(dim=1)
            # an all-padding row is a caller's empty utterance: it comes back fully masked
            short = ((valid > 0) & (valid < self.min_samples)).nonzero()
            if len(short):
                row = int(short[0])
                raise ValueError(f"row {row} of source has {int(valid[row])} valid samples: "
                                 f"HuBERT needs at least {self.min_samples} (one frame)")
        finite = torch.isfinite(source)
        if padding_mask is not None:
            finite = finite | padding_mask  # padding is never read as speech
        if not bool(finite.all()):
            row = int((~finite).any(dim=1).nonzero()[0])
            raise ValueError(f"source has non-finite samples (NaN or inf) in row {row}")
        dtype = self.layer_norm.weight.dtype
        return source.to(dtype), padding_mask

    def forward_padding_mask(self, features, padding_mask):
        if not self.padding_mask_from_conv_lengths:
            # fairseq: a frame is valid if *any* of its samples is, so a
            # padded row can get one frame more than the same audio alone
            return super().forward_padding_mask(features, padding_mask)
        lengths = self.frame_lengths((~padding_mask).sum(dim=1))
        frames = torch.arange(features.size(1), device=features.device)
        return frames.unsqueeze(0) >= lengths.unsqueeze(1)

    def forward(self, source, target_list=None, padding_mask=None, mask=True,
                features_only=False, output_layer=None) -> Dict[str, torch.Tensor]:
        """Changed from fairseq: the encoder's padding mask and kept indices
        are returned with its states. HuBERT's pre-training loss (not
        ``features_only``) needs every frame, so it runs only unshortened."""
        source, padding_mask = self.check_source(source, padding_mask)
        if not features_only:
            if self.encoder.shortens():
                raise ValueError("HuBERT's pre-training loss needs every frame: call with "
                                 "features_only=True, or use keep rate 1.0")
            with self.reading_rows(padding_mask):
                return super().forward(source, target_list, padding_mask, mask, features_only,
                                       output_layer)
        # fairseq's feature path, through its own hooks
        with self.reading_rows(padding_mask):
            features = self.forward_features(source)
        features = self.layer_norm(features.transpose(1, 2))
        if padding_mask is not None:
            padding_mask = self.forward_padding_mask(features, padding_mask)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        features = self.dropout_input(features)
        x = self.apply_mask(features, padding_mask, None)[0] if mask else features
        x, result = self.encoder(x, padding_mask=padding_mask,
                                 layer=None if output_layer is None else output_layer - 1)
        x_mask = result.padding_mask
        if padding_mask is None and x_mask is not None and not x_mask.any():
            x_mask = None  # as fairseq: no mask in, no padding -> no mask out
        self.last_kept_indices = result.kept_indices
        return {"x": x, "padding_mask": x_mask, "features": features,
                "features_padding_mask": padding_mask, "kept_indices": result.kept_indices}

    def extract_features(self, source, padding_mask=None, mask=False, ret_conv=False,
                         output_layer=None):
        """fairseq's: (features, their padding mask); with ``ret_conv`` the conv
        front end's features and frame mask."""
        res = self.forward(source, padding_mask=padding_mask, mask=mask, features_only=True,
                           output_layer=output_layer)
        if ret_conv:
            return res["features"], res["features_padding_mask"]
        return res["x"], res["padding_mask"]

    def remove_pretraining_modules(self):
        """Drop the HuBERT pretraining heads, unused once fine-tuned."""
        self.final_proj = None
        self.target_glu = None
        self.label_embs_concat = None


def build_pruned_hubert(model_cfg, task_cfg=None, dictionaries=None,
                        pruning_rate: float = 1.0, pruning_init_layer: int = 0,
                        pruning_max_rate: Optional[float] = None,
                        pruning_min_rate: Optional[float] = None,
                        pruning_schedule_updates: int = 0,
                        fairseq_padding: bool = False,
                        padding_mask_from_conv_lengths: bool = False,
                        token_reduction: str = "prune", conv_stride: int = 2,
                        reduction_seed: int = 0,
                        **model_overrides) -> PrunedHubertModel:
    """Build (random weights) from a HuBERT ``cfg.model``. The keep rate comes
    from ``KeepRateSchedule.from_arguments``; ``model_overrides``
    replace config fields (dropout, encoder_layerdrop, ...) as fine-tuning does.

    Batch-invariant by default: an utterance's features do not depend on the
    other rows of its batch. ``fairseq_padding=True`` reproduces fairseq's
    padded front end exactly (GroupNorm statistics over the padding, a frame
    valid if any of its samples is; ``padding_mask_from_conv_lengths`` then
    changes only the mask)."""
    schedule = KeepRateSchedule.from_arguments(pruning_rate, pruning_max_rate, pruning_min_rate,
                                               pruning_schedule_updates)
    cfg = hubert_config(model_cfg)
    for key, value in model_overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown HuBERT config field {key!r}")
        cfg[key] = value
    if task_cfg is None:
        task_cfg = OmegaConf.create({"sample_rate": SAMPLE_RATE})
    return PrunedHubertModel(
        cfg, task_cfg, dictionaries or [None], schedule, pruning_init_layer,
        fairseq_padding, padding_mask_from_conv_lengths, token_reduction, conv_stride,
        reduction_seed,
    )


def load_hubert_weights(model: PrunedHubertModel, weights: dict, path: str) -> None:
    """Strict load of official weights; only the conv reduction (new, not in
    any HuBERT file) may be missing."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.length_reduction.")]
    if missing or unexpected:
        raise ValueError(f"{path}: HuBERT weights do not fit its own config: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")


def load_pruned_hubert(path: str, pruning_rate: float = 1.0, pruning_init_layer: int = 0,
                       **kwargs) -> PrunedHubertModel:
    """Load an official-format HuBERT checkpoint (``cfg``, ``model``,
    ``task_state``) as a pruned model in eval mode. The task's label files
    are not needed: dictionaries come from ``task_state`` when present.
    Other keyword arguments go to ``build_pruned_hubert`` (schedule, config
    overrides such as ``encoder_layerdrop``)."""
    state = load_checkpoint(path)
    if "cfg" not in state or state["cfg"] is None or "model" not in state:
        raise ValueError(f"{path}: not a fairseq HuBERT checkpoint (needs 'cfg' and 'model')")
    dictionaries = (state.get("task_state") or {}).get("dictionaries")
    weights = dict(state["model"])
    if not dictionaries:
        weights.pop("label_embs_concat", None)
    model = build_pruned_hubert(
        state["cfg"]["model"], state["cfg"].get("task"), dictionaries,
        pruning_rate=pruning_rate, pruning_init_layer=pruning_init_layer, **kwargs,
    )
    load_hubert_weights(model, weights, path)
    return model.eval()
