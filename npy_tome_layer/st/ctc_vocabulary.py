"""The transcript as CTC labels: characters.

DeltaLM's 250k-entry dictionary would make a CTC head of 190M parameters at
HuBERT base's width; the transcripts' characters make one of a few dozen
outputs. The file (``ctc_vocab.txt`` in a prepared data folder, written by
``prepare_mustc`` from the train split's transcripts) holds one character a
line, the space as ``SPACE``. Labels: 0 the CTC blank, 1 a character the file
does not hold, 2 on the file's lines in order. Transcripts are lowercased and
their runs of white space read as one space.
"""
import os
from typing import Iterable, List

import torch

from ..errors import InputError
from ..reduction.ctc import BLANK

SPACE = "\u2581"  # SentencePiece's word boundary: a line holding a space would be invisible
UNKNOWN = BLANK + 1
FILE_NAME = "ctc_vocab.txt"


def characters(text: str) -> str:
    """The characters CTC is trained on: lowercased, white space as one SPACE."""
    return SPACE.join(text.lower().split())


def vocabulary_text(transcripts: Iterable[str]) -> str:
    """The file's text: every character of the transcripts, sorted."""
    found = sorted({c for text in transcripts for c in characters(text)})
    return "".join(c + "\n" for c in found)


class CTCVocabulary:
    def __init__(self, symbols: List[str], path: str):
        self.symbols, self.path = symbols, path
        self.index = {c: i + UNKNOWN + 1 for i, c in enumerate(symbols)}

    @classmethod
    def from_file(cls, path: str) -> "CTCVocabulary":
        if os.path.isdir(path) or not os.path.exists(path):
            what = "a directory" if os.path.isdir(path) else "not found"
            raise InputError(f"{path}: CTC vocabulary {what} (prepare_mustc writes "
                             f"{FILE_NAME} into the data folder)")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: CTC vocabulary is not UTF-8 text (byte {e.start})") from None
        for number, line in enumerate(lines, 1):
            if len(line) != 1 or line.isspace():
                raise InputError(f"{path}:{number}: a CTC vocabulary line holds one character "
                                 f"(the space as {SPACE}), got {line!r}")
        if len(set(lines)) != len(lines):
            raise InputError(f"{path}: a character is listed twice")
        if not lines:
            raise InputError(f"{path}: CTC vocabulary is empty")
        return cls(lines, path)

    @property
    def size(self) -> int:
        """Outputs of a CTC head over it: blank, unknown, the characters."""
        return len(self.symbols) + UNKNOWN + 1

    def label(self, index: int) -> str:
        """What output ``index`` of the head stands for: the character, ``_`` for the
        blank, ``?`` for a character the file does not hold."""
        if index == BLANK:
            return "_"
        return "?" if index == UNKNOWN else self.symbols[index - UNKNOWN - 1]

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index.get(c, UNKNOWN) for c in characters(text)],
                            dtype=torch.long)
