"""Speech audio: the sample rate and the one check of an audio file
(preparation, manifests, the visualiser), and the one check of its samples."""
import os
from typing import Dict, Optional

import numpy as np
import soundfile as sf

from ..errors import InputError
from .paths import file_problem

SAMPLE_RATE = 16000
# HuBERT's conv front end (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) needs
# this many samples for one frame; a shorter utterance cannot be encoded
MIN_SAMPLES = 400


# soundfile subtypes stored as integers: they cannot hold NaN or inf, so their
# samples need not be read to be checked (MuST-C's wavs are PCM_16). Float
# files (FLOAT, DOUBLE) and decoded codecs are read.
INTEGER_SUBTYPES = ("PCM_", "ULAW", "ALAW")
# samples read at a time when checking a segment (4 MiB of float32)
CHECK_BLOCK = 1 << 20


class AudioError(InputError):
    """An audio file that cannot serve as 16 kHz mono speech (the message names it)."""


def audio_info(path: str, cache: Optional[Dict[str, "sf._SoundFileInfo"]] = None):
    """soundfile's info of an existing, readable, non-empty 16 kHz mono file, or
    AudioError saying what is wrong. Good files are remembered in ``cache``."""
    if cache is not None and path in cache:
        return cache[path]
    problem = file_problem(path)
    if problem is not None:
        raise AudioError(f"audio file {path} {problem}")
    if os.path.getsize(path) == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises its own error types per backend
        raise AudioError(f"cannot read audio file {path}: {e}") from e
    if info.frames == 0:
        raise AudioError(f"audio file {path} is empty (no samples)")
    if info.samplerate != SAMPLE_RATE:
        raise AudioError(f"audio file {path} has sample rate {info.samplerate}, "
                         f"expected {SAMPLE_RATE}")
    if info.channels != 1:
        raise AudioError(f"audio file {path} has {info.channels} channels, expected mono")
    if cache is not None:
        cache[path] = info
    return info


def non_finite_problem(path: str, index: int) -> str:
    """What is wrong with sample ``index`` (from the file's start) of ``path``."""
    return (f"sample {index} of {path} ({index / SAMPLE_RATE:.3f} s) is NaN or inf, not "
            "audio (one such sample makes the utterance's features NaN)")


def first_non_finite(samples: np.ndarray) -> Optional[int]:
    """Index of the first NaN or inf in ``samples``, or None."""
    bad = np.flatnonzero(~np.isfinite(samples))
    return int(bad[0]) if len(bad) else None


def first_non_finite_sample(path: str, info, start: int, frames: int) -> Optional[int]:
    """Index (from the file's start) of the first NaN or inf sample of
    ``[start, start + frames)`` as float32 (what the model reads: a double of
    1e300 becomes inf), or None. Integer-coded files are not read."""
    if info.subtype.startswith(INTEGER_SUBTYPES):
        return None
    position = start
    for block in sf.blocks(path, blocksize=CHECK_BLOCK, start=start, stop=start + frames,
                           dtype="float32", always_2d=False):
        found = first_non_finite(block)
        if found is not None:
            return position + found
        position += len(block)
    return None
