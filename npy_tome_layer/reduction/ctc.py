"""``ctc``: the transcript decides which frames are one token (CTC-based
compression, Gaido et al., EACL 2021).

A CTC head (a linear layer to the CTC vocabulary, blank = 0) reads the states
after HuBERT layer ``pruning_init_layer``. There, consecutive valid frames
whose most probable label is the same become one token: their plain mean
(``ctc_merge average``) or their mean weighted by each frame's probability of
that label (``weighted``); runs of blanks stay as their own tokens or are
dropped (``ctc_blanks``; dropping never empties a row). ``ctc_merge none``
keeps every frame: the dense model trained with the same CTC loss, the
control that separates what the loss gives from what the compression costs.
The head is trained by the CTC loss on the transcript (``loss``, weight
``ctc_weight``); at inference nothing but audio is needed.

The decision is pure tensor work over the whole batch (``runs.py``): no
per-row loop, one host sync (the new width) per forward, two with dropped blanks.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..values import NON_NEGATIVE, whole_number_rule
from .interface import (ActingOnceWithWeights, Tokens, full_precision, refuse_keep_rate,
                        register_reduction)
from .runs import Runs, merge_runs, runs_from_starts
from .selection import valid_lengths
from .settings import Setting

BLANK = 0  # the CTC blank's index in the head's output
MERGES = ("average", "weighted", "none")
BLANK_RUNS = ("keep", "drop")


def ctc_runs(labels: Tensor, padding_mask: Optional[Tensor]) -> Runs:
    """The runs of consecutive valid frames with the same label (B x T), in
    time order; padding is never part of a run of speech."""
    bsz, tsz = labels.shape
    starts = torch.ones_like(labels, dtype=torch.bool)
    starts[:, 1:] = labels[:, 1:] != labels[:, :-1]
    if padding_mask is not None:
        starts |= padding_mask
    n = valid_lengths(padding_mask, bsz, tsz, labels.device)
    valid = torch.arange(tsz, device=labels.device).unsqueeze(0) < n.unsqueeze(1)
    counts = (starts & valid).sum(dim=1)
    return runs_from_starts(starts, counts, max(1, int(counts.max())) if bsz else 1)


def without_blank_runs(tokens: Tokens, run_labels: Tensor) -> Tokens:
    """``tokens`` (one per run) without the runs labelled blank, in time
    order; a row whose runs are all blank keeps them."""
    valid = ~tokens.padding_mask
    keep = valid & (run_labels != BLANK)
    keep = torch.where(keep.any(dim=1, keepdim=True), keep, valid)
    width = keep.size(1)
    slot = torch.arange(width, device=keep.device).unsqueeze(0)
    # kept slots first, each group in time order
    order = torch.where(keep, slot, slot + width).argsort(dim=1)
    counts = keep.sum(dim=1)
    new_width = max(1, int(counts.max()))
    indices = order[:, :new_width]
    return tokens.take(indices, slot[:, :new_width] >= counts.unsqueeze(1))


def _choice(name: str, choices, default: str, help_text: str) -> Setting:
    return Setting(name, None, default, help_text, choices=lambda: choices)


@register_reduction("ctc")
class CTCCompression(ActingOnceWithWeights):
    settings = (
        Setting("ctc_vocab_size", whole_number_rule(2), None,
                "--token-reduction ctc: outputs of the CTC head, blank included (set from "
                "the task's CTC vocabulary, --ctc-vocab, when the model is built)"),
        _choice("ctc_merge", MERGES, "average",
                "--token-reduction ctc: how a run of frames with the same label becomes one "
                "token: average, weighted (by the label's probability), or none (no "
                "compression: the CTC loss alone)"),
        _choice("ctc_blanks", BLANK_RUNS, "keep",
                "--token-reduction ctc: runs of blank frames kept as tokens, or dropped"),
        Setting("ctc_weight", NON_NEGATIVE, 0.3,
                "--token-reduction ctc: weight of the CTC loss on the transcript, added to "
                "the translation loss"),
    )
    uses_rate = False
    data_dependent_counts = True
    loss_names = ("ctc",)
    statistic_names = ("ctc_unaligned_rows",)

    def __init__(self, dim: int, ctc_vocab_size: Optional[int] = None,
                 ctc_merge: str = "average", ctc_blanks: str = "keep", ctc_weight: float = 0.3):
        super().__init__()
        if ctc_vocab_size is None:
            raise InputError("token_reduction ctc needs ctc_vocab_size: the CTC vocabulary's "
                             "size (the task sets it from --ctc-vocab, the data folder's "
                             "ctc_vocab.txt written by prepare_mustc)")
        self.merge, self.blanks, self.weight = ctc_merge, ctc_blanks, ctc_weight
        self.head = nn.Linear(dim, ctc_vocab_size)
        if ctc_merge == "none":
            self.data_dependent_counts = False  # per instance: every frame is kept

    def check(self, min_rate, init_layer, num_layers):
        super().check(min_rate, init_layer, num_layers)
        refuse_keep_rate(min_rate, "the ctc reduction's counts follow the transcript's labels")

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            logits = F.linear(tokens.x.float(), self.head.weight.float(),
                              self.head.bias.float())
        tokens.outputs["ctc_logits"] = logits  # B x T x V, fp32: the loss's input
        tokens.outputs["ctc_lengths"] = valid_lengths(tokens.padding_mask, *logits.shape[:2],
                                                      logits.device)
        if self.merge == "none":
            return tokens
        with torch.no_grad():
            probs, labels = logits.softmax(dim=-1).max(dim=-1)
            runs = ctc_runs(labels, tokens.padding_mask)
        weights = probs if self.merge == "weighted" else None
        merged = merge_runs(tokens, runs, runs.first, weights)
        if self.blanks == "keep":
            return merged
        return without_blank_runs(merged, labels.gather(1, runs.first))

    def loss(self, outputs: Dict[str, Tensor], sample: dict) -> Dict[str, Tensor]:
        """CTC of the head's fp32 log-probabilities against the transcript's
        labels (``sample["ctc_target"]``, ``ctc_target_lengths``), summed over
        the batch and weighted; a row the frames cannot align scores 0
        (``zero_infinity``), counted by ``statistics``."""
        if "ctc_target" not in sample:
            raise InputError("the ctc reduction's loss needs the transcripts as CTC labels: "
                             "the data folder's ctc_vocab.txt (prepare_mustc writes it) or "
                             "--ctc-vocab")
        log_probs = outputs["ctc_logits"].float().log_softmax(dim=-1).transpose(0, 1)
        with torch.autocast(device_type=log_probs.device.type, enabled=False):
            loss = F.ctc_loss(log_probs, sample["ctc_target"], outputs["ctc_lengths"],
                              sample["ctc_target_lengths"], blank=BLANK, reduction="sum",
                              zero_infinity=True)
        return {"ctc": self.weight * loss}

    def statistics(self, outputs: Dict[str, Tensor], sample: dict) -> Dict[str, float]:
        """Rows whose transcript needs more frames than the head saw (a label
        per frame, and a blank between two equal labels): CTC cannot align them."""
        if "ctc_target" not in sample:
            return {"ctc_unaligned_rows": 0}
        target, lengths = sample["ctc_target"], sample["ctc_target_lengths"]
        position = torch.arange(target.size(1), device=target.device).unsqueeze(0)
        repeats = ((target[:, 1:] == target[:, :-1]) &
                   (position[:, 1:] < lengths.unsqueeze(1))).sum(dim=1)
        needed = lengths + repeats
        return {"ctc_unaligned_rows": int((needed > outputs["ctc_lengths"]).sum())}
