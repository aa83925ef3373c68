"""Speech audio: the sample rate, the one check of an audio file (preparation,
manifests, the visualiser), and real speech for tests and the demo (Debian's
espeak-ng, resampled to 16 kHz)."""
import io
import os
import shutil
import subprocess
from typing import Dict, Optional

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


class AudioError(ValueError):
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


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """English speech for ``text`` as float32 16 kHz mono."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; "
                           "scripts/install.sh does it when run as root)")
    wav_bytes = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    wav, sr = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if sr != SAMPLE_RATE:  # espeak-ng speaks at 22050 Hz
        n_out = int(round(len(wav) * SAMPLE_RATE / sr))
        wav = np.interp(np.arange(n_out) * sr / SAMPLE_RATE, np.arange(len(wav)), wav)
    return wav.astype(np.float32)
