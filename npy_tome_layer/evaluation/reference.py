"""Random-weight HuBERT encoders at chosen settings, sharing one set of
weights: what a setting costs at a real model size, which the frames it keeps
decide whatever the width of the model that chose them."""
import statistics
from typing import Dict, List, Optional

import torch

from ..encoder.pruned_hubert import REDUCTION_PREFIX, PrunedHubertModel, build_pruned_hubert
from ..reduction import REDUCTIONS, TokenReduction, default_reduction
from ..reduction.interface import ReceivedAttentionSum
from ..reduction.selection import select_counts
from ..encoder.config import HUBERT_SIZES, hubert_model_config
from .timing import interleaved_times, timed_pass

# the sizes a random-weight reference encoder can have: a tool's --reference-size choices
REFERENCE_SIZES = sorted(HUBERT_SIZES)


def reference_model(size: str, device, dtype):
    """(HuBERT config, dense reference model whose weights every setting shares)."""
    torch.manual_seed(0)
    cfg = hubert_model_config(size)
    model = build_pruned_hubert(cfg, pruning_rate=1.0, pruning_init_layer=0)
    model.remove_pretraining_modules()
    return cfg, model.to(device=device, dtype=dtype).eval()


def setting_model(reference: PrunedHubertModel, cfg: Dict, mode: str, rate: float,
                  init_layer: int, **options) -> PrunedHubertModel:
    """A model for one setting, built the public way, sharing the reference's
    weights (assign=True: no copy); the conv reduction's own weights are new.
    ``options``: the reduction's own (``pruning_coverage``, ``pruning_window``)."""
    model = build_pruned_hubert(cfg, pruning_rate=rate, pruning_init_layer=init_layer,
                                token_reduction=mode, **options)
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


class ReplayedCounts(TokenReduction):
    """Keeps, after each layer from ``init_layer`` on, the count a trained
    model kept there on the utterance being encoded (``counts``, set per
    utterance), chosen by received attention as ``prune`` does: a
    data-dependent mode's cost at another size, where its own rule would
    choose other counts. Not registered: for timing only."""

    evidence_type = ReceivedAttentionSum
    uses_rate = False

    def __init__(self, init_layer: int):
        super().__init__()
        self.init_layer = init_layer
        self.counts: List[int] = []

    def acts_after(self, layer, init_layer, rate):
        return 0 <= layer - self.init_layer < len(self.counts)

    def reduce(self, tokens, evidence, rate, layer):
        counts = torch.tensor([self.counts[layer - self.init_layer]], device=tokens.x.device)
        indices, padding_mask = select_counts(evidence.scores, tokens.padding_mask, counts)
        return tokens.take(indices, padding_mask)


def replaying_model(reference, cfg, init_layer: int):
    """The reference's weights, keeping replayed counts from ``init_layer`` on."""
    model = setting_model(reference, cfg, "prune", 1.0, init_layer)
    model.encoder.length_reduction = ReplayedCounts(init_layer)
    return model


def setting_label(setting: tuple) -> str:
    """A ``final_setting`` (reduction, keep rate or its own number, init layer)
    as the tables show it: dense, or the reduction, its number and the layer
    it starts after. A reduction the keep rate does not drive (conv, ctc) is
    named without it; coverage by its share."""
    reduction, value, init_layer = setting
    if REDUCTIONS[reduction].uses_rate and value >= 1.0:
        return "dense"
    if not REDUCTIONS[reduction].uses_rate and value >= 1.0:
        return f"{reduction} (from {init_layer})"
    return f"{reduction} {value:g} (from {init_layer})"


def counts_need_data(name: str) -> bool:
    """Whether reduction ``name``, as a setting names it (its own settings at
    their defaults), keeps counts that depend on the data."""
    reduction = default_reduction(name)
    return reduction is None or reduction.data_dependent_counts


def reference_speedups(settings, audios: List[torch.Tensor], size: str = "base",
                       warmup: int = 1, repeats: int = 3,
                       kept_counts: Optional[Dict[tuple, List[List[int]]]] = None
                       ) -> Dict[tuple, float]:
    """What the frames a setting keeps would save at a real model size: a
    random-weight HuBERT of ``size`` encodes ``audios`` (each alone, 1 x
    samples) at each ``(reduction, rate, init_layer)`` setting and densely,
    timed round-robin; returns dense time / setting time per setting. The
    frames kept depend on the audio and the setting only, not on the width -
    except for a data-dependent reduction (coverage), whose counts come from
    ``kept_counts[setting]``: per utterance, the count the trained model kept
    after each layer, replayed (``ReplayedCounts``)."""
    settings = list(dict.fromkeys(tuple(s) for s in settings))
    kept_counts = kept_counts or {}
    unmeasured = [s for s in settings if s not in kept_counts and counts_need_data(s[0])]
    if unmeasured:
        raise ValueError(f"settings {unmeasured} keep counts that depend on the data: "
                         "pass the counts a model kept (kept_counts)")
    cfg, reference = reference_model(size, torch.device("cpu"), torch.float32)
    models = [replaying_model(reference, cfg, s[2]) if s in kept_counts
              else setting_model(reference, cfg, *s) for s in settings]
    replayed = {id(m): kept_counts[s] for s, m in zip(settings, models) if s in kept_counts}
    # a setting that shortens nothing is the dense model itself: speedup 1
    timed_models = [reference] + [m for m in models if id(m) in replayed or m.encoder.shortens()]

    def timed(model):
        total = 0.0
        for i, audio in enumerate(audios):
            if id(model) in replayed:
                model.encoder.length_reduction.counts = replayed[id(model)][i]
            total += timed_pass(model, audio)
        return total

    with torch.inference_mode():
        times = dict(zip(map(id, timed_models),
                         interleaved_times(timed_models, timed, warmup, repeats)))
    dense_s = statistics.median(times[id(reference)])
    return {s: dense_s / statistics.median(times.get(id(m), times[id(reference)]))
            for s, m in zip(settings, models)}
