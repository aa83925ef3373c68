"""Write a small corpus in the exact MuST-C v1.0 layout from synthesized speech.

ROOT/en-XX/data/{split}/wav/{talk}.wav and txt/{split}.{yaml,en,XX}: several
talks per split, one speaker per talk, each talk the concatenation of its
segments with silence between, yaml offsets in seconds.

For de, es and fr the sentences come from the compositional grammar
(``grammar.py``) and dev / tst-COMMON are **held out**: sentences that never
occur as a whole in train (every word of them does), spoken by people never
heard in train (flite's RMS and Festival's KED; train hears espeak-ng, AWB,
KAL and SLT). Where flite or Festival is missing, every split falls back to
espeak-ng pitch/speed variants, with a warning: its held-out "speakers" are
then the training voice changed. The other targets (it nl pt ro ru) use the
36-sentence phrase set, drawn in turn in every split (nothing held out there).
"""
import argparse
import os
import random
import sys

import numpy as np
import soundfile as sf
import yaml

from ..io.audio import SAMPLE_RATE
from .speech import VOICES, speak, voice_available
from . import grammar
from ..io.flags import whole_number_flag
from .phrases import LANGUAGES, phrase_pairs

# speaker_ids (speech.VOICES) of train and of the held-out splits
TRAIN_SPEAKERS = ("espeak_a", "flite_awb", "flite_kal", "festival_slt", "espeak_c")
HELD_OUT_SPEAKERS = ("flite_rms", "festival_ked")
FALLBACK_TRAIN_SPEAKERS = ("espeak_a", "espeak_b", "espeak_c")
FALLBACK_HELD_OUT_SPEAKERS = ("espeak_d", "espeak_e")


def choose_speakers(log=lambda msg: print(msg, file=sys.stderr)):
    """(train speakers, held-out speakers): other people's voices where installed."""
    missing = [s for s in TRAIN_SPEAKERS + HELD_OUT_SPEAKERS if not voice_available(s)]
    if not missing:
        return TRAIN_SPEAKERS, HELD_OUT_SPEAKERS
    packages = sorted({VOICES[s].package for s in missing})
    log(f"warning: voices {', '.join(missing)} are not installed ({' '.join(packages)}); "
        "every split is spoken by espeak-ng, so held-out speakers are only pitch/speed "
        "variants of the training voice (scripts/install.sh installs them when run as root)")
    return FALLBACK_TRAIN_SPEAKERS, FALLBACK_HELD_OUT_SPEAKERS


def write_talk(wav_path, segments, speaker, rng):
    """Speak the segments into one wav; return their yaml records."""
    audio, records = [np.zeros(int(0.3 * SAMPLE_RATE), np.float32)], []
    pos = len(audio[0])
    for en in segments:
        wav = speak(en, speaker)
        records.append({"duration": round(len(wav) / SAMPLE_RATE, 6),
                        "offset": round(pos / SAMPLE_RATE, 6), "rW": len(en.split()), "uW": 0,
                        "speaker_id": speaker, "wav": os.path.basename(wav_path)})
        gap = np.zeros(int(rng.uniform(0.2, 0.6) * SAMPLE_RATE), np.float32)
        audio += [wav, gap]
        pos += len(wav) + len(gap)
    sf.write(wav_path, np.concatenate(audio), SAMPLE_RATE, subtype="PCM_16")
    return records


def split_sentences(tgt_lang, splits, seed=1):
    """{split: [(english, translation), ...]} with talks x segments sentences each."""
    sizes = {split: talks * per_talk for split, (talks, per_talk) in splits.items()}
    if tgt_lang in grammar.LANGUAGES:
        combos = grammar.split_combinations(sizes, seed)
        return {split: grammar.pairs(tgt_lang, combos[split]) for split in splits}
    phrases, out, cursor = phrase_pairs(tgt_lang), {}, 0
    for split, n in sizes.items():
        out[split] = [phrases[(cursor + i) % len(phrases)] for i in range(n)]
        cursor += n
    return out


def build_demo_corpus(root, tgt_lang="de", splits=None, seed=1):
    """splits: {split: (talks, segments per talk)}, train first."""
    splits = splits or {"train": (6, 6), "dev": (1, 6), "tst-COMMON": (1, 6)}
    sentences = split_sentences(tgt_lang, splits, seed)
    held_out = tgt_lang in grammar.LANGUAGES
    rng = random.Random(seed)
    train_speakers, held_out_speakers = choose_speakers()
    out = os.path.join(root, f"en-{tgt_lang}", "data")
    talk_id = 0
    for split, (talks, per_talk) in splits.items():
        wav_dir, txt_dir = os.path.join(out, split, "wav"), os.path.join(out, split, "txt")
        os.makedirs(wav_dir, exist_ok=True)
        os.makedirs(txt_dir, exist_ok=True)
        speakers = held_out_speakers if held_out and split != "train" else train_speakers
        records, en_lines, tgt_lines = [], [], []
        for talk in range(talks):
            talk_id += 1
            chosen = sentences[split][talk * per_talk:(talk + 1) * per_talk]
            speaker = speakers[talk_id % len(speakers)]
            records += write_talk(os.path.join(wav_dir, f"ted_{talk_id}.wav"),
                                  [en for en, _ in chosen], speaker, rng)
            en_lines += [en for en, _ in chosen]
            tgt_lines += [tgt for _, tgt in chosen]
        with open(os.path.join(txt_dir, f"{split}.yaml"), "w") as f:
            yaml.safe_dump(records, f, default_flow_style=None, sort_keys=False, width=1000)
        for lang, lines in (("en", en_lines), (tgt_lang, tgt_lines)):
            with open(os.path.join(txt_dir, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    return os.path.join(root, f"en-{tgt_lang}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root")
    parser.add_argument("--tgt-lang", default="de", choices=LANGUAGES)
    parser.add_argument("--train-talks", type=whole_number_flag(1), default=6)
    parser.add_argument("--eval-talks", type=whole_number_flag(1), default=1,
                        help="talks of dev and of tst-COMMON, where --dev-talks / --test-talks "
                             "do not say")
    parser.add_argument("--dev-talks", type=whole_number_flag(1), default=None)
    parser.add_argument("--test-talks", type=whole_number_flag(1), default=None,
                        help="talks of tst-COMMON (the study's: enough sentences that one "
                             "run's BLEU is known to a point)")
    parser.add_argument("--segments-per-talk", type=whole_number_flag(1), default=6)
    args = parser.parse_args()
    n = args.segments_per_talk
    try:
        path = build_demo_corpus(args.root, args.tgt_lang, {
            "train": (args.train_talks, n), "dev": (args.dev_talks or args.eval_talks, n),
            "tst-COMMON": (args.test_talks or args.eval_talks, n)})
    except ValueError as e:
        sys.exit(f"corpus: {e}")
    print(path)


if __name__ == "__main__":
    main()
