"""Prepare one MuST-C v1.0 language pair for ``speech_and_text_translation``.

Reads ROOT/en-XX/data/{split}/{wav/*.wav, txt/SPLIT.yaml, txt/SPLIT.en, txt/SPLIT.XX}
and writes to OUT:
  SPLIT.tsv     id, audio (wav:offset:num_samples, no copies), n_frames, tgt_text, src_text, speaker
  config.yaml   the sentencepiece model and dictionary (DeltaLM's spm.model / dict.txt)
  ctc_vocab.txt the train transcripts' characters: the CTC labels of --token-reduction ctc
  mt/           fairseq-preprocess binaries of the text pairs, for --text-data
Every input is checked before anything is written: the flags' files, the
splits present (train and dev are required, none may be empty), every segment
against its wav (at least one HuBERT frame of finite samples, a name a manifest
row can carry) and the three text files' alignment.
Bad segments are all reported by split and line, and nothing is written for
that split. Finished outputs are kept on re-runs (a config.yaml naming other
files is refused); every file is written under a temporary name and renamed,
and temporaries of a killed run are removed by the next one.
"""
import argparse
import contextlib
import csv
import ctypes
import math
import os
import shutil
import signal
import subprocess
import sys
import unicodedata
from typing import Dict, List, Optional

import sentencepiece as spm
import soundfile as sf
import yaml

from ..errors import InputError, exit_on_input_error, shorten
from ..io.atomic import (atomic_destination, check_output_folder, folder_lock,
                         write_text_atomically)
from ..io.audio import (MIN_SAMPLES, SAMPLE_RATE, AudioError, audio_info,
                        first_non_finite_sample, non_finite_problem)
from ..io.dictionary import load_dictionary
from ..io.paths import check_utf8_path
from ..st.dataset import COLUMNS, FIELD_BREAKS, breaks_a_field
from ..st.ctc_vocabulary import FILE_NAME as CTC_VOCABULARY_FILE, vocabulary_text

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
REQUIRED_SPLITS = ("train", "dev")  # training and validation; tests are optional
# a sentence's tab or line break is written as a space (a file name's is refused)
AS_SPACES = str.maketrans({c: " " for c in FIELD_BREAKS})
MT_SPLITS = {"train": "trainpref", "dev": "validpref", "tst-COMMON": "testpref"}


class PreparationError(InputError):
    """A MuST-C folder or a flag that cannot be prepared; the message names it."""


def read_yaml_segments(path: str, split: str) -> List:
    if not os.path.isfile(path):
        raise PreparationError(f"{split}: {path} not found")
    loader = yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader
    try:
        with open(path, encoding="utf-8") as f:
            # MuST-C writes no aliases; a file of nested ones (a "billion laughs")
            # would expand for minutes, so they are refused before loading
            for event in yaml.parse(f, Loader=loader):
                if isinstance(event, yaml.AliasEvent):
                    raise PreparationError(f"{split}: {path}: line {event.start_mark.line + 1}: "
                                           "YAML aliases (*name) are not accepted in MuST-C "
                                           "segment lists")
            f.seek(0)
            segments = yaml.load(f, Loader=loader) or []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PreparationError(f"{split}: {path}: not valid YAML{at}: {problem}") from e
    except UnicodeDecodeError as e:
        raise PreparationError(f"{split}: {path}: not UTF-8 ({e.reason} at byte {e.start})") from e
    if not isinstance(segments, list):
        raise PreparationError(f"{split}: {path}: expected a list of segments")
    return segments


def read_lines(path: str, split: str) -> List[str]:
    """Lines split at \\n only: str.splitlines also splits at U+2028 and other
    separators that can occur inside a sentence, and would misalign the files."""
    if not os.path.isfile(path):
        raise PreparationError(f"{split}: {path} not found")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of line 1
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise PreparationError(f"{split}: {path}: line {line} is not UTF-8 "
                               f"(byte {data[e.start]:#04x})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def seconds(value) -> Optional[float]:
    """A segment time as a finite float, or None: YAML reads ``true`` as a
    boolean (Python would take it as 1 s) and ``.nan`` / ``.inf`` as floats;
    a time whose sample count is no finite number (1e308 s) is none either."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number * SAMPLE_RATE) else None


def is_blank(text: str) -> bool:
    """Nothing to translate: only whitespace, controls and invisible format
    characters (U+200B zero-width space, U+FEFF, ...), which ``str.strip`` keeps."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def is_plain_file_name(name) -> bool:
    """A name inside the split's wav/ folder: no directory part (``../x.wav``
    or an absolute path would point the manifest outside the talk folder)."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and os.path.basename(name) == name and "/" not in name and "\\" not in name)


def read_split(pair_dir: str, split: str, tgt_lang: str, log=print) -> List[Dict]:
    """Segments of one split as manifest rows; raises with every bad line."""
    txt = os.path.join(pair_dir, "data", split, "txt")
    wav_dir = os.path.join(pair_dir, "data", split, "wav")
    yaml_path = os.path.join(txt, f"{split}.yaml")
    segments = read_yaml_segments(yaml_path, split)
    texts = {lang: read_lines(os.path.join(txt, f"{split}.{lang}"), split)
             for lang in ("en", tgt_lang)}
    problems = []
    if not segments:  # its manifest would hold no rows, which training and decoding refuse
        problems.append(f"{split}: {yaml_path} lists no segments: a split needs at least one")
    if not (len(segments) == len(texts["en"]) == len(texts[tgt_lang])):
        problems.append(f"{split}: {yaml_path} has {len(segments)} segments, {split}.en "
                        f"{len(texts['en'])} lines, {split}.{tgt_lang} {len(texts[tgt_lang])} lines")
    info: Dict[str, sf._SoundFileInfo] = {}
    rows, per_talk = [], {}
    for i, (seg, en, tgt) in enumerate(zip(segments, texts["en"], texts[tgt_lang])):
        named = str(seg.get("wav") if isinstance(seg, dict) else seg)
        # a name with a line break is shown quoted: each problem is one line
        shown = repr(named) if breaks_a_field(named) else named
        where = f"{split}: line {i + 1} ({shorten(shown)})"
        if not isinstance(seg, dict) or not {"offset", "duration", "wav"} <= set(seg):
            problems.append(f"{where}: segment lacks offset/duration/wav")
            continue
        offset, duration = seconds(seg["offset"]), seconds(seg["duration"])
        if offset is None or duration is None:
            problems.append(f"{where}: offset {shorten(repr(seg['offset']))} / duration "
                            f"{shorten(repr(seg['duration']))} are not finite numbers of seconds")
            continue
        if not is_plain_file_name(seg["wav"]):
            problems.append(f"{where}: wav {shorten(repr(seg['wav']))} is not the name of a file "
                            f"in {wav_dir}")
            continue
        if breaks_a_field(seg["wav"]):
            problems.append(f"{where}: wav {shorten(repr(seg['wav']))} holds a tab or line "
                            "break, which a manifest row cannot carry; rename the file")
            continue
        wav = os.path.abspath(os.path.join(wav_dir, seg["wav"]))
        try:
            meta = audio_info(wav, info)
        except AudioError as e:
            problems.append(f"{where}: {e}")
            continue
        offset = int(round(offset * SAMPLE_RATE))
        n = int(round(duration * SAMPLE_RATE))
        if n <= 0 or offset < 0 or offset + n > meta.frames:
            problems.append(f"{where}: segment {seg['offset']}s+{seg['duration']}s lies outside "
                            f"{wav} ({meta.frames / SAMPLE_RATE:.3f}s)")
            continue
        if n < MIN_SAMPLES:
            problems.append(f"{where}: segment of {n} samples ({seg['duration']}s); HuBERT needs "
                            f"at least {MIN_SAMPLES} for one frame")
            continue
        bad = first_non_finite_sample(wav, meta, offset, n)
        if bad is not None:
            problems.append(f"{where}: {non_finite_problem(wav, bad)}")
            continue
        if is_blank(en) or is_blank(tgt):
            problems.append(f"{where}: empty transcript or translation")
            continue
        too_long = max(len(en), len(tgt)) > csv.field_size_limit()
        if too_long:
            problems.append(f"{where}: a sentence of {max(len(en), len(tgt))} characters; a "
                            f"manifest field holds at most {csv.field_size_limit()}")
            continue
        if "\r" in en + tgt or "\t" in en + tgt:
            log(f"[prepare] warning: {where}: tab or carriage return inside a sentence, written "
                "as a space")
        talk = os.path.splitext(seg["wav"])[0]
        per_talk[talk] = per_talk.get(talk, -1) + 1
        rows.append({"id": f"{talk}_{per_talk[talk]}", "audio": f"{wav}:{offset}:{n}",
                     "n_frames": n, "tgt_text": tgt.strip(), "src_text": en.strip(),
                     "speaker": str(seg.get("speaker_id", "unknown"))})
    if problems:
        raise PreparationError("bad segments, nothing written for this split:\n  "
                               + "\n  ".join(problems))
    return rows


def tsv_text(rows) -> str:
    lines = ["\t".join(COLUMNS)]
    for r in rows:
        fields = [str(r[c]).translate(AS_SPACES) for c in COLUMNS]
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def output_lock(out: str):
    """One preparation per output directory: two at once raced on the same
    temporary names and renames. Holding the lock, any temporary left in
    ``out`` is a killed run's and is removed."""
    with folder_lock(out, ".prepare.lock", f"{out}: another preparation is writing here; "
                     "wait for it to finish", error=PreparationError):
        yield


def config_text(spm_model: str, dictionary: str, tgt_lang: str) -> str:
    """config.yaml: fairseq's S2T data config, and the pair's target language
    (the task refuses another --tgt-lang on this data)."""
    return yaml.safe_dump({
        "vocab_filename": os.path.abspath(dictionary),
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": os.path.abspath(spm_model)},
        "tgt_lang": tgt_lang,
    }, sort_keys=False)


def check_inputs(pair_dir, out, spm_model, dictionary, splits, tgt_lang):
    """Everything the flags name, before anything is written; returns the splits present."""
    # every manifest row names its wav by this path; config.yaml names the
    # model and the dictionary: one line each here, not one per segment later
    for flag, path in (("--mustc-root", os.path.abspath(pair_dir)),
                       ("--spm-model", os.path.abspath(spm_model)),
                       ("--dict", os.path.abspath(dictionary))):
        try:
            check_utf8_path(path, flag)
        except InputError as e:
            raise PreparationError(str(e)) from None
    if breaks_a_field(os.path.abspath(pair_dir)):
        raise PreparationError(f"--mustc-root {pair_dir!r}: a tab or line break in the path "
                               "cannot be written to a manifest; move or link the data")
    if not os.path.isdir(os.path.join(pair_dir, "data")):
        raise PreparationError(f"{pair_dir}: no data/ folder (MuST-C keeps en-XX/data/SPLIT/)")
    present = [s for s in splits if os.path.isdir(os.path.join(pair_dir, "data", s))]
    missing = [s for s in REQUIRED_SPLITS if s in splits and s not in present]
    if missing:
        raise PreparationError(f"{pair_dir}/data: no {' or '.join(missing)} split (training "
                               "needs train and dev)")
    check_output_folder(out, "--out")
    if not os.path.isfile(spm_model):
        raise PreparationError(f"--spm-model {spm_model}: not found")
    try:
        spm.SentencePieceProcessor(model_file=spm_model)
    except (OSError, RuntimeError) as e:
        raise PreparationError(f"--spm-model {spm_model}: not a sentencepiece model "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    if not os.path.isfile(dictionary):
        raise PreparationError(f"--dict {dictionary}: not found")
    try:
        load_dictionary(dictionary, f"--dict {dictionary}")
    except InputError as e:
        raise PreparationError(str(e)) from None
    config = os.path.join(out, "config.yaml")
    if os.path.isfile(config):
        with open(config, encoding="utf-8", errors="replace") as f:
            try:
                written = yaml.safe_load(f)
            except yaml.YAMLError:
                written = None
        wanted = yaml.safe_load(config_text(spm_model, dictionary, tgt_lang))
        if not isinstance(written, dict):
            written = {}
        # (a folder prepared before config.yaml named the language: no language to differ)
        written_lang = written.pop("tgt_lang", tgt_lang)
        if written_lang != wanted.pop("tgt_lang"):
            raise PreparationError(f"{config}: {out} holds the pair en-{written_lang}, not "
                                   f"en-{tgt_lang}: prepare en-{tgt_lang} into another --out")
        if written != wanted:
            raise PreparationError(
                f"{config} names another --spm-model or --dict than this run's; the "
                f"prepared data used those: remove {out} (or its config.yaml and mt/) to "
                "prepare with these")
    return present


def prepare(root, tgt_lang, out, spm_model, dictionary, splits=SPLITS, log=print):
    pair_dir = os.path.join(root, f"en-{tgt_lang}")
    if not os.path.isdir(pair_dir):
        raise PreparationError(f"{pair_dir}: MuST-C pair directory not found")
    present = check_inputs(pair_dir, out, spm_model, dictionary, splits, tgt_lang)
    if "tst-COMMON" in splits and "tst-COMMON" not in present:
        log(f"[prepare] warning: {pair_dir}/data has no tst-COMMON split (evaluate.sh needs it)")
    with output_lock(out):
        _prepare(pair_dir, tgt_lang, out, spm_model, dictionary, present, log)


def _prepare(pair_dir, tgt_lang, out, spm_model, dictionary, present, log):
    rows_by_split = {}
    errors = []
    for split in present:
        tsv = os.path.join(out, f"{split}.tsv")
        try:
            rows = read_split(pair_dir, split, tgt_lang, log)
        except PreparationError as e:
            errors.append(str(e))
            continue
        rows_by_split[split] = rows
        if os.path.exists(tsv):
            log(f"[prepare] {tsv} exists, kept")
        else:
            write_text_atomically(tsv, tsv_text(rows))
            log(f"[prepare] {tsv}: {len(rows)} segments")
    config = os.path.join(out, "config.yaml")
    if not os.path.exists(config):
        write_text_atomically(config, config_text(spm_model, dictionary, tgt_lang))
    ctc_vocab = os.path.join(out, CTC_VOCABULARY_FILE)
    if "train" in rows_by_split and not os.path.exists(ctc_vocab):
        write_text_atomically(ctc_vocab, vocabulary_text(r["src_text"]
                                                         for r in rows_by_split["train"]))
        log(f"[prepare] {ctc_vocab}: the train transcripts' characters")
    if errors:  # mt/ holds every split or none: a kept mt/ must not lack one
        log(f"[prepare] {os.path.join(out, 'mt')} not written until every split prepares")
    else:
        write_mt_data(out, tgt_lang, rows_by_split, spm_model, dictionary, log)
    if errors:
        raise PreparationError("\n".join(errors))


def write_mt_data(out, tgt_lang, rows_by_split, spm_model, dictionary, log=print):
    dest = os.path.join(out, "mt")
    if os.path.isdir(dest):
        log(f"[prepare] {dest} exists, kept")
        return
    if "train" not in rows_by_split:
        return
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    with atomic_destination(dest) as work:
        _binarise(work, tgt_lang, rows_by_split, sp, dictionary)
    log(f"[prepare] {dest}: fairseq-preprocess MT data (train/valid/test)")


def _binarise(work, tgt_lang, rows_by_split, sp, dictionary):
    """sentencepiece pieces of every split, binarised by fairseq-preprocess into ``work``."""
    os.makedirs(os.path.join(work, "spm"))
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "en",
           "--target-lang", tgt_lang, "--srcdict", dictionary, "--tgtdict", dictionary,
           "--destdir", work, "--workers", "1"]
    for split, flag in MT_SPLITS.items():
        if split not in rows_by_split:
            continue
        prefix = os.path.join(work, "spm", split)
        for lang, column in (("en", "src_text"), (tgt_lang, "tgt_text")):
            pieces = [" ".join(sp.encode(r[column], out_type=str)) for r in rows_by_split[split]]
            with open(f"{prefix}.{lang}", "w", encoding="utf-8") as f:
                f.write("\n".join(pieces) + "\n")
        cmd += [f"--{flag}", prefix]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          preexec_fn=die_with_parent)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise PreparationError(f"fairseq-preprocess failed writing {work}: {last}")
    shutil.rmtree(os.path.join(work, "spm"))


def die_with_parent():
    """In the child: killed with the preparation (Linux), so a killed run
    leaves no fairseq-preprocess writing into a temporary folder."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mustc-root", required=True)
    parser.add_argument("--tgt-lang", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--spm-model", required=True, help="DeltaLM's spm.model")
    parser.add_argument("--dict", required=True, help="DeltaLM's dict.txt")
    args = parser.parse_args(argv)
    with exit_on_input_error("prepare_mustc"):
        prepare(args.mustc_root, args.tgt_lang, args.out, args.spm_model, args.dict)


if __name__ == "__main__":
    main()
