"""HuBERT's conv front end, batch-invariant: each row's statistics from its
own samples, so a padded row's features equal the same audio alone."""
import contextlib
import contextvars
from typing import Optional

import torch
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
        return valid_frames_group_norm(x, conv_output_lengths(num_samples, self.input_convs),
                                       self.num_groups, self.weight, self.bias, self.eps)


def valid_frames_group_norm(x, frames, num_groups: int, weight=None, bias=None,
                            eps: float = 1e-5):
    """GroupNorm of x (B x C x T) whose statistics in row b come from its first
    ``frames[b]`` frames only, in fp32, for all rows at once: per group, the
    mean and the biased variance about it over those frames (two passes, so a
    row equals itself alone through the fused kernel to float rounding).
    Frames past a row's end come out 0 (no valid frame reads them); an empty
    row is all 0. Returns x's dtype."""
    bsz, channels, length = x.shape
    per_group = channels // num_groups

    def per_channel(stat):  # B x G -> B x C x 1
        return stat.unsqueeze(2).expand(-1, -1, per_group).reshape(bsz, channels, 1)

    valid = (torch.arange(length, device=x.device) < frames.unsqueeze(1)).float().unsqueeze(1)
    xf = x.float()
    count = (frames.clamp(min=1) * per_group).float().unsqueeze(1)  # B x 1
    # sums over time as products with the valid frames' indicator, and the
    # squares as norms: passes over x that write nothing its size
    sums = torch.bmm(xf, valid.transpose(1, 2)).reshape(bsz, num_groups, per_group).sum(2)
    centered = (xf - per_channel(sums / count)).mul_(valid)  # 0 past the row's end
    squares = torch.linalg.vector_norm(centered, dim=2).square()
    variance = squares.reshape(bsz, num_groups, per_group).sum(2) / count
    scale = per_channel(torch.rsqrt(variance + eps))
    if weight is not None:
        scale = scale * weight.float().unsqueeze(1)
    # in place where no gradient is taken (autograd keeps ``centered`` for the
    # backward otherwise): a fresh tensor the size of x costs as much as the
    # norm's arithmetic on the CPU (its pages are faulted in)
    tracked = centered.requires_grad or scale.requires_grad
    out = centered * scale if tracked else centered.mul_(scale)
    if bias is not None:  # in place: the product's backward needs its inputs only
        out = out.addcmul_(bias.float()[None, :, None], valid)
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
