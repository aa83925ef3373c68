"""Label-smoothed cross-entropy with CRESS's multitask semantics.

A speech batch in training with ``--st-training --mt-finetune`` gives two
losses on the same sentences: ST (audio -> translation) and MT (the batch's
own transcripts -> the same translation). ``loss = st_loss + mt_loss`` and
the sample size is the ST batch's target tokens, so ST and MT weigh 1:1 on
the shared DeltaLM parameters. In validation (and without ``--mt-finetune``)
a speech batch gives the ST loss alone. A text batch (the MT stage, or the
extra batches of ``--st-training --ext-mt-training``) is logged as
``ext_mt_loss``; with ``--st-training --ext-mt-training`` the task hands one
text batch along with each speech batch (``sample[EXTRA_TEXT]``) and its loss
is added here, the sample size (and every logged count) being those of both.
``nll_loss``/``ppl``/``accuracy`` are those of the first loss of the batch (ST
for speech), summed with the extra text batch's where there is one.
A token reduction with a loss of its own (``TokenReduction.loss``) adds its
terms to the ST loss of a speech batch; each is logged as ``reduction_NAME_loss``
per ST target token, and its counts (``TokenReduction.statistics``) summed as
``reduction_NAME``.
"""
import math
from dataclasses import dataclass, field

import torch
from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)

from ..errors import InputError


# prefix of a token reduction's loss terms in the logs
REDUCTION_LOG = "reduction_"
# key of the text batch that joins a speech batch in training (--st-training --ext-mt-training)
EXTRA_TEXT = "extra_text"


@dataclass
class SpeechAndTextTranslationCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    report_accuracy: bool = field(default=True, metadata={"help": "report accuracy metric"})


@register_criterion("speech_and_text_translation",
                    dataclass=SpeechAndTextTranslationCriterionConfig)
class SpeechAndTextTranslationCriterion(LabelSmoothedCrossEntropyCriterion):
    LOSSES = ("st", "mt", "ext_mt")

    def compute_loss(self, model, net_output, sample, reduce=True):
        """fairseq's; also the reduction's terms of this forward, computed here
        where the net output is at hand (fairseq's ``forward`` keeps it to
        itself) and handed to ``forward``, which adds and logs them, through
        ``self.reduction_terms``."""
        losses = getattr(model, "reduction_losses", None)  # the MT model has none
        self.reduction_terms, self.reduction_counts = \
            losses(net_output, sample) if losses else ({}, {})
        return super().compute_loss(model, net_output, sample, reduce)

    def forward(self, model, sample, reduce=True):
        speech = sample["net_input"]["src_tokens"].is_floating_point()
        loss, sample_size, logs = super().forward(model, sample, reduce)
        reduction_terms, reduction_counts = self.reduction_terms, self.reduction_counts
        first = "st" if speech else "ext_mt"
        parts = {first: loss}
        if speech and self.training and getattr(self.task, "mt_on_transcripts", False):
            if "transcript" not in sample:
                raise InputError("--mt-finetune with --st-training needs the transcripts "
                                 "(src_text) of the speech batch")
            mt_sample = dict(sample, net_input=dict(
                sample["transcript"], prev_output_tokens=sample["net_input"]["prev_output_tokens"]))
            parts["mt"], _, _ = super().forward(model, mt_sample, reduce)
            loss = loss + parts["mt"]
        loss = loss + sum(reduction_terms.values())
        logs["loss"] = loss.data
        for name in self.LOSSES:
            # one key set for every batch, so logs of mixed batches sum cleanly
            logs[f"{name}_loss"] = parts[name].data if name in parts else 0
            logs[f"{name}_sample_size"] = sample_size if name in parts else 0
        for name, term in reduction_terms.items():  # the same names for every batch
            logs[f"{REDUCTION_LOG}{name}_loss"] = term.data if torch.is_tensor(term) else term
        for name, count in reduction_counts.items():
            logs[f"{REDUCTION_LOG}{name}"] = count
        if EXTRA_TEXT in sample:
            text_loss, text_size, text_logs = self.forward(model, sample[EXTRA_TEXT], reduce)
            loss, sample_size = loss + text_loss, sample_size + text_size
            logs = {key: logs.get(key, 0) + text_logs.get(key, 0) for key in {**logs, **text_logs}}
        return loss, sample_size, logs

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        for name in cls.LOSSES:
            size = sum(log.get(f"{name}_sample_size", 0) for log in logging_outputs)
            if size > 0:
                total = sum(log.get(f"{name}_loss", 0) for log in logging_outputs)
                metrics.log_scalar(f"{name}_loss", total / size / math.log(2), size, round=3)
        size = sum(log.get("st_sample_size", 0) for log in logging_outputs)
        names = {key for log in logging_outputs for key in log if key.startswith(REDUCTION_LOG)}
        for key in sorted(names):
            total = sum(log.get(key, 0) for log in logging_outputs)
            if not key.endswith("_loss"):
                metrics.log_scalar_sum(key, total)  # a count (rows CTC could not align)
            elif size > 0:
                metrics.log_scalar(key, total / size / math.log(2), size, round=3)
