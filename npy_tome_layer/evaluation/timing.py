"""Timing that survives this kind of machine: passes of every setting run
round-robin (the speed of a shared CPU drifts by 10-30 % over minutes, which
back-to-back runs would read as differences between settings)."""
import statistics
import time
from typing import Dict, List, Tuple

import torch

from ..io.audio import SAMPLE_RATE


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_pass(model, audio) -> float:
    """Seconds of one ``extract_features`` pass of a HuBERT model."""
    start = time.perf_counter()
    model.extract_features(audio, padding_mask=None, mask=False)
    sync(audio.device)
    return time.perf_counter() - start


def interleaved_times(models, measure, warmup: int, repeats: int) -> List[list]:
    """``measure(model)`` (seconds, or any result) ``repeats`` times per model:
    warm-ups first, then round robin (repeat 1 of every model, then repeat 2, ...)."""
    for model in models:
        for _ in range(warmup):
            measure(model)
    results = [[] for _ in models]
    for _ in range(repeats):
        for i, model in enumerate(models):
            results[i].append(measure(model))
    return results


def utterances(dataset) -> List[torch.Tensor]:
    """Every utterance of a speech dataset as a 1 x samples batch (no padding)."""
    return [dataset[i]["source"].unsqueeze(0) for i in range(len(dataset))]


def frames_left(features: torch.Tensor, mask) -> int:
    """Valid frames of one utterance's HuBERT output."""
    return features.size(1) if mask is None else int((~mask).sum())


@torch.inference_mode()
def hubert_frames(model, dataset) -> Tuple[int, int]:
    """(HuBERT frames in, frames out) over the subset, each utterance alone."""
    hubert, frames_in, frames_out = model.encoder.hubert, 0, 0
    for audio in utterances(dataset):
        frames_in += int(hubert.frame_lengths(torch.tensor(audio.size(1))))
        frames_out += frames_left(*hubert.extract_features(audio, padding_mask=None, mask=False))
    return frames_in, frames_out


@torch.inference_mode()
def kept_frames(model, dataset) -> List[Tuple[int, List[torch.Tensor]]]:
    """Per utterance (alone): (HuBERT frames in, where each token left after
    each acting layer lies: the centre of the run of original frames it stands
    for, ``spans``). A token of one frame (prune and the other dropping
    reductions) lies at that frame's index; a merged run of `adjacent` or
    `fold` at its middle, so positions show where the tokens' content comes
    from, not only which frame represents it."""
    hubert = model.encoder.hubert
    return [(int(hubert.frame_lengths(torch.tensor(audio.size(1)))),
             [spans[0].float().mean(dim=-1) for spans in hubert(
                 audio, padding_mask=None, mask=False, features_only=True)["spans"]])
            for audio in utterances(dataset)]


def kept_counts(frames) -> List[List[int]]:
    """Per utterance of ``kept_frames``' result, the count kept after each acting layer."""
    return [[kept.numel() for kept in layers] for _, layers in frames]


def kept_positions(frames) -> List[float]:
    """Where in its utterance (0 = start, 1 = end) each token that leaves HuBERT
    lies (its run's centre), over ``kept_frames``' result."""
    return [(float(i) + 0.5) / n for n, layers in frames if layers for i in layers[-1].tolist()]


def frames_by_length(frames) -> List[Tuple[int, int]]:
    """Per utterance of ``kept_frames``' result: (frames in, frames leaving HuBERT)."""
    return [(n, layers[-1].numel() if layers else n) for n, layers in frames]


def per_target_subword(frames: int, dataset) -> float:
    """``frames`` over the subwords of the subset's translations (each target
    less its end of sentence)."""
    return frames / max(1, int(sum(int(size) - 1 for size in dataset.tgt_sizes)))


def deltalm_frames(encoded) -> int:
    """Frames the subsampler handed DeltaLM in one utterance's speech encoder output."""
    return encoded["encoder_out"][0].size(0)  # T x 1 x C


@torch.inference_mode()
def deltalm_frames_per_subword(model, dataset) -> float:
    """Frames DeltaLM reads per target subword over the subset, each utterance alone."""
    return per_target_subword(sum(
        deltalm_frames(model.encoder.forward_speech(a, torch.tensor([a.size(1)])))
        for a in utterances(dataset)), dataset)


@torch.inference_mode()
def measure_speech_encoder(model, dataset) -> Dict[str, float]:
    """One pass over the subset, batch 1: HuBERT frames in/out, the frames the
    subsampler hands DeltaLM per target subword, and the seconds of HuBERT and
    of the whole speech encoder (HuBERT, subsampler, text encoder)."""
    hubert = model.encoder.hubert
    audios = utterances(dataset)
    frames_in = sum(int(hubert.frame_lengths(torch.tensor(a.size(1)))) for a in audios)
    frames_out, into_deltalm, hubert_s, encoder_s = 0, 0, 0.0, 0.0
    for a in audios:
        start = time.perf_counter()
        features, mask = hubert.extract_features(a, padding_mask=None, mask=False)
        hubert_s += time.perf_counter() - start
        start = time.perf_counter()
        encoded = model.encoder.forward_speech(a, torch.tensor([a.size(1)]))
        encoder_s += time.perf_counter() - start
        frames_out += frames_left(features, mask)
        into_deltalm += deltalm_frames(encoded)
    return {"keep_rate": hubert.encoder.keep_rate,
            "init_layer": hubert.encoder.pruning_init_layer,
            "frames_in": frames_in, "frames_out": frames_out,
            "deltalm_frames_per_subword": per_target_subword(into_deltalm, dataset),
            "hubert_s": hubert_s, "encoder_s": encoder_s, "utterances": len(audios),
            "audio_s": sum(a.size(1) for a in audios) / SAMPLE_RATE}


def measure_interleaved(pairs, repeats: int = 3) -> List[Dict[str, float]]:
    """``measure_speech_encoder`` of each (model, dataset) after one warm-up
    pass, ``repeats`` passes interleaved; times are the medians."""
    passes = interleaved_times(pairs, lambda pair: measure_speech_encoder(*pair), 1, repeats)
    results = []
    for runs in passes:
        result = dict(runs[0])
        for key in ("hubert_s", "encoder_s"):
            result[key] = statistics.median(r[key] for r in runs)
        results.append(result)
    return results
