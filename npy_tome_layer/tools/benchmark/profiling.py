"""Where a forward's time goes: torch.profiler over one whole pass of fairseq's
dense model and of each reduction, split into attention, scoring
(``EVIDENCE_LABEL``), selection and gathering (``REDUCE_LABEL``), the key
mask the attention gets, and the rest (front end, projections, FFN, norms).

The attention modules and the key-mask helper carry no label of their own:
for the profiled pass only, forward hooks put one around each layer's
``self_attn`` and the encoder's ``attention_padding_mask`` is wrapped in
one. Scoring runs inside the attention, so the attention's share is its time
less the scoring nested in it.
"""
import contextlib
from typing import Dict, List

import torch
from torch.profiler import record_function

from ...encoder import pruned_hubert
from ...evaluation.timing import timed_pass
from ...reduction import EVIDENCE_LABEL, REDUCE_LABEL
from .measuring import autocast

ATTENTION_LABEL = "benchmark.attention"
MASK_LABEL = "benchmark.mask"
CATEGORIES = ("attention", "scoring", "selection/gather", "mask", "other")


@contextlib.contextmanager
def labelled_attention(model):
    """A profiler label around every layer's self-attention, for the block."""
    open_labels = []

    def enter(module, args):
        open_labels.append(record_function(ATTENTION_LABEL).__enter__())

    def leave(module, args, output):
        open_labels.pop().__exit__(None, None, None)

    handles = [h for layer in model.encoder.layers
               for h in (layer.self_attn.register_forward_pre_hook(enter),
                         layer.self_attn.register_forward_hook(leave))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def labelled_mask():
    """A profiler label around the key mask each acting layer's attention gets."""
    plain = pruned_hubert.attention_padding_mask

    def labelled(padding_mask):
        with record_function(MASK_LABEL):
            return plain(padding_mask)

    pruned_hubert.attention_padding_mask = labelled
    try:
        yield
    finally:
        pruned_hubert.attention_padding_mask = plain


def _time(event, cuda: bool) -> float:
    return (event.device_time_total if cuda else event.cpu_time_total) / 1e6


def _nested(event, name: str, cuda: bool) -> float:
    """Seconds under ``name`` among the descendants of ``event``."""
    total = 0.0
    for child in event.cpu_children:
        total += _time(child, cuda) if child.name == name else _nested(child, name, cuda)
    return total


def _outermost(event) -> bool:
    """Whether no enclosing event has the same label (the scoring label
    nests in itself on the fused path)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == event.name:
            return False
        parent = parent.cpu_parent
    return True


def split_times(events, total_s: float, cuda: bool) -> Dict[str, float]:
    """Seconds per category from the profiler's events of one pass."""
    spent = {c: 0.0 for c in CATEGORIES}
    for event in events:
        if not _outermost(event):
            continue
        if event.name == ATTENTION_LABEL:
            inner = _nested(event, EVIDENCE_LABEL, cuda)
            spent["attention"] += _time(event, cuda) - inner
        elif event.name == EVIDENCE_LABEL:
            spent["scoring"] += _time(event, cuda)
        elif event.name == REDUCE_LABEL:
            spent["selection/gather"] += _time(event, cuda)
        elif event.name == MASK_LABEL:
            spent["mask"] += _time(event, cuda)
    spent["other"] = max(0.0, total_s - sum(spent.values()))
    return spent


def profile_pass(model, audio, precision: str) -> Dict[str, float]:
    """Seconds per category of one profiled ``extract_features`` pass (after
    one unprofiled warm-up pass)."""
    cuda = audio.is_cuda
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.inference_mode(), autocast(audio.device, precision), \
            labelled_attention(model), labelled_mask():
        timed_pass(model, audio)
        with torch.profiler.profile(activities=activities) as prof:
            total = timed_pass(model, audio)
    spent = split_times(prof.events(), total, cuda)
    spent["total"] = total
    return spent


def profile_markdown(rows: List[Dict]) -> str:
    out = ["| model | keep rate | ms (profiled) | " + " | ".join(CATEGORIES) + " |",
           "| --- | --- | --- | " + " | ".join("---" for _ in CATEGORIES) + " |"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['rate']:g} | {r['total'] * 1000:.0f} | "
                   + " | ".join(f"{100 * r[c] / r['total']:.1f} %" for c in CATEGORIES) + " |")
    return "\n".join(out)
