"""Random-weight HuBERT encoders at chosen settings, sharing one set of
weights: what a setting costs at a real model size, which the frames it keeps
decide whatever the width of the model that chose them."""
import statistics
from typing import Dict, List

import torch

from ..encoder.pruned_hubert import REDUCTION_PREFIX, PrunedHubertModel, build_pruned_hubert
from ..encoder.config import hubert_model_config
from .timing import interleaved_times, timed_pass


def reference_model(size: str, device, dtype):
    """(HuBERT config, dense reference model whose weights every setting shares)."""
    torch.manual_seed(0)
    cfg = hubert_model_config(size)
    model = build_pruned_hubert(cfg, pruning_rate=1.0, pruning_init_layer=0)
    model.remove_pretraining_modules()
    return cfg, model.to(device=device, dtype=dtype).eval()


def setting_model(reference: PrunedHubertModel, cfg: Dict, mode: str, rate: float,
                  init_layer: int) -> PrunedHubertModel:
    """A model for one setting, built the public way, sharing the reference's
    weights (assign=True: no copy); the conv reduction's own weights are new."""
    model = build_pruned_hubert(cfg, pruning_rate=rate, pruning_init_layer=init_layer,
                                token_reduction=mode)
    model.remove_pretraining_modules()
    return share_weights(model, reference)


def share_weights(model, reference: PrunedHubertModel):
    """``model`` on the reference's device and dtype, its tensors the reference's
    own (assign=True: no copy); only the conv reduction's may be its own."""
    param = next(reference.parameters())
    model.to(device=param.device, dtype=param.dtype)
    # nn.Module's own: fairseq's override takes no assign
    missing, unexpected = torch.nn.Module.load_state_dict(
        model, reference.state_dict(), strict=False, assign=True)
    assert not unexpected and all(k.startswith(REDUCTION_PREFIX) for k in missing)
    return model.eval()


def reference_speedups(settings, audios: List[torch.Tensor], size: str = "base",
                       warmup: int = 1, repeats: int = 3) -> Dict[tuple, float]:
    """What the frames a setting keeps would save at a real model size: a
    random-weight HuBERT of ``size`` encodes ``audios`` (each alone, 1 x
    samples) at each ``(reduction, rate, init_layer)`` setting and densely,
    timed round-robin; returns dense time / setting time per setting. The
    frames kept depend on the audio and the setting only, not on the width."""
    settings = list(dict.fromkeys(tuple(s) for s in settings))
    cfg, reference = reference_model(size, torch.device("cpu"), torch.float32)
    models = [setting_model(reference, cfg, *s) for s in settings]
    # a setting that shortens nothing is the dense model itself: speedup 1
    timed_models = [reference] + [m for m in models if m.encoder.shortens()]

    def timed(model):
        return sum(timed_pass(model, audio) for audio in audios)

    with torch.inference_mode():
        times = dict(zip(map(id, timed_models),
                         interleaved_times(timed_models, timed, warmup, repeats)))
    dense_s = statistics.median(times[id(reference)])
    return {s: dense_s / statistics.median(times.get(id(m), times[id(reference)]))
            for s, m in zip(settings, models)}
