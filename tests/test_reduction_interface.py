"""The reduction interface: masks returned with every feature path, empty rows,
one registry of reductions, profiler labels, one place for the schedule."""
import argparse
import inspect
import math
from argparse import Namespace

import numpy as np
import pytest
import torch

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.encoder.pruned_hubert import PrunedTransformerEncoder, build_pruned_hubert
from npy_tome_layer.reduction import (
    REDUCTIONS,
    TokenReduction,
    register_reduction,
)
from npy_tome_layer.encoder.config import hubert_model_config

from .test_pruned_hubert import chain, fairseq_hubert, reduction_arguments, waveforms


def _apply_frame_mask(x, mask):
    return x if mask is None else x.masked_fill(mask.unsqueeze(-1), 0.0)


@pytest.mark.parametrize("mode", list(REDUCTIONS))
def test_forward_features_only_returns_the_mask_of_its_features(hubert_tiny, mode):
    model = load_pruned_hubert(hubert_tiny, **reduction_arguments(mode, 0.7))
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
        x, x_mask = model.extract_features(source, padding_mask=mask)
    assert res["padding_mask"].shape == res["x"].shape[:2]  # was the unpruned B x 51 mask
    assert torch.equal(res["padding_mask"], x_mask) and torch.equal(res["x"], x)
    assert res["x"].size(1) < res["features"].size(1)
    # the mask marks exactly the frames each row kept: same valid count as alone
    with torch.no_grad():
        alone, alone_mask = model.extract_features(source[1:, :9000])
    assert int((~x_mask[1]).sum()) == alone.size(1) and alone_mask is None


def test_ret_conv_returns_the_frame_mask_of_the_conv_features(hubert_tiny):
    # fairseq's padded front end (the option) against fairseq itself
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7, fairseq_padding=True)
    ref = fairseq_hubert(hubert_tiny)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        feats, feats_mask = model.extract_features(source, padding_mask=mask, ret_conv=True)
        ref_feats, _ = ref.extract_features(source, padding_mask=mask, ret_conv=True)
        _, ref_frame_mask = ref.extract_features(source, padding_mask=mask)
    assert feats_mask.shape == feats.shape[:2]  # was the B x samples input mask
    assert torch.equal(feats_mask, ref_frame_mask)
    torch.testing.assert_close(feats, ref_feats)


@pytest.mark.parametrize("output_layer", [1, 2, 3])
def test_output_layer_returns_the_mask_after_that_layer(hubert_tiny, output_layer):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7, pruning_init_layer=0)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        x, x_mask = model.extract_features(source, padding_mask=mask, output_layer=output_layer)
    assert x_mask.shape == x.shape[:2]
    assert int((~x_mask[0]).sum()) == chain(51, 0.7, output_layer)


def test_rate_one_forward_equals_fairseq_on_both_paths(hubert_tiny):
    ours = load_pruned_hubert(hubert_tiny, pruning_rate=1.0, fairseq_padding=True)
    ref = fairseq_hubert(hubert_tiny)
    source, mask = waveforms([16640, 12000])
    with torch.no_grad():
        a = ours(source, padding_mask=mask, mask=False, features_only=True)
        b = ref(source, padding_mask=mask, mask=False, features_only=True)
    assert torch.equal(a["padding_mask"], b["padding_mask"])
    assert (a["x"] - b["x"]).abs().max().item() <= 1e-5
    torch.testing.assert_close(a["features"], b["features"])
    # HuBERT's pre-training loss path runs fairseq's own forward when nothing is dropped
    targets = [torch.randint(0, 20, (2, 51))]
    masked = torch.zeros(2, 51, dtype=torch.bool)
    masked[:, 5:15] = True
    outputs = []
    for model in (ours, ref):
        # fairseq draws masked spans from unseeded generators: use the same fixed spans
        model.apply_mask = lambda x, padding_mask, target_list: (x, masked)
        with torch.no_grad():
            outputs.append(model(source, target_list=targets, padding_mask=mask)["logit_m_list"][0])
    la, lb = outputs
    assert la.size(0) == 20
    torch.testing.assert_close(la, lb)


def test_pretraining_loss_is_refused_once_frames_are_dropped(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7)
    source, _ = waveforms([16640])
    with pytest.raises(ValueError, match="pre-training loss needs every frame"):
        model(source, target_list=[torch.zeros(1, 51, dtype=torch.long)])


@pytest.mark.parametrize("mode", list(REDUCTIONS))
@pytest.mark.parametrize("rate", [1.0, 0.7])
def test_an_empty_row_stays_fully_masked_with_finite_features(hubert_tiny, mode, rate):
    model = load_pruned_hubert(hubert_tiny, **reduction_arguments(mode, rate))
    source, mask = waveforms([16640, 0, 16640])
    with torch.no_grad():
        x, x_mask = model.extract_features(source, padding_mask=mask)
        full, _ = model.extract_features(source[:1])
    assert torch.isfinite(x).all()  # was NaN in the empty row
    assert x_mask[1].all()  # was one frame marked valid at rate < 1
    n = full.size(1)
    assert int((~x_mask[0]).sum()) == n
    torch.testing.assert_close(x[0, :n], full[0], atol=1e-5, rtol=1e-5)


def test_the_encoder_loop_names_no_reduction():
    loop = inspect.getsource(PrunedTransformerEncoder.extract_features)
    for name in REDUCTIONS:
        assert f'"{name}"' not in loop and f"'{name}'" not in loop


def test_a_new_reduction_is_one_class(hubert_tiny):
    from npy_tome_layer.reduction.cost import encoder_flops_formula
    from npy_tome_layer.st.model import HubertTransformerPruningModel

    @register_reduction("every_other")
    class EveryOther(TokenReduction):
        """Keeps frames 0, 2, 4, ... once, after the init layer; needs no attention."""

        uses_rate = False

        def acts_after(self, layer, init_layer, rate):
            return layer == init_layer

        def reduce(self, tokens, evidence, rate, layer):
            width = (tokens.x.size(1) + 1) // 2
            indices = torch.arange(0, 2 * width, 2).unsqueeze(0).expand(tokens.x.size(0), -1)
            valid = (~tokens.padding_mask).sum(1) if tokens.padding_mask is not None \
                else torch.full((tokens.x.size(0),), tokens.x.size(1))
            new_mask = torch.arange(width).unsqueeze(0) >= ((valid + 1) // 2).unsqueeze(1)
            return tokens.take(indices, new_mask)

        def lengths_after(self, valid, run, rate):
            return math.ceil(valid / 2), math.ceil(run / 2)

    try:
        model = load_pruned_hubert(hubert_tiny, pruning_init_layer=1, token_reduction="every_other")
        source, mask = waveforms([16640, 9000])
        with torch.no_grad():
            res = model(source, padding_mask=mask, mask=False, features_only=True)
        assert (~res["padding_mask"]).sum(1).tolist() == [26, 14]  # ceil(51 / 2), ceil(28 / 2)
        assert res["kept_indices"][-1][0, :3].tolist() == [0, 2, 4]
        cfg = hubert_model_config("tiny")
        assert encoder_flops_formula(cfg, 16640, reduction="every_other", init_layer=1)[
            "frames_out"] == 26
        parser = argparse.ArgumentParser()
        HubertTransformerPruningModel.add_args(parser)
        assert parser.parse_args(["--token-reduction", "every_other"]).token_reduction == \
            "every_other"
    finally:
        REDUCTIONS.pop("every_other")


def test_reduction_time_is_labelled_for_the_profiler(hubert_tiny):
    from npy_tome_layer.tools.benchmark import reduction_share

    source, _ = waveforms([16640, 16640])
    shares = {}
    for name, rate in (("dense", 1.0), ("prune", 0.7), ("merge", 0.7)):
        model = load_pruned_hubert(hubert_tiny, pruning_rate=rate,
                                   token_reduction="prune" if name == "dense" else name)
        with torch.inference_mode():
            shares[name] = reduction_share(model, source)
    assert shares["dense"] == 0.0
    assert 0.0 < shares["prune"] < 1.0 and 0.0 < shares["merge"] < 1.0


def test_the_schedule_comes_from_the_arguments_not_the_arch_name():
    from npy_tome_layer.st.model import (
        hubert_transformer_pruning_layer,
        hubert_transformer_pruning_layer_schedule,
        rate_arguments,
    )
    from npy_tome_layer.reduction.keep_rate import KeepRateSchedule

    fixed, scheduled = Namespace(), Namespace()
    hubert_transformer_pruning_layer(fixed)
    hubert_transformer_pruning_layer_schedule(scheduled)
    assert KeepRateSchedule.from_arguments(**rate_arguments(fixed)) == KeepRateSchedule(0.9, 0.9, 0)
    assert KeepRateSchedule.from_arguments(**rate_arguments(scheduled)) == \
        KeepRateSchedule(1.0, 0.9, 10000)
    # an older checkpoint's args of the fixed arch have no schedule fields at all
    assert KeepRateSchedule.from_arguments(**rate_arguments(Namespace(pruning_rate=0.8))) == \
        KeepRateSchedule(0.8, 0.8, 0)
    model = build_pruned_hubert(hubert_model_config("tiny"), **rate_arguments(scheduled))
    model.encoder.set_num_updates(5000)
    assert model.encoder.keep_rate == pytest.approx(0.95)


@pytest.mark.parametrize("mode", list(REDUCTIONS))
def test_one_frame_and_all_empty_batches(hubert_tiny, mode):
    # merging with nothing left to merge: the longest row is one token
    model = load_pruned_hubert(hubert_tiny, **reduction_arguments(mode, 0.5),
                               **({"pruning_init_layer": 0} if mode != "conv" else {}))
    with torch.no_grad():
        x, mask = model.extract_features(torch.randn(1, 400))  # one frame
        assert x.shape[:2] == (1, 1) and torch.isfinite(x).all() and mask is None
        source = torch.zeros(2, 16640)
        x, mask = model.extract_features(source, padding_mask=torch.ones(2, 16640, dtype=torch.bool))
    assert mask.all() and torch.isfinite(x).all()


def test_scores_stay_fp32_under_autocast(hubert_tiny, monkeypatch):
    import npy_tome_layer.reduction.reductions as token_reduction
    from npy_tome_layer.reduction.selection import received_attention

    probs = torch.rand(2, 4, 9, 9).softmax(-1)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, 5:] = True
    seen = []
    real = token_reduction.select_frames
    monkeypatch.setattr(token_reduction, "select_frames",
                        lambda scores, *a: seen.append(scores.dtype) or real(scores, *a))
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7)
    source, padding = waveforms([16640, 9000])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        # autocast runs matmul in bf16: the masked score sum would drop to bf16 without the guard
        assert received_attention(probs, mask).dtype == torch.bfloat16
        model.extract_features(source, padding_mask=padding)
    assert seen == [torch.float32] * 3


@pytest.mark.parametrize("mode", ["conv", "prune", "uniform"])
def test_layerdrop_and_reductions_that_need_no_attention(hubert_tiny, mode):
    # a dropped init layer must not skip the conv: training would see two lengths
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.5, pruning_init_layer=1,
                               token_reduction=mode, encoder_layerdrop=0.5).train()
    source, _ = waveforms([16640])
    lengths = set()
    np.random.seed(0)  # fairseq draws layerdrop with numpy
    for _ in range(12):
        x, _ = model.extract_features(source)
        lengths.add(x.size(1))
    if mode == "conv":
        assert lengths == {26}  # ceil(51 / 2), whether layer 1 ran or not
    else:
        # pruning needs the layer's attention: a dropped layer skips it; the
        # blind baselines skip it too, so their frame counts stay prune's
        assert len(lengths) > 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(token_reduction="merge", pruning_max_rate=1.0, pruning_min_rate=0.3,
          pruning_schedule_updates=10), r"token merging needs keep rates >= 0.5.*0.3"),
    (dict(token_reduction="merge", pruning_rate=0.4), r"token merging needs keep rates >= 0.5"),
    (dict(token_reduction="conv", pruning_init_layer=3), r"conv reduction .* must be < 3"),
    (dict(pruning_max_rate=1.0, pruning_min_rate=0.9, pruning_schedule_updates=2.5),
     r"pruning_schedule_updates must be a whole number >= 0, got 2.5"),
])
def test_settings_a_reduction_cannot_run_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_pruned_hubert(hubert_model_config("tiny"), **kwargs)
