"""Label-smoothed cross-entropy that reports ST and MT losses separately."""
import math
from dataclasses import dataclass, field

from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)


@dataclass
class SpeechAndTextTranslationCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    report_accuracy: bool = field(default=True, metadata={"help": "report accuracy metric"})


@register_criterion("speech_and_text_translation",
                    dataclass=SpeechAndTextTranslationCriterionConfig)
class SpeechAndTextTranslationCriterion(LabelSmoothedCrossEntropyCriterion):
    MODES = ("st", "mt")

    def forward(self, model, sample, reduce=True):
        loss, sample_size, logs = super().forward(model, sample, reduce)
        mode = "st" if sample["net_input"]["src_tokens"].is_floating_point() else "mt"
        logs[f"{mode}_loss"] = logs["loss"]
        logs[f"{mode}_ntokens"] = logs["ntokens"]
        return loss, sample_size, logs

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        for mode in cls.MODES:
            ntokens = sum(log.get(f"{mode}_ntokens", 0) for log in logging_outputs)
            if ntokens > 0:
                total = sum(log.get(f"{mode}_loss", 0) for log in logging_outputs)
                metrics.log_scalar(f"{mode}_loss", total / ntokens / math.log(2), ntokens,
                                   round=3)
