"""``--scoring sacrebleu`` with the sacreBLEU signature.

fairseq's scorer pre-tokenises and calls sacrebleu with ``tokenize='none'``,
so its line carries no (or a misleading) signature. This subclass, registered
under the same name, keeps the detokenised strings and lets sacrebleu itself
tokenise, score and sign them: the number is sacreBLEU's, reproducible from the
signature.

The references are the manifest's target text as written. fairseq passes the
scorer the target *as the dictionary rebuilt it* (its token ids turned back
into text), where every character the dictionary lacks (an emoji, U+200B, a
script it never saw) has become ``<unk>``, which no hypothesis can match: a
BLEU against references nobody wrote. The task hands the scorer each speech
batch's texts (``WrittenReferences``, in the order fairseq-generate scores the
batch's sentences) and they replace fairseq's strings; text-only batches (the
MT stage's binarised data, which keeps no text) keep fairseq's.
"""
import collections

from fairseq.scoring import SCORER_REGISTRY
from fairseq.scoring.bleu import SacrebleuScorer


class WrittenReferences:
    """The manifest's target texts of the batches decoded since the scorer was
    built, first in first out. Filled only while a scorer listens, so a
    training run (which builds none) keeps nothing."""

    def __init__(self):
        self.listening = False
        self.texts = collections.deque()

    def listen(self) -> None:
        """A new scorer: texts of an earlier decoding are not this one's."""
        self.texts.clear()
        self.listening = True

    def add_batch(self, texts) -> None:
        if self.listening and texts is not None:
            self.texts.extend(texts)

    def next_or(self, fallback: str) -> str:
        return self.texts.popleft() if self.texts else fallback


WRITTEN_REFERENCES = WrittenReferences()


class SignedSacrebleuScorer(SacrebleuScorer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.raw_ref, self.raw_pred = [], []
        WRITTEN_REFERENCES.listen()

    def add_string(self, ref, pred):
        ref = WRITTEN_REFERENCES.next_or(ref)
        super().add_string(ref, pred)
        self.raw_ref.append(ref)
        self.raw_pred.append(pred)

    def _metric(self):
        tokenize = "char" if self.cfg.sacrebleu_char_level else self.cfg.sacrebleu_tokenizer
        return self.sacrebleu.BLEU(tokenize=tokenize, lowercase=self.cfg.sacrebleu_lowercase)

    def _score(self, order=4):
        if order != 4:
            raise NotImplementedError
        return self._metric().corpus_score(self.raw_pred, [self.raw_ref])

    def result_string(self, order=4):
        metric = self._metric()
        score = metric.corpus_score(self.raw_pred, [self.raw_ref])
        return f"{score.format()} | sacreBLEU signature: {metric.get_signature()}"


SCORER_REGISTRY["sacrebleu"] = SignedSacrebleuScorer
