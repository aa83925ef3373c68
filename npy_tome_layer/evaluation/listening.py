"""Does a model listen? The floor every BLEU table is read against.

A translation model can score BLEU without hearing anything: a decoder that
writes one sentence in the test set's style scores what that sentence shares
with every reference. Three numbers say whether a run is above that:

* the share of utterances with a distinct hypothesis (a model that ignores
  the audio writes the same sentence for all of them);
* the no-audio floor: the same checkpoint decoding the same split with each
  utterance's audio replaced by silence of the same length
  (``--replace-audio silence``). Silence keeps each utterance's length, and so
  the encoder's frame counts and any length cue, and carries no words; another
  utterance's audio would carry words, and a listening model would translate
  them, which measures a different thing;
* the constant floor: the most frequent target sentence of the training
  split, written for every utterance.

A run listens when at least ``MIN_DISTINCT_SHARE`` of its hypotheses are
distinct and its BLEU is above the higher floor by more than chance: sacreBLEU's
paired approximate randomization against that floor's hypotheses gives p below
``LISTENING_P``.
"""
import os
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import InputError

MIN_DISTINCT_SHARE = 0.5
LISTENING_P = 0.05


def distinct_share(hypotheses: Sequence[str]) -> float:
    """Distinct hypotheses over utterances (1.0: all differ; 1/n: one sentence)."""
    return len(set(hypotheses)) / len(hypotheses) if hypotheses else 0.0


def most_frequent_target(train_manifest: str) -> str:
    """The training split's most frequent target sentence (ties: the earliest row)."""
    from ..st.dataset import read_manifest

    counts = Counter(row["tgt_text"] for row in read_manifest(train_manifest))
    return counts.most_common(1)[0][0]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU with its defaults (13a), as fairseq-generate --scoring sacrebleu."""
    from sacrebleu.metrics import BLEU

    return BLEU().corpus_score(list(hypotheses), [list(references)]).score


def paired_p_values(systems: Dict[str, List[str]], references: List[str],
                    baseline: str) -> Dict[str, float]:
    """sacreBLEU's paired approximate randomization, each system against ``baseline``."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    others = [m for m in systems if m != baseline]
    if not others:
        return {}
    ordered = [(baseline, systems[baseline])] + [(m, systems[m]) for m in others]
    _, scores = PairedTest(ordered, {"BLEU": BLEU()}, [references], test_type="ar")()
    base_score = scores["BLEU"][0].score
    # sacreBLEU counts shuffles whose difference is strictly larger than the
    # observed one, so equal scores would get p = 1/(trials + 1): no difference
    # is no evidence of one
    return {m: 1.0 if result.score == base_score else float(result.p_value)
            for m, result in zip(others, scores["BLEU"][1:])}


def pool_seeds(translations_of: Dict[Tuple[str, int], Tuple[List[str], List[str]]]):
    """(hypotheses per mode, references): each mode's (hypotheses, references)
    per (mode, seed) concatenated in seed order, as the paired tests compare
    modes over all their seeds; every mode must hold the same seeds' references."""
    pooled, references = {}, None
    for mode in dict.fromkeys(mode for mode, _ in translations_of):
        seeds = sorted(seed for m, seed in translations_of if m == mode)
        pooled[mode] = [h for seed in seeds for h in translations_of[mode, seed][0]]
        refs = [t for seed in seeds for t in translations_of[mode, seed][1]]
        if references is None:
            references = refs
        elif refs != references:
            raise InputError(f"mode {mode}: its seeds' references differ from the first mode's "
                             "(every mode needs the same seeds on the same split)")
    return pooled, references


class Listening(NamedTuple):
    bleu: float
    distinct: float  # share of utterances with a distinct hypothesis
    no_audio_bleu: float
    constant_bleu: float
    p_above_floor: float  # paired AR against the higher floor's hypotheses
    listens: bool

    @property
    def floor(self) -> float:
        return max(self.no_audio_bleu, self.constant_bleu)


def assess(hypotheses: List[str], references: List[str], no_audio: List[str],
           constant_sentence: str) -> Listening:
    """Whether ``hypotheses`` are above the floors of the same utterances:
    ``no_audio`` (the checkpoint's translations of silence) and one
    ``constant_sentence`` for all."""
    if not (len(hypotheses) == len(references) == len(no_audio)) or not hypotheses:
        raise ValueError(f"{len(hypotheses)} hypotheses, {len(references)} references and "
                         f"{len(no_audio)} no-audio hypotheses: one each per utterance")
    constant = [constant_sentence] * len(references)
    bleu = corpus_bleu(hypotheses, references)
    no_audio_bleu = corpus_bleu(no_audio, references)
    constant_bleu = corpus_bleu(constant, references)
    floor = no_audio if no_audio_bleu >= constant_bleu else constant
    share = distinct_share(hypotheses)
    if bleu <= max(no_audio_bleu, constant_bleu):
        p = 1.0
    else:
        p = paired_p_values({"floor": floor, "run": hypotheses}, references, "floor")["run"]
    listens = share >= MIN_DISTINCT_SHARE and p < LISTENING_P
    return Listening(bleu, share, no_audio_bleu, constant_bleu, p, listens)


def no_audio_floor(checkpoint: str, data: str, subset: str, train_manifest: str,
                   **decode_kwargs):
    """(the checkpoint's translations of ``subset`` with every utterance's
    audio replaced by silence, the training split's most frequent target):
    the two floors of ``assess``. ``decode_kwargs`` as for the run being
    judged (beam, lenpen, model overrides), so only the audio differs."""
    from .decoding import decode

    silent = decode(checkpoint, data, subset, replace_audio="silence", **decode_kwargs)
    return silent.hypotheses, most_frequent_target(train_manifest)


def add_floor_flags(parser) -> None:
    """The flags of the no-audio decoding: the judged runs' own beam, length
    penalty, batch limit and device (scripts/evaluate.sh's)."""
    from ..io.flags import finite_number_flag, whole_number_flag

    parser.add_argument("--beam", type=whole_number_flag(1), default=8,
                        help="beam of the no-audio decoding (the runs' own)")
    parser.add_argument("--lenpen", type=finite_number_flag, default=1.0,
                        help="length penalty of the no-audio decoding (the runs' own)")
    parser.add_argument("--max-tokens", type=whole_number_flag(1), default=4000000)
    parser.add_argument("--cpu", action="store_true", help="decode on the CPU")


def assess_run(args, checkpoint: str, hypotheses: List[str], references: List[str]) -> Listening:
    """``assess`` of one run's translations of ``args.subset`` against its
    checkpoint's no-audio floor, decoded with ``add_floor_flags``' settings."""
    from ..errors import InputError

    silent, constant = no_audio_floor(
        checkpoint, args.data, args.subset, os.path.join(args.data, "train.tsv"),
        beam=args.beam, lenpen=args.lenpen, max_tokens=args.max_tokens, cpu=args.cpu)
    if len(silent) != len(hypotheses):
        raise InputError(f"{checkpoint}: {len(hypotheses)} translations, but {args.subset} "
                         f"has {len(silent)} utterances")
    return assess(hypotheses, references, silent, constant)


def listening_mark(result: Optional[Listening]) -> str:
    """The table's cell: 'yes', or 'NO' with the reason."""
    if result is None:
        return "n/a"
    if result.listens:
        return "yes"
    if result.distinct < MIN_DISTINCT_SHARE:
        return "NO (few distinct)"
    return "NO (at the floor)"
