"""HuBERT whose transformer drops the frames that receive the least attention.

Thin fairseq glue over ``modules/frame_pruning.py``:

* ``ReceivedAttention`` is fairseq's ``MultiheadAttention`` that, when asked,
  also returns how much attention each key frame receives (fairseq's encoder
  layer hard-codes ``need_weights=False`` but passes the attention output
  through, so swapping the attention module is the narrowest hook).
* ``PrunedTransformerEncoder`` overrides only ``extract_features``, the layer
  loop, to prune after every layer from ``pruning_init_layer`` on.
* ``PrunedHubertModel`` swaps in that encoder and returns the pruned padding
  mask. Parameter names are fairseq's, so official state dicts load as-is.
"""
import contextlib
import logging
import numbers
import time
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data.dictionary import Dictionary
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.models.wav2vec.utils import pad_to_multiple
from fairseq.models.wav2vec.wav2vec2 import (
    TransformerEncoder,
    TransformerSentenceEncoderLayer,
)
from fairseq.modules import MultiheadAttention
from fairseq.utils import index_put
from omegaconf import DictConfig, OmegaConf, open_dict

from ..checkpoint_loading import load_checkpoint
from ..modules.frame_pruning import gather_frames, received_attention, select_frames
from ..modules.keep_rate import KeepRateSchedule
from ..modules.token_merging import StridedConvReduction, merge_tokens

logger = logging.getLogger(__name__)


class Stopwatch:
    """Accumulates wall time of the ``with stopwatch():`` blocks while
    ``seconds`` is a number (None = off, no synchronisation cost). On CUDA it
    synchronises around each block, so it is for measuring overhead only."""

    seconds = None

    @contextlib.contextmanager
    def __call__(self):
        if self.seconds is None:
            yield
            return
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        start = time.perf_counter()
        yield
        sync()
        self.seconds += time.perf_counter() - start


class ReceivedAttention(MultiheadAttention):
    """Self-attention that can also report what frame reduction needs.

    ``report = None``: fairseq's module unchanged (fast path). ``"scores"``:
    attention is computed explicitly — the probabilities are needed anyway —
    with the softmax and the scores in fp32 whatever the input dtype, and the
    second output is the B x T fp32 attention each key frame receives.
    ``"keys"``: the second output is the head-averaged keys B x T x d (token
    merging's similarity metric). ``key_log_size`` (B x T), when set, is added
    to the logits: ToMe's proportional attention, so a merged token counts
    as many times as the frames it stands for.
    """

    report = None
    key_log_size = None
    stopwatch = Stopwatch()  # the encoder gives each layer its shared one
    # On the CPU the whole B x H x T x T map at once is memory-bound (at 10 s
    # x 8 it took 2.4x as long as fused attention, blocks of ~2 MB 1.3x), so
    # the map is built block by block. CUDA takes it in one go.
    cpu_block_bytes = 2 << 20

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, **kwargs):
        if self.report is None and self.key_log_size is None:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        tgt_len, bsz, embed_dim = query.shape
        heads, head_dim = self.num_heads, self.head_dim

        def split_heads(t):  # T x B x C -> B x H x T x d
            return t.reshape(tgt_len, bsz, heads, head_dim).permute(1, 2, 0, 3)

        q = split_heads(self.q_proj(query) * self.scaling)
        k = split_heads(self.k_proj(key))
        v = split_heads(self.v_proj(value))
        key_bias = None  # B x 1 x 1 x T, added to the logits
        if self.key_log_size is not None:
            key_bias = self.key_log_size[:, None, None, :].float()
        if key_padding_mask is not None:
            pad = torch.zeros(bsz, 1, 1, tgt_len, device=q.device).masked_fill_(
                key_padding_mask[:, None, None, :].bool(), float("-inf"))
            key_bias = pad if key_bias is None else key_bias + pad
        rows_per_block, heads_per_block = self._block_shape(bsz, tgt_len, q.device)
        outputs, scores = [], []
        for r in range(0, bsz, rows_per_block):
            rows = slice(r, r + rows_per_block)
            row_outputs, row_scores = [], 0.0
            for h in range(0, heads, heads_per_block):
                block = (rows, slice(h, h + heads_per_block))
                logits = torch.matmul(q[block], k[block].transpose(-1, -2))
                # in place: matmul's backward needs q and k, not its output
                if attn_mask is not None:
                    logits += attn_mask
                if key_bias is not None:
                    logits += key_bias[rows].to(logits.dtype)
                probs = logits.float().softmax(dim=-1)
                if self.report == "scores":
                    with self.stopwatch():
                        mask = None if key_padding_mask is None else key_padding_mask[rows]
                        # the block's head mean, weighted to the mean over all heads
                        row_scores = row_scores + received_attention(probs, mask) * (
                            probs.size(1) / heads)
                row_outputs.append(
                    torch.matmul(self.dropout_module(probs.type_as(v)), v[block]))
            outputs.append(torch.cat(row_outputs, dim=1) if len(row_outputs) > 1
                           else row_outputs[0])
            scores.append(row_scores)
        out = torch.cat(outputs, dim=0) if len(outputs) > 1 else outputs[0]  # B x H x T x d
        out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        extra = None
        if self.report == "scores":
            extra = torch.cat(scores, dim=0) if len(scores) > 1 else scores[0]
        elif self.report == "keys":
            with self.stopwatch():
                extra = k.mean(dim=1)
        return self.out_proj(out), extra

    def _block_shape(self, bsz: int, length: int, device: torch.device):
        """(batch rows, heads) per block of the attention map."""
        if device.type != "cpu":
            return bsz, self.num_heads
        per_head = max(1, self.cpu_block_bytes // (4 * length * length))
        if per_head >= self.num_heads:
            return max(1, per_head // self.num_heads), self.num_heads
        return 1, per_head


def _swap_in_received_attention(layer: TransformerSentenceEncoderLayer) -> None:
    old = layer.self_attn
    new = ReceivedAttention(
        old.embed_dim, old.num_heads, dropout=old.dropout_module.p, self_attention=True
    )
    new.load_state_dict(old.state_dict())
    layer.self_attn = new


TOKEN_REDUCTIONS = ("prune", "merge", "conv")


class PrunedTransformerEncoder(TransformerEncoder):
    """wav2vec2/HuBERT transformer that shortens the sequence from layer
    ``pruning_init_layer`` on. ``token_reduction``: ``"prune"`` (the method:
    keep the ceil(rate * n) frames that receive the most attention, after
    every layer >= init), ``"merge"`` (ToMe matching to the same counts), or
    ``"conv"`` (one stride-``conv_stride`` convolution after layer init)."""

    def __init__(self, args, schedule: KeepRateSchedule, pruning_init_layer: int = 0,
                 token_reduction: str = "prune", conv_stride: int = 2):
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
        if token_reduction not in TOKEN_REDUCTIONS:
            raise ValueError(f"token_reduction must be one of {TOKEN_REDUCTIONS}, "
                             f"got {token_reduction!r}")
        self.schedule = schedule
        self.pruning_init_layer = pruning_init_layer
        self.token_reduction = token_reduction
        self.num_updates = 0
        if token_reduction == "conv":
            self.length_reduction = StridedConvReduction(self.embedding_dim, conv_stride)
        else:
            for layer in self.layers[pruning_init_layer:]:
                _swap_in_received_attention(layer)
        self.last_kept_indices: List[torch.Tensor] = []
        self.last_padding_mask: Optional[torch.Tensor] = None
        # benchmarks set stopwatch.seconds = 0.0 to time scoring + top-k + gather
        self.stopwatch = Stopwatch()
        for layer in self.layers:
            if isinstance(layer.self_attn, ReceivedAttention):
                layer.self_attn.stopwatch = self.stopwatch

    def set_num_updates(self, num_updates):
        """Called by fairseq's trainer, and on checkpoint load."""
        self.num_updates = num_updates

    @property
    def keep_rate(self) -> float:
        return self.schedule.rate_at(self.num_updates)

    def extract_features(self, x, padding_mask=None, tgt_layer=None, min_layer=0,
                         corpus_key=None):
        rate = self.keep_rate
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
        sizes = None  # frames per token, token merging only
        kept_indices, layer_results = [], []
        pruned = False
        mode = self.token_reduction
        for i, layer in enumerate(self.layers):
            # draw like fairseq does, so RNG streams match the dense encoder
            dropout_probability = np.random.random() if self.layerdrop > 0 else 1
            if not self.training or dropout_probability > self.layerdrop:
                reduces_here = i >= self.pruning_init_layer and (
                    rate < 1.0 if mode != "conv" else i == self.pruning_init_layer)
                if i >= self.pruning_init_layer and mode != "conv":
                    layer.self_attn.report = (
                        ("scores" if mode == "prune" else "keys") if reduces_here else None)
                    layer.self_attn.key_log_size = None if sizes is None else sizes.log()
                x, (extra, layer_result) = layer(
                    x, self_attn_padding_mask=padding_mask, need_weights=False
                )
                if reduces_here:
                    with self.stopwatch():
                        x, padding_mask, positions, sizes = self._reduce(
                            x, extra, padding_mask, positions, sizes, rate)
                        # the steps return a transposed view; the layers after
                        # it ran up to 15 % slower on that (CPU, 10 s x 8)
                        x = x.contiguous()
                    pruned = True
                if i >= self.pruning_init_layer:
                    kept_indices.append(positions[:, : positions.size(1) - (0 if pruned else pad_length)])
                if i >= min_layer:
                    layer_results.append((x, None, layer_result))
            if i == tgt_layer:
                break
        for layer in self.layers[self.pruning_init_layer:]:
            if isinstance(layer.self_attn, ReceivedAttention):
                layer.self_attn.key_log_size = None  # do not hold on to this batch

        x = x.transpose(0, 1)  # B x T x C
        if pad_length > 0 and not pruned:
            # pruning already dropped the filler frames; otherwise undo as fairseq does
            x = x[:, :-pad_length]
            padding_mask = padding_mask[:, :-pad_length]
        self.last_kept_indices = kept_indices
        self.last_padding_mask = padding_mask
        return x, layer_results

    def _reduce(self, x, extra, padding_mask, positions, sizes, rate):
        """One reduction step on T x B x C states -> (x, mask, positions, sizes)."""
        if self.token_reduction == "prune":
            indices, padding_mask = select_frames(extra, padding_mask, rate)
            x = gather_frames(x.transpose(0, 1), indices).transpose(0, 1)
            return x, padding_mask, positions.gather(1, indices), sizes
        if self.token_reduction == "merge":
            if sizes is None:
                sizes = x.new_ones(x.size(1), x.size(0), dtype=torch.float32)
            x, sizes, positions, padding_mask = merge_tokens(
                x.transpose(0, 1), extra, sizes, positions, padding_mask, rate)
            return x.transpose(0, 1), padding_mask, positions, sizes
        x, new_mask = self.length_reduction(x.transpose(0, 1), padding_mask)
        positions = positions[:, :: self.length_reduction.stride]
        return x.transpose(0, 1), new_mask, positions, sizes


def _hubert_config(model_cfg) -> HubertConfig:
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

    ``extract_features`` returns the padding mask of the *pruned* frames, and
    ``last_kept_indices`` the original frame index of each kept frame, one
    B x T' tensor per pruning layer (padded positions hold filler indices).
    """

    def __init__(self, cfg: HubertConfig, task_cfg, dictionaries: List[Optional[Dictionary]],
                 schedule: KeepRateSchedule, pruning_init_layer: int = 0,
                 padding_mask_from_conv_lengths: bool = False, token_reduction: str = "prune",
                 conv_stride: int = 2):
        super().__init__(cfg, task_cfg, dictionaries)
        self.encoder = PrunedTransformerEncoder(cfg, schedule, pruning_init_layer,
                                                token_reduction, conv_stride)
        self.conv_layers = eval(cfg.conv_feature_layers)  # noqa: S307 (fairseq's format)
        self.padding_mask_from_conv_lengths = padding_mask_from_conv_lengths

    def frame_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Conv feature extractor output length for each input length."""
        lengths = num_samples
        for _, kernel, stride in self.conv_layers:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

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
            short = (valid < self.min_samples).nonzero()
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

    def extract_features(self, source, padding_mask=None, mask=False, ret_conv=False,
                         output_layer=None):
        source, padding_mask = self.check_source(source, padding_mask)
        features, _ = super().extract_features(
            source, padding_mask=padding_mask, mask=mask, ret_conv=ret_conv,
            output_layer=output_layer,
        )
        if ret_conv:
            return features, padding_mask
        new_mask = self.encoder.last_padding_mask
        if padding_mask is None and new_mask is not None and not new_mask.any():
            new_mask = None
        return features, new_mask

    @property
    def last_kept_indices(self) -> List[torch.Tensor]:
        return self.encoder.last_kept_indices

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
                        padding_mask_from_conv_lengths: bool = False,
                        token_reduction: str = "prune", conv_stride: int = 2,
                        **model_overrides) -> PrunedHubertModel:
    """Build (random weights) from a HuBERT ``cfg.model``. A schedule is used
    when ``pruning_max_rate``/``pruning_min_rate`` are given; ``model_overrides``
    replace config fields (dropout, encoder_layerdrop, ...) as fine-tuning does."""
    if pruning_max_rate is not None or pruning_min_rate is not None:
        schedule = KeepRateSchedule(
            pruning_max_rate if pruning_max_rate is not None else 1.0,
            pruning_min_rate if pruning_min_rate is not None else pruning_rate,
            pruning_schedule_updates,
        )
    else:
        schedule = KeepRateSchedule.fixed(pruning_rate)
    cfg = _hubert_config(model_cfg)
    for key, value in model_overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown HuBERT config field {key!r}")
        cfg[key] = value
    if task_cfg is None:
        task_cfg = OmegaConf.create({"sample_rate": 16000})
    return PrunedHubertModel(
        cfg, task_cfg, dictionaries or [None], schedule, pruning_init_layer,
        padding_mask_from_conv_lengths, token_reduction, conv_stride,
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
