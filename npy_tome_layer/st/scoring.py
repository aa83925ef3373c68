"""``--scoring sacrebleu`` with the sacreBLEU signature.

fairseq's scorer pre-tokenises and calls sacrebleu with ``tokenize='none'``,
so its line carries no (or a misleading) signature. This subclass, registered
under the same name, keeps the detokenised strings and lets sacrebleu itself
tokenise, score and sign them: the number is sacreBLEU's, reproducible from the
signature.
"""
from fairseq.scoring import SCORER_REGISTRY
from fairseq.scoring.bleu import SacrebleuScorer


class SignedSacrebleuScorer(SacrebleuScorer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.raw_ref, self.raw_pred = [], []

    def add_string(self, ref, pred):
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
