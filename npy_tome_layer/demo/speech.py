"""Real speech for tests and the demo: Debian's espeak-ng, resampled to 16 kHz."""
import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

from ..io.audio import SAMPLE_RATE


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
