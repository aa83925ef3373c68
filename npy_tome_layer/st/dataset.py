"""Speech-translation manifests (fairseq S2T TSV) read with soundfile.

``audio`` is a 16 kHz mono file, or ``path:offset:num_samples`` pointing into a
talk-level wav (MuST-C); nothing is copied. Every file is checked when the
manifest is loaded, so a bad row fails at once with its TSV line, not hours
into training with a traceback from inside a worker.
"""
import csv
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf
import torch
from fairseq.data import FairseqDataset, data_utils

from ..reduction.ctc import BLANK
from ..errors import InputError, shorten
from ..io.audio import MIN_SAMPLES, AudioError, audio_info, first_non_finite, non_finite_problem

COLUMNS = ("id", "audio", "n_frames", "tgt_text", "src_text", "speaker")
# characters that end a manifest field or row: the tab, and the line breaks at
# which the reader (a file opened with newline="") splits rows
FIELD_BREAKS = "\t\n\r"


def breaks_a_field(text: str) -> bool:
    """Whether ``text`` cannot be one manifest field as it is."""
    return any(c in text for c in FIELD_BREAKS)
AUDIO_REPLACEMENTS = ("silence",)  # --replace-audio: what a no-audio floor hears instead


class ManifestError(InputError):
    """A manifest row (or the audio it points to) is unusable."""


@dataclass(frozen=True)
class AudioRef:
    path: str
    offset: int
    num_samples: int  # -1: the whole file


def is_whole_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²" (which ``int`` refuses)
    and other scripts' digits (which no manifest writer means)."""
    return text.isascii() and text.isdigit()


def parse_audio_ref(value: str, base_dir: str) -> AudioRef:
    parts = value.rsplit(":", 2)
    if len(parts) == 3 and is_whole_number(parts[1]) and is_whole_number(parts[2]):
        path, offset, num = parts[0], int(parts[1]), int(parts[2])
    else:
        path, offset, num = value, 0, -1
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return AudioRef(path, offset, num)


def read_manifest(tsv_path: str) -> List[Dict[str, str]]:
    """Rows as dicts, each with its 1-based file line under ``_line``."""
    if not os.path.isfile(tsv_path):
        raise ManifestError(f"{tsv_path}: manifest not found")
    with open(tsv_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quotechar=None, doublequote=False,
                            lineterminator="\n", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"{tsv_path}: empty manifest (no header)")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"{tsv_path}:1: header lacks column(s) {missing}; "
                                f"expected {list(COLUMNS)}, got {header}")
        rows = []
        line_no = 1
        try:
            for line_no, fields in enumerate(reader, start=2):
                rows.append(manifest_row(tsv_path, line_no, header, fields))
        except csv.Error as e:  # e.g. a field beyond csv.field_size_limit()
            raise ManifestError(f"{tsv_path}:{line_no + 1}: {e}") from e
    if not rows:
        raise ManifestError(f"{tsv_path}: no rows (header only)")
    return rows


def manifest_row(tsv_path, line_no, header, fields) -> Dict[str, str]:
    if len(fields) != len(header):
        raise ManifestError(f"{tsv_path}:{line_no}: {len(fields)} fields, "
                            f"header has {len(header)}")
    row = dict(zip(header, fields))
    if not is_whole_number(row["n_frames"]):
        raise ManifestError(f"{tsv_path}:{line_no}: n_frames {shorten(row['n_frames'])!r} "
                            "is not a non-negative integer")
    row["_line"] = line_no
    return row


def check_audio(ref: AudioRef, where: str, info_cache: Dict[str, sf._SoundFileInfo]) -> int:
    """Validate the file/segment; return its number of samples."""
    try:
        info = audio_info(ref.path, info_cache)
    except AudioError as e:
        raise ManifestError(f"{where}: {e}") from e
    num = info.frames - ref.offset if ref.num_samples < 0 else ref.num_samples
    if num <= 0 or ref.offset + num > info.frames:
        raise ManifestError(f"{where}: segment {ref.offset}:{num} lies outside {ref.path} "
                            f"({info.frames} samples)")
    if num < MIN_SAMPLES:
        raise ManifestError(f"{where}: {num} samples; HuBERT needs at least {MIN_SAMPLES} "
                            "for one frame")
    return num


def read_audio(ref: AudioRef, num_samples: int, where: str = "") -> np.ndarray:
    try:
        wav, sr = sf.read(ref.path, start=ref.offset, frames=num_samples, dtype="float32",
                          always_2d=False)
    except Exception as e:
        raise ManifestError(f"{where}: cannot read audio {ref.path}: {e}") from e
    if len(wav) != num_samples:
        raise ManifestError(f"{where}: read {len(wav)} samples from {ref.path}, "
                            f"expected {num_samples} (truncated file?)")
    # here, where the samples are first read: a NaN would make the batch's
    # loss NaN (or k-means fail) far from the row that holds it
    bad = first_non_finite(wav)
    if bad is not None:
        raise ManifestError(f"{where}: {non_finite_problem(ref.path, ref.offset + bad)}")
    return wav


class SpeechTranslationDataset(FairseqDataset):
    """Waveform source, token target, and the transcript as tokens (the MT
    source of CRESS-style multitask training). Sizes are in audio samples."""

    def __init__(self, tsv_path, rows, targets: List[torch.Tensor], dictionary,
                 shuffle=True, transcripts: Optional[List[torch.Tensor]] = None,
                 silent: bool = False, ctc_targets: Optional[List[torch.Tensor]] = None):
        self.tsv_path = tsv_path
        # silence of each utterance's length instead of its audio: the length
        # (and so the frame counts) stays, the words go
        self.silent = silent
        self.rows = rows
        self.targets = targets
        self.transcripts = transcripts
        self.ctc_targets = ctc_targets  # the transcripts as CTC labels (ctc_vocabulary.py)
        self.dictionary = dictionary
        self.shuffle = shuffle
        base = os.path.dirname(os.path.abspath(tsv_path))
        cache: Dict[str, sf._SoundFileInfo] = {}
        self.refs, lengths = [], []
        for row in rows:
            ref = parse_audio_ref(row["audio"], base)
            lengths.append(check_audio(ref, self.where(row), cache))
            self.refs.append(ref)
        self.sizes = np.array(lengths, dtype=np.int64)
        self.tgt_sizes = np.array([len(t) for t in targets], dtype=np.int64)

    @classmethod
    def from_tsv(cls, tsv_path, dictionary, encode_text, shuffle=True, silent=False,
                 ctc_vocabulary=None, transcripts_required=False):
        """``ctc_vocabulary``: also the transcripts as CTC labels; with
        ``transcripts_required`` (a model trained on them) a row without a
        transcript is refused, naming it."""
        rows = read_manifest(tsv_path)
        def encode(text):
            return dictionary.encode_line(encode_text(text), add_if_not_exist=False,
                                          append_eos=True).long()

        targets = [encode(r["tgt_text"]) for r in rows]
        transcripts = [encode(r["src_text"]) for r in rows]
        ctc_targets = None
        if ctc_vocabulary is not None:
            ctc_targets = [ctc_vocabulary.encode(r["src_text"]) for r in rows]
            empty = [r for r, labels in zip(rows, ctc_targets) if not len(labels)]
            if transcripts_required and empty:
                raise ManifestError(f"{tsv_path}:{empty[0]['_line']} (id {empty[0]['id']}): "
                                    f"no transcript (src_text), which the CTC loss is trained "
                                    f"on ({len(empty)} row(s) without one)")
        return cls(tsv_path, rows, targets, dictionary, shuffle, transcripts, silent,
                   ctc_targets)

    def where(self, row) -> str:
        return f"{self.tsv_path}:{row['_line']} (id {row['id']})"

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        if self.silent:
            wav = np.zeros(int(self.sizes[index]), dtype=np.float32)
        else:
            wav = read_audio(self.refs[index], int(self.sizes[index]),
                             self.where(self.rows[index]))
        item = {"id": index, "source": torch.from_numpy(wav), "target": self.targets[index]}
        if self.transcripts is not None:
            item["transcript"] = self.transcripts[index]
        if self.ctc_targets is not None:
            item["ctc_target"] = self.ctc_targets[index]
        return item

    def collater(self, samples):
        if not samples:
            return {}
        pad, eos = self.dictionary.pad(), self.dictionary.eos()
        lengths = torch.tensor([s["source"].numel() for s in samples], dtype=torch.long)
        audio = samples[0]["source"].new_zeros(len(samples), int(lengths.max()))
        for i, s in enumerate(samples):
            audio[i, : s["source"].numel()] = s["source"]
        targets = [s["target"] for s in samples]
        batch = {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": sum(len(t) for t in targets),
            "net_input": {
                "src_tokens": audio,
                "src_lengths": lengths,
                "prev_output_tokens": data_utils.collate_tokens(
                    targets, pad, eos, left_pad=False, move_eos_to_beginning=True),
            },
            "target": data_utils.collate_tokens(targets, pad, eos, left_pad=False),
            "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
            # the references as written (BLEU is scored against these, not
            # against the targets' tokens, whose unknown characters are <unk>)
            "target_text": [self.rows[s["id"]]["tgt_text"] for s in samples],
        }
        if self.transcripts is not None:
            # outside net_input: the model's forward never sees it, the criterion
            # feeds it to the text encoder for the MT loss on the same batch
            transcripts = [s["transcript"] for s in samples]
            batch["transcript"] = {
                "src_tokens": data_utils.collate_tokens(transcripts, pad, eos, left_pad=False),
                "src_lengths": torch.tensor([len(t) for t in transcripts], dtype=torch.long),
            }
        if self.ctc_targets is not None:
            labels = [s["ctc_target"] for s in samples]
            # padded with the blank: CTC reads each row up to its length only
            batch["ctc_target"] = data_utils.collate_tokens(labels, BLANK, left_pad=False)
            batch["ctc_target_lengths"] = torch.tensor([len(t) for t in labels],
                                                       dtype=torch.long)
        return batch

    def num_tokens(self, index):
        return int(self.sizes[index])

    def size(self, index):
        return int(self.sizes[index]), int(self.tgt_sizes[index])

    def ordered_indices(self):
        order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return order[np.argsort(self.sizes[order], kind="mergesort")]

    @property
    def supports_prefetch(self):
        return False
