"""One interface for shortening the HuBERT sequence between transformer layers.

A reduction declares
  * ``evidence(tokens, acting)``: what it needs from the attention of a layer
    (an ``AttentionEvidence`` the attention fills while it runs, or None),
  * ``acts_after(layer, init_layer, rate)``: whether it shortens after that layer,
  * ``reduce(tokens, evidence, rate, layer)``: the shorter ``Tokens``; the
    decision is made once and applied to states, padding mask, positions and
    sizes alike,
  * ``lengths_after(valid, run, rate)``: the same, as arithmetic (FLOP formula),
  * ``check(min_rate, init_layer, num_layers)``: settings it cannot run, refused
    when the model is built rather than at some later forward.
``acts_after_dropped_layer``: whether it also acts after a layer that layerdrop
skipped (the conv does, so training sees the length inference does; the
blind baselines do not, so their frame counts stay those of ``prune``).
A new reduction is one class with ``@register_reduction("name")``;
``--token-reduction``, the benchmark and the visualiser list ``REDUCTIONS``.
Timing goes through ``torch.profiler.record_function`` labels (``PROFILE_LABELS``).
"""
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import record_function

from ..errors import InputError
from .keep_rate import SCHEDULE_SETTINGS
from .selection import gather_frames, keep_counts, received_attention
from .settings import PRUNING_INIT_LAYER, TOKEN_REDUCTION, Setting

EVIDENCE_LABEL = "token_reduction.evidence"  # scoring inside the attention blocks
REDUCE_LABEL = "token_reduction.reduce"  # top-k / matching / conv + gathering
PROFILE_LABELS = (EVIDENCE_LABEL, REDUCE_LABEL)


def full_precision(t: Tensor):
    """Autocast off on ``t``'s device: scores and matching stay fp32 under --amp
    (autocast would run their matmuls in half precision)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


@dataclass(frozen=True)
class Tokens:
    """The sequence between two layers, batch first.

    x: B x T x C; padding_mask: B x T (True = padding) or None; positions:
    B x T original frame index of each token; sizes: B x T frames each token
    stands for (merging) or None (one each); spans: B x T x 2 first and last
    original frame of the run a token stands for (``adjacent``, ``fold``) or
    None (each token its own frame: first == last == position). outputs:
    one forward's named tensors a reduction keeps for its loss (the same dict
    from layer to layer; ``TokenReduction.loss``).
    """

    x: Tensor
    padding_mask: Optional[Tensor]
    positions: Tensor
    sizes: Optional[Tensor] = None
    spans: Optional[Tensor] = None
    outputs: Dict[str, Tensor] = field(default_factory=dict)

    def take(self, indices: Tensor, padding_mask: Tensor) -> "Tokens":
        """The tokens at ``indices`` (B x W), one gather for every field."""
        return replace(self, x=gather_frames(self.x, indices), padding_mask=padding_mask,
                       positions=self.positions.gather(1, indices),
                       sizes=None if self.sizes is None else self.sizes.gather(1, indices),
                       spans=None if self.spans is None else gather_frames(self.spans, indices))

    def span_bounds(self) -> Tensor:
        """B x T x 2: first and last original frame each token stands for."""
        if self.spans is not None:
            return self.spans
        return self.positions.unsqueeze(-1).expand(-1, -1, 2)


# --- what the attention hands over --------------------------------------------

class AttentionEvidence:
    """Filled by one layer's attention during its forward, read by the reduction.

    ``needs_probabilities``: the attention is computed explicitly and each block
    of fp32 probabilities (some rows, some of ``num_heads`` heads) goes to
    ``add_probabilities``.
    ``needs_keys``: the projected keys go to ``add_keys``. ``key_log_size``
    (B x T, or None) is added to the logits (ToMe's proportional attention).
    """

    needs_probabilities = False
    needs_keys = False

    def __init__(self, key_log_size: Optional[Tensor] = None):
        self.key_log_size = key_log_size

    def add_probabilities(self, probs: Tensor, rows: slice, num_heads: int,
                          key_padding_mask: Optional[Tensor]) -> None:
        pass

    def accumulate(self, probs: Tensor, rows: slice, num_heads: int,
                   key_padding_mask: Optional[Tensor]) -> None:
        pass

    def add_keys(self, keys: Tensor) -> None:
        pass


class ReceivedAttentionSum(AttentionEvidence):
    """B x T attention each key frame receives (head mean, valid queries), fp32."""

    needs_probabilities = True

    def __init__(self, key_log_size: Optional[Tensor] = None):
        super().__init__(key_log_size)
        self._rows: Dict[int, Tensor] = {}  # first row of a block -> its rows' sums

    def add_probabilities(self, probs, rows, num_heads, key_padding_mask):
        with record_function(EVIDENCE_LABEL):
            self.accumulate(probs, rows, num_heads, key_padding_mask)

    def accumulate(self, probs, rows, num_heads, key_padding_mask):
        """``add_probabilities`` without its profiler label (for a caller that
        labels a whole scoring pass). ``key_padding_mask`` marks the padded
        *queries* of this block: they are left out of the sum."""
        with full_precision(probs):
            # scores only choose indices: no autograd graph for them
            mask = None if key_padding_mask is None else key_padding_mask[rows]
            part = received_attention(probs.detach(), mask) * (probs.size(1) / num_heads)
            first = rows.start or 0
            self._rows[first] = self._rows[first] + part if first in self._rows else part

    @property
    def scores(self) -> Tensor:
        blocks = [self._rows[first] for first in sorted(self._rows)]
        return torch.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]


class KeyMean(AttentionEvidence):
    """B x T x d keys averaged over heads (token merging's similarity)."""

    needs_keys = True

    def __init__(self, key_log_size: Optional[Tensor] = None):
        super().__init__(key_log_size)
        self.keys: Optional[Tensor] = None

    def add_keys(self, keys):  # B x H x T x d
        with record_function(EVIDENCE_LABEL):
            self.keys = keys.detach().mean(dim=1)


# --- the reductions -----------------------------------------------------------

class TokenReduction(nn.Module):
    """Base: override ``reduce`` (and the other hooks where they differ).

    ``settings``: the reduction's own ``Setting``s; ``build`` gets each as a
    keyword argument of that name, checked and defaulted. What a reduction
    does may depend on them, so the tools ask a built one (the instance):
    ``uses_rate``, ``data_dependent_counts`` and ``own_setting``.
    A reduction with parameters keeps them as submodules (state-dict prefix
    ``encoder.length_reduction.``); one with a loss of its own puts what the
    loss needs in ``tokens.outputs`` during ``reduce`` and computes it in ``loss``.
    """

    name = None
    settings: Tuple[Setting, ...] = ()
    evidence_type: Optional[Type[AttentionEvidence]] = None
    uses_rate = True  # the keep rate sets how much it removes
    acts_after_dropped_layer = False
    data_dependent_counts = False  # its frame counts depend on the attention, not only n
    loss_names: Tuple[str, ...] = ()  # the terms ``loss`` returns, logged as NAME_loss
    statistic_names: Tuple[str, ...] = ()  # the counts ``statistics`` returns, logged summed

    @classmethod
    def build(cls, embed_dim: int, **settings) -> "TokenReduction":
        """From its own settings (checked, defaulted); ``embed_dim`` for one
        with parameters."""
        return cls(**settings)

    @property
    def own_setting(self) -> Optional[Tuple[str, float]]:
        """(setting name, value) that sets its counts instead of the keep rate
        (coverage: its share), or None where the keep rate does."""
        return None

    def acts_after(self, layer: int, init_layer: int, rate: float) -> bool:
        """Default: after every layer from ``init_layer`` on, while rate < 1."""
        return layer >= init_layer and rate < 1.0

    def check(self, min_rate: float, init_layer: int, num_layers: int) -> None:
        """Raise InputError at build time for settings this reduction cannot run."""

    def evidence(self, tokens: Tokens, acting: bool) -> Optional[AttentionEvidence]:
        return self.evidence_type() if acting and self.evidence_type else None

    def reduce(self, tokens: Tokens, evidence: Optional[AttentionEvidence],
               rate: float, layer: int) -> Tokens:
        raise NotImplementedError

    def lengths_after(self, valid: int, run: int, rate: float) -> Tuple[int, int]:
        """(valid frames, sequence length) after one step, equal-length rows."""
        k = int(keep_counts(torch.tensor([valid]), rate)[0])
        return k, k

    def flops(self, run: int, embed_dim: int) -> int:
        """Multiply-add FLOPs of one step on ``run`` frames (besides scoring)."""
        return 0

    def loss(self, outputs: Dict[str, Tensor], sample: dict) -> Dict[str, Tensor]:
        """Loss terms named in ``loss_names``, weighted and summed over the
        batch as the translation loss is, that the criterion adds to it and
        logs; ``outputs``: what ``reduce`` kept in ``tokens.outputs`` during
        this forward (called only when it kept something), ``sample``: the
        fairseq batch (targets, and ``transcript`` where the task gives it)."""
        return {}

    def statistics(self, outputs: Dict[str, Tensor], sample: dict) -> Dict[str, int]:
        """Counts named in ``statistic_names`` that the training log sums (as
        ``reduction_NAME``), from the same ``outputs`` and ``sample`` as ``loss``."""
        return {}


def refuse_keep_rate(min_rate: float, counts_from: str) -> None:
    """``check`` of a reduction whose counts come from elsewhere (``counts_from``
    says where): a keep rate below 1 would be silently ignored."""
    if min_rate < 1.0:
        raise InputError(f"{counts_from}: the keep rate does not apply to it, got a rate of "
                         f"{min_rate} (leave --pruning-rate unset or 1)")


class ActingOnceWithWeights(TokenReduction):
    """Base of a reduction with weights of the encoder's width that acts once,
    after layer ``pruning_init_layer`` (conv, ctc), layerdrop or not, so
    training sees the lengths inference does."""

    acts_after_dropped_layer = True

    @classmethod
    def build(cls, embed_dim, **settings):
        return cls(embed_dim, **settings)

    def acts_after(self, layer, init_layer, rate):
        return layer == init_layer

    def check(self, min_rate, init_layer, num_layers):
        if init_layer >= num_layers:
            raise InputError(f"the {self.name} reduction acts after layer pruning_init_layer, "
                             f"which must be < {num_layers} for a {num_layers}-layer encoder, "
                             f"got {init_layer}")


# --- the registry -------------------------------------------------------------

# settings of the encoder whatever its reduction
ENCODER_SETTINGS = (TOKEN_REDUCTION, PRUNING_INIT_LAYER) + SCHEDULE_SETTINGS
ENCODER_SETTING_NAMES = frozenset(s.name for s in ENCODER_SETTINGS)
REDUCTIONS: Dict[str, Type[TokenReduction]] = {}
# every reduction's own settings by name (a shared one is one object)
REDUCTION_SETTINGS: Dict[str, Setting] = {}


def register_reduction(name: str):
    def register(cls):
        if name in REDUCTIONS:
            raise ValueError(f"token reduction {name!r} is already registered")
        for setting in cls.settings:
            known = REDUCTION_SETTINGS.get(setting.name, setting)
            if known is not setting or setting.name in ENCODER_SETTING_NAMES:
                raise ValueError(f"setting {setting.name!r} of token reduction {name!r} is "
                                 "declared elsewhere too: list that declaration instead")
        cls.name = name
        REDUCTIONS[name] = cls
        REDUCTION_SETTINGS.update((s.name, s) for s in cls.settings)
        return cls
    return register


def readers_of(setting_name: str) -> List[str]:
    return [n for n, c in REDUCTIONS.items() if any(s.name == setting_name for s in c.settings)]


def build_reduction(name: str, embed_dim: int, **given) -> TokenReduction:
    """The registered reduction ``name`` with its own settings from ``given``
    (missing ones at their defaults). Every value is checked; a setting of
    another reduction given a value other than its default is refused, naming
    who reads it: a typo in --token-reduction would otherwise train another
    method."""
    TOKEN_REDUCTION.check(name)
    cls = REDUCTIONS[name]
    own = {s.name: s for s in cls.settings}
    for key, value in given.items():
        if key in own:
            continue
        if key not in REDUCTION_SETTINGS:
            raise InputError(f"{key!r} is not a setting of any token reduction (known: "
                             f"{sorted(REDUCTION_SETTINGS)})")
        # checked whoever reads it, as its flag is
        value = REDUCTION_SETTINGS[key].check(value)
        if value is not None and value != REDUCTION_SETTINGS[key].default:
            raise InputError(f"{key} {value!r} is read by token_reduction "
                             f"{' or '.join(readers_of(key))}, not by {name!r}")
    return cls.build(embed_dim, **{key: setting.check(given.get(key, setting.default))
                                   for key, setting in own.items()})


def reduction_defaults(name: str, **own) -> Dict[str, object]:
    """Every reduction's settings at their defaults, ``token_reduction`` set to
    ``name`` and ``own`` (its own settings) given: the overrides that switch a
    trained model to another reduction, whatever the checkpoint's held."""
    values = {key: setting.default for key, setting in REDUCTION_SETTINGS.items()}
    values.update(own, token_reduction=name)
    return values


def default_reduction(name: str) -> Optional[TokenReduction]:
    """Reduction ``name`` built at its default settings (arithmetic only: tiny
    weights), or None where it needs a setting of its own (coverage's share):
    what a tool that varies the keep rate can ask of a reduction it has no
    model of."""
    try:
        return build_reduction(name, 1)
    except InputError:
        return None


def follows_rate(reduction: Optional[TokenReduction]) -> bool:
    """Whether ``reduction``'s frame counts follow the keep rate alone."""
    return reduction is not None and reduction.uses_rate and not reduction.data_dependent_counts
