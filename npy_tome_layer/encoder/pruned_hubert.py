"""HuBERT whose transformer shortens the sequence between layers: the fairseq
glue around the method in ``reduction/``.

* ``PrunedTransformerEncoder`` overrides only ``extract_features``, the layer
  loop: after the layers the chosen reduction acts on, it shortens states,
  mask and positions in one decision (``reduction.reduce``), with evidence the
  layer's attention filled (``attention.py``). It returns the padding mask and
  kept indices with the states.
* ``PrunedHubertModel`` overrides ``forward`` (the feature path), so
  ``forward(features_only=True)``, ``extract_features`` and the ST encoder all
  return masks aligned with their features, and makes the conv front end
  batch-invariant (``front_end.py``) unless asked for fairseq's padding.
  Parameter names are fairseq's (a reduction's own are under ``REDUCTION_PREFIX``),
  so official state dicts and older ST checkpoints load as-is.
"""
import contextlib
import logging
from dataclasses import replace
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data.dictionary import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.models.wav2vec.utils import pad_to_multiple
from fairseq.models.wav2vec.wav2vec2 import TransformerEncoder
from fairseq.utils import index_put
from omegaconf import OmegaConf
from torch.profiler import record_function

from ..errors import InputError
from ..io.audio import SAMPLE_RATE
from ..io.checkpoints import checkpoint_path, check_shapes, checkpoint_task, load_checkpoint
from ..reduction import (ENCODER_SETTINGS, REDUCE_LABEL, REDUCTION_SETTINGS, KeepRateSchedule,
                         Tokens, TokenReduction, build_reduction)
from ..reduction.interface import ENCODER_SETTING_NAMES
from ..reduction.keep_rate import SCHEDULE_SETTINGS, check_rate_beside_schedule
from ..reduction.settings import settings_help
from .attention import ReducibleAttention, attention_padding_mask, collecting
from ..values import is_whole_number
from .config import hubert_config, with_overrides
from .front_end import conv_output_lengths, make_front_end_batch_invariant, reading_valid_samples

logger = logging.getLogger(__name__)

# state-dict names of a reduction's own weights (the conv's, a learned head's):
# not in HuBERT files, so they may be missing when one is loaded
REDUCTION_PREFIX = "encoder.length_reduction."


class EncoderResult(NamedTuple):
    """Second output of ``PrunedTransformerEncoder`` (fairseq's is layer_results)."""

    padding_mask: Optional[torch.Tensor]  # B x T' for the returned states
    kept_indices: List[torch.Tensor]  # original frame index per kept position, per layer >= init
    layer_results: list
    # per entry of kept_indices, B x T' x 2: first and last original frame each
    # position stands for (a run for adjacent / fold; first == last == position else)
    spans: List[torch.Tensor]
    # what the reduction kept for its loss (``TokenReduction.loss``); empty for most
    reduction_outputs: Dict[str, torch.Tensor]


class PrunedTransformerEncoder(TransformerEncoder):
    """wav2vec2/HuBERT transformer that shortens the sequence from layer
    ``pruning_init_layer`` on with a ``TokenReduction`` (kept as
    ``length_reduction``: a reduction's parameters are under that prefix).
    Made from the encoder fairseq built (``shorten_with``), as the attention
    is: the layers and their weights are fairseq's own."""

    @classmethod
    def shorten_with(cls, encoder: TransformerEncoder, schedule: KeepRateSchedule,
                     pruning_init_layer: int, reduction: TokenReduction
                     ) -> "PrunedTransformerEncoder":
        """``encoder`` itself, from now on shortening with ``reduction``
        (settings checked against the model by ``check_settings``)."""
        encoder.__class__ = cls  # adds behaviour; the state below is all it adds
        encoder.schedule = schedule
        encoder.pruning_init_layer = pruning_init_layer
        encoder.length_reduction = reduction
        encoder.num_updates = 0
        for layer in encoder.layers:
            layer.self_attn.__class__ = ReducibleAttention  # adds behaviour, no state
        return encoder

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
        setting a trained model evaluates at. A reduction whose own setting
        sets its counts gives that number instead (coverage: the share)."""
        own = self.length_reduction.own_setting
        return (self.length_reduction.name, self.schedule.min_rate if own is None else own[1],
                self.pruning_init_layer)

    def shortens(self) -> bool:
        """Whether the sequence leaves shorter than it came in, at the current rate."""
        return any(self.length_reduction.acts_after(i, self.pruning_init_layer, self.keep_rate)
                   for i in range(len(self.layers)))

    def extract_features(self, x, padding_mask=None, tgt_layer=None, min_layer=0,
                         corpus_key=None):
        """fairseq's layer loop plus the reduction -> (x, EncoderResult)."""
        x, padding_mask, pad_length = self._layer_input(x, padding_mask)
        positions = torch.arange(x.size(0), device=x.device).unsqueeze(0).expand(x.size(1), -1)
        # the states as the reduction sees them: batch first, original frame index per
        # position, and this forward's own outputs of the reduction (for its loss)
        tokens = Tokens(x.transpose(0, 1), padding_mask, positions, outputs={})
        kept_indices, spans, layer_results, shortened = [], [], [], False
        for i, layer in enumerate(self.layers):
            # draw like fairseq does, so RNG streams match the dense encoder
            dropout_probability = np.random.random() if self.layerdrop > 0 else 1
            runs = not self.training or dropout_probability > self.layerdrop
            x, tokens, layer_result, reduced = self._layer_step(i, layer, x, tokens, runs)
            shortened = shortened or reduced
            if i >= self.pruning_init_layer and (runs or reduced):
                # before any reduction the filler frames are still there
                width = tokens.positions.size(1) - (0 if shortened else pad_length)
                kept_indices.append(tokens.positions[:, :width])
                spans.append(tokens.span_bounds()[:, :width])
            if runs and i >= min_layer:
                layer_results.append((x, None, layer_result))
            if i == tgt_layer:
                break

        x, padding_mask = x.transpose(0, 1), tokens.padding_mask  # B x T x C
        if pad_length > 0 and not shortened:
            # a reduction already dropped the filler frames; otherwise undo as fairseq does
            x = x[:, :-pad_length]
            padding_mask = padding_mask[:, :-pad_length]
        return x, EncoderResult(padding_mask, kept_indices, layer_results, spans,
                                tokens.outputs)

    def _layer_input(self, x, padding_mask):
        """fairseq's steps before the first layer: zeroed padding, positional
        conv, layer norm, padding to ``required_seq_len_multiple``, dropout ->
        (x T x B x C, padding mask, frames of that padding)."""
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
        return x.transpose(0, 1), padding_mask, pad_length

    def _layer_step(self, i: int, layer, x, tokens: Tokens, runs: bool):
        """Layer ``i`` (unless layerdrop skips it) and the reduction after it
        (where it acts) -> (x T x B x C, tokens, layer result, whether reduced)."""
        rate, reduction = self.keep_rate, self.length_reduction
        acting = reduction.acts_after(i, self.pruning_init_layer, rate)
        evidence = layer_result = None
        if runs:
            if i >= self.pruning_init_layer:
                evidence = reduction.evidence(tokens, acting)
            with collecting(evidence):
                x, (_, layer_result) = layer(
                    x, self_attn_padding_mask=attention_padding_mask(tokens.padding_mask),
                    need_weights=False)
            tokens = replace(tokens, x=x.transpose(0, 1))
        if not (acting and (runs or reduction.acts_after_dropped_layer)):
            return x, tokens, layer_result, False
        with record_function(REDUCE_LABEL):
            tokens = reduction.reduce(tokens, evidence, rate, i)
            # the steps return a transposed view; the layers after it ran up
            # to 15 % slower on that (CPU, 10 s x 8)
            x = tokens.x.transpose(0, 1).contiguous()
        return x, tokens, layer_result, True


def check_settings(cfg: HubertConfig, schedule: KeepRateSchedule, pruning_init_layer,
                   reduction: TokenReduction) -> int:
    """The init layer, or InputError for settings the model cannot run, before
    anything is built."""
    num_layers = cfg.encoder_layers
    if not is_whole_number(pruning_init_layer) or not 0 <= pruning_init_layer <= num_layers:
        raise InputError(f"pruning_init_layer must be a whole number in [0, {num_layers}] for "
                         f"a {num_layers}-layer encoder, got {pruning_init_layer!r}")
    if cfg.layer_type != "transformer" or cfg.checkpoint_activations:
        raise InputError("frame pruning supports layer_type='transformer' without "
                         f"checkpoint_activations, got layer_type={cfg.layer_type!r}, "
                         f"checkpoint_activations={cfg.checkpoint_activations}")
    reduction.check(schedule.min_rate, pruning_init_layer, num_layers)
    return int(pruning_init_layer)


def largest_sample(dtype: torch.dtype) -> float:
    """The largest sample magnitude the model takes in ``dtype``: the square root
    of the dtype's largest value (1.8e19 in float32 and bfloat16, 256 in
    float16). Audio is in [-1, 1]; near the dtype's limit the front end's
    convolution overflows while the sample itself is finite (3.3e38 in
    bfloat16), and the root leaves that margin for any HuBERT's weights."""
    return torch.finfo(dtype).max ** 0.5


class PrunedHubertModel(HubertModel):
    """HubertModel with ``PrunedTransformerEncoder``.

    ``forward(features_only=True)`` returns ``x`` with the ``padding_mask`` of
    the frames that are left, ``features`` (conv front end) with
    ``features_padding_mask``, and ``kept_indices``: the original frame index
    of each kept frame, one B x T' tensor per layer from the init layer on
    (padded positions hold filler indices), and ``spans`` beside it, B x T' x 2:
    the first and last original frame each position stands for;
    ``reduction_outputs``: what the reduction keeps for its loss.
    """

    def __init__(self, cfg: HubertConfig, task_cfg, dictionaries: List[Optional[Dictionary]],
                 schedule: KeepRateSchedule, pruning_init_layer: int,
                 reduction: TokenReduction, fairseq_padding: bool = False,
                 padding_mask_from_conv_lengths: bool = False):
        pruning_init_layer = check_settings(cfg, schedule, pruning_init_layer, reduction)
        super().__init__(cfg, task_cfg, dictionaries)
        PrunedTransformerEncoder.shorten_with(self.encoder, schedule, pruning_init_layer,
                                              reduction)
        self.conv_layers = eval(cfg.conv_feature_layers)  # noqa: S307 (fairseq's format)
        # batch-invariant unless fairseq_padding: front-end statistics and the
        # frame mask come from each row's own length
        self.fairseq_padding = fairseq_padding
        self.padding_mask_from_conv_lengths = padding_mask_from_conv_lengths or not fairseq_padding
        if not fairseq_padding:
            make_front_end_batch_invariant(self.feature_extractor, self.conv_layers)

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
        if not torch.is_tensor(source):
            raise InputError(f"source must be a torch tensor (B x samples), got "
                             f"{type(source).__name__}: use torch.as_tensor(...)")
        for name, tensor in (("source", source), ("padding_mask", padding_mask)):
            if torch.is_tensor(tensor) and tensor.is_meta:
                # torch's own error ("item() cannot be called on meta tensors") names neither
                raise InputError(f"{name} is on the meta device (no data): load or create it "
                                 "with real values (to_empty(), or a tensor on cpu/cuda)")
        if source.dim() == 1:
            source = source.unsqueeze(0)
            padding_mask = None if padding_mask is None else padding_mask.reshape(1, -1)
        if source.dim() != 2 or source.size(0) == 0:
            raise InputError("source must be B x samples with B >= 1 (or one utterance of "
                             f"samples), got shape {tuple(source.shape)}")
        if source.size(1) == 1 and source.size(0) >= self.min_samples:
            raise InputError(f"source has shape {tuple(source.shape)}, samples x 1: pass "
                             "B x samples (source.T, or source[:, 0] for one utterance)")
        if not source.is_floating_point():
            dtype = str(source.dtype).replace("torch.", "")
            raise InputError(f"source is {dtype} PCM: convert to float in [-1, 1] "
                             "(samples / 32768)")
        if source.size(1) < self.min_samples:
            raise InputError(f"source has {source.size(1)} samples: HuBERT needs at least "
                             f"{self.min_samples} (one frame)")
        if padding_mask is not None:
            if not torch.is_tensor(padding_mask):
                kind = type(padding_mask)
                given = (kind.__name__ if kind.__module__ == "builtins"
                         else f"{kind.__module__}.{kind.__name__}")
                raise InputError(f"padding_mask must be a bool tensor shaped like source "
                                 f"{tuple(source.shape)}, got {given}: use "
                                 "torch.as_tensor(padding_mask, dtype=torch.bool)")
            if padding_mask.shape != source.shape or padding_mask.dtype != torch.bool:
                raise InputError(f"padding_mask must be a bool tensor shaped like source "
                                 f"{tuple(source.shape)}, got {padding_mask.dtype} "
                                 f"{tuple(padding_mask.shape)}")
        dtype = self.layer_norm.weight.dtype
        cast = source.to(dtype)
        # non-finite samples, as given and in the model's dtype (a large one overflows a half
        # model), and samples the front end's convolution would overflow (NaN fails <=);
        # padding is never read as speech
        bad_given = ~torch.isfinite(source)
        bad_cast = ~(cast.abs() <= largest_sample(dtype))
        unpadded = short = None
        if padding_mask is not None:
            bad_given, bad_cast = bad_given & ~padding_mask, bad_cast & ~padding_mask
            # each row is read as its first n samples: padding anywhere else (on the left, or
            # a hole) would be read as speech and the row's end dropped
            unpadded = padding_mask[:, :-1] & ~padding_mask[:, 1:]
            valid = (~padding_mask).sum(dim=1)
            # an all-padding row is a caller's empty utterance: it comes back fully masked
            short = (valid > 0) & (valid < self.min_samples)
        found = [t.any() for t in (unpadded, short, bad_given, bad_cast) if t is not None]
        if any(torch.stack(found).tolist()):  # the checks' one host read; details on failure
            self._refuse_source(source, padding_mask, unpadded, short, bad_given, bad_cast)
        return cast, padding_mask

    def _refuse_source(self, source, padding_mask, unpadded, short, bad_given, bad_cast):
        if unpadded is not None and bool(unpadded.any()):
            row, sample = (int(i) for i in unpadded.nonzero()[0])
            raise InputError(f"row {row} of padding_mask has a valid sample after padding "
                             f"(at sample {sample + 1}): a row must be its valid samples, "
                             "then padding (right-padded, as fairseq's collater pads)")
        if short is not None and bool(short.any()):
            row = int(short.nonzero()[0])
            raise InputError(f"row {row} of source has {int((~padding_mask[row]).sum())} valid "
                             f"samples: HuBERT needs at least {self.min_samples} (one frame)")
        bad = bad_given if bool(bad_given.any()) else bad_cast
        row = int(bad.any(dim=1).nonzero()[0])
        dtype = self.layer_norm.weight.dtype
        dtype_name = str(dtype).replace("torch.", "")
        if bad is bad_cast and bool(torch.isfinite(source.to(dtype)[row][bad[row]]).all()):
            largest = float(source[row][bad[row]].abs().max())
            raise InputError(f"source has a sample of magnitude {largest:.4g} in row {row}, "
                             f"beyond the {largest_sample(dtype):.4g} the model's {dtype_name} "
                             "front end takes without overflowing: audio belongs in [-1, 1]")
        where = "" if bad is bad_given else (
            f" once cast to the model's {dtype_name} (largest {torch.finfo(dtype).max:.4g}): "
            "audio belongs in [-1, 1]")
        raise InputError(f"source has non-finite samples (NaN or inf) in row {row}{where}")

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
        layers = len(self.encoder.layers)
        if output_layer is not None and not (is_whole_number(output_layer) and
                                             1 <= output_layer <= layers):
            raise InputError(f"output_layer must be a layer number in [1, {layers}] (None: the "
                             f"last), got {output_layer!r}")
        if not features_only:
            if self.encoder.shortens():
                raise InputError("HuBERT's pre-training loss needs every frame: call with "
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
        return {"x": x, "padding_mask": x_mask, "features": features,
                "features_padding_mask": padding_mask, "kept_indices": result.kept_indices,
                "spans": result.spans, "reduction_outputs": result.reduction_outputs}

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
                        fairseq_padding: bool = False,
                        padding_mask_from_conv_lengths: bool = False,
                        **settings) -> PrunedHubertModel:
    """Build (random weights) from a HuBERT ``cfg.model``. ``settings``: the
    reduction's (listed below: the keep rate, its schedule, the reduction and
    its own settings, each checked as its flag is) and HuBERT config fields to
    replace (dropout, encoder_layerdrop, ...), as fine-tuning does.

    Batch-invariant by default: an utterance's features do not depend on the
    other rows of its batch. ``fairseq_padding=True`` reproduces fairseq's
    padded front end exactly (GroupNorm statistics over the padding, a frame
    valid if any of its samples is; ``padding_mask_from_conv_lengths`` then
    changes only the mask).
    """
    reduction_settings = {k: settings.pop(k) for k in list(settings)
                          if k in ENCODER_SETTING_NAMES or k in REDUCTION_SETTINGS}
    encoder_values = {s.name: reduction_settings.pop(s.name, s.default)
                      for s in ENCODER_SETTINGS}
    schedule = KeepRateSchedule.from_arguments(
        *(encoder_values[s.name] for s in SCHEDULE_SETTINGS))
    cfg = with_overrides(hubert_config(model_cfg), settings)
    reduction = build_reduction(encoder_values["token_reduction"], cfg.encoder_embed_dim,
                                **reduction_settings)
    if task_cfg is None:
        task_cfg = OmegaConf.create({"sample_rate": SAMPLE_RATE})
    return PrunedHubertModel(cfg, task_cfg, dictionaries or [None], schedule,
                             encoder_values["pruning_init_layer"], reduction,
                             fairseq_padding, padding_mask_from_conv_lengths)


build_pruned_hubert.__doc__ += settings_help(ENCODER_SETTINGS + tuple(REDUCTION_SETTINGS.values()))


def load_hubert_weights(model: PrunedHubertModel, weights: dict, path: str) -> None:
    """Strict load of official weights; only a reduction's own (new, not in
    any HuBERT file) may be missing."""
    check_shapes(model.state_dict(), weights, path)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith(REDUCTION_PREFIX)]
    if missing or unexpected:
        raise InputError(f"{path}: HuBERT weights do not fit its own config: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")


def load_pruned_hubert(path, **kwargs) -> PrunedHubertModel:
    """Load an official-format HuBERT checkpoint (``cfg``, ``model``,
    ``task_state``) as a pruned model in eval mode. The task's label files
    are not needed: dictionaries come from ``task_state`` when present.
    Keyword arguments go to ``build_pruned_hubert`` (the reduction's settings,
    e.g. ``pruning_rate=0.9``, and config overrides such as ``encoder_layerdrop``).
    ``path``: a str, bytes or os.PathLike."""
    check_rate_beside_schedule(kwargs, kwargs)
    path = checkpoint_path(path)
    state = load_checkpoint(path)
    if "cfg" not in state or state["cfg"] is None or "model" not in state:
        raise InputError(f"{path}: not a fairseq HuBERT checkpoint (needs 'cfg' and 'model')")
    task = checkpoint_task(state)
    if task not in (None, "hubert_pretraining"):
        raise InputError(f"{path}: a checkpoint of task {task!r}, not a HuBERT file (an ST "
                         "checkpoint's HuBERT: npy_tome_layer.st.model.hubert_from_st_checkpoint)")
    dictionaries = (state.get("task_state") or {}).get("dictionaries")
    weights = dict(state["model"])
    if not dictionaries:
        weights.pop("label_embs_concat", None)
    model = build_pruned_hubert(state["cfg"]["model"], state["cfg"].get("task"), dictionaries,
                                **kwargs)
    load_hubert_weights(model, weights, path)
    return model.eval()
