"""Speech audio: the sample rate and the one check of an audio file
(preparation, manifests, the visualiser)."""
import os
from typing import Dict, Optional

import soundfile as sf

from ..errors import InputError

SAMPLE_RATE = 16000
# HuBERT's conv front end (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) needs
# this many samples for one frame; a shorter utterance cannot be encoded
MIN_SAMPLES = 400


class AudioError(InputError):
    """An audio file that cannot serve as 16 kHz mono speech (the message names it)."""


def audio_info(path: str, cache: Optional[Dict[str, "sf._SoundFileInfo"]] = None):
    """soundfile's info of an existing, readable, non-empty 16 kHz mono file, or
    AudioError saying what is wrong. Good files are remembered in ``cache``."""
    if cache is not None and path in cache:
        return cache[path]
    if not os.path.isfile(path):
        raise AudioError(f"audio file {path} does not exist")
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
