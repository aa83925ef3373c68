"""Real speech for tests and the demo, from Debian's synthesizers, at 16 kHz.

Each voice names the person whose recordings it was built from, so that a
held-out split can be spoken by people never heard in train: flite's and
Festival's English voices are built from recordings of real speakers (the
same speaker in both synthesizers is one person); espeak-ng is formant
synthesis, one artificial voice whatever its pitch and speed.
"""
import functools
import io
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from ..io.audio import SAMPLE_RATE

ESPEAK_PERSON = "espeak-ng"


@dataclass(frozen=True)
class Voice:
    engine: str      # "espeak-ng", "flite" or "festival"
    name: str        # the engine's own name for the voice
    person: str      # whose recordings it was built from
    package: str     # the Debian package that brings it
    pitch: int = 50  # espeak-ng only
    speed: int = 160


def _espeak(pitch, speed):
    return Voice("espeak-ng", "en", ESPEAK_PERSON, "espeak-ng", pitch, speed)


# speaker_id in the corpus -> voice
VOICES = {
    "espeak_a": _espeak(35, 150), "espeak_b": _espeak(55, 170), "espeak_c": _espeak(75, 160),
    "espeak_d": _espeak(45, 155), "espeak_e": _espeak(65, 165),
    "flite_awb": Voice("flite", "awb", "AWB", "flite"),    # Scottish English male
    "flite_kal": Voice("flite", "kal", "KAL", "flite"),    # US male, 8 kHz diphones
    "flite_rms": Voice("flite", "rms", "RMS", "flite"),    # US male
    "festival_slt": Voice("festival", "cmu_us_slt_arctic_hts", "SLT",
                          "festvox-us-slt-hts"),           # US female, 32 kHz
    "festival_ked": Voice("festival", "ked_diphone", "KED", "festvox-kdlpc16k"),  # US male
}


@functools.lru_cache(maxsize=None)
def _flite_voices():
    if shutil.which("flite") is None:
        return frozenset()
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return frozenset(out.split(":", 1)[-1].split())


@functools.lru_cache(maxsize=None)
def _festival_voices():
    if shutil.which("text2wave") is None:
        return frozenset()
    root = "/usr/share/festival/voices"
    return frozenset(name for lang in (os.listdir(root) if os.path.isdir(root) else ())
                     for name in os.listdir(os.path.join(root, lang)))


def voice_available(speaker: str) -> bool:
    voice = VOICES[speaker]
    if voice.engine == "espeak-ng":
        return shutil.which("espeak-ng") is not None
    if voice.engine == "flite":
        return voice.name in _flite_voices()
    return voice.name in _festival_voices()


def resample(wav: np.ndarray, rate: int) -> np.ndarray:
    """To SAMPLE_RATE with a polyphase filter (anti-aliased: content above the
    new Nyquist frequency is removed, not folded back as interpolation does)."""
    if rate == SAMPLE_RATE:
        return wav
    from scipy.signal import resample_poly  # only where speech is made (not on the GPU check)

    g = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(wav, SAMPLE_RATE // g, rate // g)


def _synthesize(voice: Voice, text: str) -> bytes:
    if voice.engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
               "--stdout", text]
        return subprocess.run(cmd, check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "speech.wav")
        if voice.engine == "flite":
            subprocess.run(["flite", "-voice", voice.name, "-t", text, "-o", out],
                           check=True, capture_output=True)
        else:
            subprocess.run(["text2wave", "-eval", f"(voice_{voice.name})", "-o", out],
                           input=text.encode(), check=True, capture_output=True)
        with open(out, "rb") as f:
            return f.read()


def speak(text: str, speaker: str = "espeak_a") -> np.ndarray:
    """English speech for ``text`` in ``speaker``'s voice, float32 16 kHz mono,
    scaled to the same peak level whatever the synthesizer."""
    voice = VOICES[speaker]
    if not voice_available(speaker):
        raise RuntimeError(f"voice {speaker} ({voice.engine} {voice.name}) is not installed "
                           f"(apt-get install {voice.package}; scripts/install.sh does it "
                           "when run as root)")
    wav, rate = sf.read(io.BytesIO(_synthesize(voice, text)), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    wav = resample(wav, rate)
    peak = float(np.abs(wav).max()) if len(wav) else 0.0
    return (wav * (0.5 / peak) if peak > 0 else wav).astype(np.float32)
