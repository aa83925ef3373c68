"""HuBERT's conv front end, batch-invariant: each row's statistics from its
own samples, so a padded row's features equal the same audio alone."""
import contextlib
import contextvars
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.modules import Fp32GroupNorm

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
        frames = conv_output_lengths(num_samples, self.input_convs).clamp(min=0).tolist()
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = x.new_zeros(x.shape)  # frames past a row's end stay 0: no valid frame reads them
        for row, n in enumerate(frames):
            if n > 0:  # each row alone, through the fused kernel: the same as the row unpadded
                out[row, :, :n] = F.group_norm(x[row:row + 1, :, :n].float(), self.num_groups,
                                               weight, bias, self.eps)[0]
        return out


def make_front_end_batch_invariant(feature_extractor, conv_layers) -> None:
    """Give each GroupNorm of fairseq's conv front end the valid-frames forward."""
    convs = []
    for block, (_, kernel, stride) in zip(feature_extractor.conv_layers, conv_layers):
        convs.append((kernel, stride))
        for module in block.modules():
            if type(module) is Fp32GroupNorm:
                module.__class__ = ValidFramesGroupNorm  # adds behaviour
                module.input_convs = tuple(convs)
