"""The encoder on an accelerator (marker ``cuda``). ``scripts/gpu_check.sh`` runs
these on a GPU; ``TEST_DEVICE=cpu`` runs the same checks on the CPU (CI does,
through ``DEVICE=cpu scripts/gpu_check.sh``). Without a GPU they are skipped."""
import os

import pytest
import torch

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.encoder.pruned_hubert import build_pruned_hubert
from npy_tome_layer.reduction import REDUCTIONS
from npy_tome_layer.encoder.config import hubert_model_config

from .test_pruned_hubert import chain, fairseq_hubert, reduction_arguments, waveforms

DEVICE = torch.device(os.environ.get("TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")]


def _no_tf32():
    # TF32 matmuls would make fp32 on the GPU differ from the CPU by ~1e-3
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("mode", list(REDUCTIONS))
def test_device_equals_cpu_in_fp32(hubert_tiny, mode):
    _no_tf32()
    model = load_pruned_hubert(hubert_tiny, **reduction_arguments(mode, 0.7))
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        x_cpu, m_cpu = model.extract_features(source, padding_mask=mask)
        model.to(DEVICE)
        x_dev, m_dev = model.extract_features(source.to(DEVICE), padding_mask=mask.to(DEVICE))
    assert torch.equal(m_dev.cpu(), m_cpu)
    valid = ~m_cpu.unsqueeze(-1)
    assert ((x_dev.cpu() - x_cpu) * valid).abs().max().item() <= 1e-4


@pytest.mark.parametrize("front_end", ["layer_norm", "default"])
@pytest.mark.parametrize("mode", list(REDUCTIONS))
def test_batch_invariance_on_the_device(mode, front_end):
    _no_tf32()
    torch.manual_seed(0)
    cfg = hubert_model_config("tiny", layer_norm_first=front_end == "layer_norm",
                              extractor_mode=front_end, encoder_layers=4)
    model = build_pruned_hubert(cfg, pruning_init_layer=1,
                                **reduction_arguments(mode, 0.9)).eval().to(DEVICE)
    torch.manual_seed(1)
    lengths = [29237, 15121]  # not multiples of the 320-sample hop
    audio = torch.randn(2, 48000)
    padding = torch.arange(48000).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    audio = audio.masked_fill(padding, 0.0).to(DEVICE)
    with torch.no_grad():
        y, mask = model.extract_features(audio, padding_mask=padding.to(DEVICE))
        for b, n in enumerate(lengths):
            alone, _ = model.extract_features(audio[b:b + 1, :n])
            k = int((~mask[b]).sum())
            assert k == alone.size(1)
            torch.testing.assert_close(y[b, :k], alone[0], rtol=1e-4, atol=1e-4)


def test_rate_one_equals_fairseq_on_the_device(hubert_tiny):
    _no_tf32()
    ours = load_pruned_hubert(hubert_tiny, pruning_rate=1.0, fairseq_padding=True).to(DEVICE)
    ref = fairseq_hubert(hubert_tiny).to(DEVICE)
    source, mask = waveforms([16640, 12000])
    source, mask = source.to(DEVICE), mask.to(DEVICE)
    with torch.no_grad():
        x, m = ours.extract_features(source, padding_mask=mask)
        x_ref, m_ref = ref.extract_features(source, padding_mask=mask)
    assert torch.equal(m, m_ref)
    assert (x - x_ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_the_frames_fp32_keeps(dtype):
    """Scores are accumulated in fp32 whatever the input dtype; the kept frames
    may differ only where half-precision states move near-ties. Counted over
    the valid kept positions of every pruning layer: a flip at one layer
    changes what the next ones see, so the last layer alone agrees less
    (measured on the CPU, width 64, random weights: bf16 98 % over all layers,
    91 % at the 12th)."""
    torch.manual_seed(0)
    cfg = hubert_model_config("demo")
    model = build_pruned_hubert(cfg, pruning_rate=0.9, pruning_init_layer=0).eval().to(DEVICE)
    source, mask = waveforms([48000, 40000])
    source, mask = source.to(DEVICE), mask.to(DEVICE)
    with torch.no_grad():
        full = model(source, padding_mask=mask, mask=False, features_only=True)
        half = model.to(dtype)(source.to(dtype), padding_mask=mask, mask=False,
                               features_only=True)
    assert half["x"].dtype == dtype and torch.isfinite(half["x"]).all()
    assert torch.equal(half["padding_mask"], full["padding_mask"])  # same counts per row
    frames = (~full["features_padding_mask"]).sum(dim=1).tolist()
    agree = total = 0
    for layer, (kept_full, kept_half) in enumerate(zip(full["kept_indices"], half["kept_indices"])):
        for b, n in enumerate(frames):
            k = chain(n, 0.9, layer + 1)  # valid kept positions come first in each row
            a = set(kept_full[b, :k].tolist())
            agree, total = agree + len(a & set(kept_half[b, :k].tolist())), total + k
    assert agree / total >= 0.95, f"{dtype}: {agree}/{total} kept positions agree with fp32"


@pytest.mark.parametrize("mode", ["prune", "merge"])
def test_fused_path_on_the_device_equals_the_explicit_path_on_the_cpu(hubert_tiny, mode):
    """The device takes the fused path (auto); the CPU reference the explicit one."""
    from npy_tome_layer.encoder.attention import scoring_path

    _no_tf32()
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7, token_reduction=mode)
    source, mask = waveforms([16640, 9000, 4000])
    with torch.no_grad():
        with scoring_path("explicit"):
            ref = model(source, padding_mask=mask, mask=False, features_only=True)
        model.to(DEVICE)
        with scoring_path("fused"):
            out = model(source.to(DEVICE), padding_mask=mask.to(DEVICE), mask=False,
                        features_only=True)
    for a, b in zip(ref["kept_indices"], out["kept_indices"]):
        assert torch.equal(a, b.cpu())
    valid = ~ref["padding_mask"].unsqueeze(-1)
    assert ((out["x"].cpu() - ref["x"]) * valid).abs().max().item() <= 1e-4


# the CPU kernel's lse is 3-6e-5 off in half precision: there fp32 only
LSE_DTYPES = [torch.float32] + ([torch.float16, torch.bfloat16] if DEVICE.type != "cpu" else [])


@pytest.mark.parametrize("dtype", LSE_DTYPES)
def test_scores_from_the_kernels_log_sum_exp_on_the_device(dtype, monkeypatch):
    """Whether ``ReducibleAttention.log_sum_exp_kernels`` may name this device
    and dtype: the fused kernel's log-sum-exp gives the softmax pass's scores
    (fp32, 1e-5 relative) and the output comes from that one call."""
    from .test_fast_attention import attention, batch, fp32_received_attention
    from npy_tome_layer.encoder.attention import collecting, scoring_path
    from npy_tome_layer.reduction.interface import ReceivedAttentionSum

    _no_tf32()
    attn = attention().to(DEVICE, dtype).eval()
    monkeypatch.setattr(attn, "log_sum_exp_kernels", {DEVICE.type: (dtype,)})

    def second_attention(*args, **kwargs):
        raise AssertionError("no lse from the kernel: it refused the input")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", second_attention)
    x, mask = batch()
    x, mask = x.detach().to(DEVICE, dtype), mask.to(DEVICE)
    with torch.no_grad():
        with scoring_path("fused"), collecting(ReceivedAttentionSum()) as evidence:
            attn(x, x, x, key_padding_mask=mask, need_weights=False)
        expected = fp32_received_attention(attn, x, mask)
    assert evidence.scores.dtype == torch.float32
    torch.testing.assert_close(evidence.scores, expected, atol=0, rtol=1e-5)
