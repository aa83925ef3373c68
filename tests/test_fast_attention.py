"""The fused attention path of the acting layers: output from PyTorch's fused
kernel, scores from a separate no-grad pass, equal to the explicit path
(kept indices identical, scores within 1e-5 relative) for every reduction
that reads attention, on padded batches and a batch with an empty row."""
import pytest
import torch
from fairseq.modules import MultiheadAttention

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.encoder.attention import (ReducibleAttention, chosen_path, collecting,
                                              scoring_path)
from npy_tome_layer.reduction import REDUCTIONS
from npy_tome_layer.reduction.interface import KeyMean, ReceivedAttentionSum

from .test_pruned_hubert import reduction_arguments, waveforms


def attention(dim=32, heads=4):
    torch.manual_seed(0)
    attn = MultiheadAttention(dim, heads, self_attention=True)
    attn.__class__ = ReducibleAttention  # as the encoder installs it
    return attn


def batch(length=37):
    x = torch.randn(length, 4, 32, requires_grad=True)  # T x B x C
    mask = torch.zeros(4, length, dtype=torch.bool)
    mask[1, 30:] = True
    mask[2, 5:] = True
    mask[3, 1:] = True  # one valid frame
    return x, mask


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("evidence_type", [ReceivedAttentionSum, KeyMean])
@pytest.mark.parametrize("block_bytes", [1, 4 * 4 * 37 * 5, 1 << 30])
def test_fused_path_equals_explicit_outputs_scores_and_gradients(training, evidence_type,
                                                                 block_bytes):
    attn = attention().train(training)
    attn.cpu_block_bytes = block_bytes
    x, mask = batch()
    log_size = torch.rand(4, x.size(0)) if evidence_type is KeyMean else None

    def run(path):
        with scoring_path(path), collecting(evidence_type(log_size)) as evidence:
            out, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)
        grad, = torch.autograd.grad((out ** 2).sum(), x)
        kept = evidence.scores if evidence_type is ReceivedAttentionSum else evidence.keys
        return out, kept, grad

    explicit, fused = run("explicit"), run("fused")
    valid = ~mask.t()  # outputs of padded positions are not used
    torch.testing.assert_close(fused[0][valid], explicit[0][valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[1], explicit[1], atol=0, rtol=1e-5)
    torch.testing.assert_close(fused[2], explicit[2], atol=1e-5, rtol=1e-4)


def test_fused_path_output_is_fairseqs_dense_attention():
    attn = attention().eval()
    x, mask = batch()
    with torch.no_grad():
        theirs, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)  # nothing collected
        with scoring_path("fused"), collecting(ReceivedAttentionSum()):
            ours, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)
    valid = ~mask.t()
    torch.testing.assert_close(ours[valid], theirs[valid], atol=1e-6, rtol=1e-5)


def test_the_scoring_pass_keeps_no_graph_and_no_probabilities():
    attn = attention().train()
    x, mask = batch()
    with scoring_path("fused"), collecting(ReceivedAttentionSum()) as evidence:
        out, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)
    assert not evidence.scores.requires_grad and evidence.scores.dtype == torch.float32
    # autograd saved nothing T x T (the explicit path saves each block's probabilities)
    saved = []
    node = [out.grad_fn]
    seen = set()
    while node:
        fn = node.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        saved += [getattr(fn, a) for a in dir(fn) if a.startswith("_saved_")
                  and isinstance(getattr(fn, a, None), torch.Tensor)]
        node += [n for n, _ in fn.next_functions]
    assert not [t for t in saved if t.dim() >= 2 and t.shape[-1] == t.shape[-2] == x.size(0)]


@pytest.mark.parametrize("mode", [name for name, cls in REDUCTIONS.items() if cls.evidence_type])
@pytest.mark.parametrize("rate,init", [(0.7, 0), (0.9, 1)])
def test_encoder_keeps_the_same_frames_on_both_paths(hubert_tiny, mode, rate, init):
    model = load_pruned_hubert(hubert_tiny, pruning_init_layer=init,
                               **reduction_arguments(mode, rate))
    source, mask = waveforms([16640, 9000, 4000])
    results = {}
    for path in ("explicit", "fused"):
        with scoring_path(path), torch.no_grad():
            results[path] = model(source, padding_mask=mask, mask=False, features_only=True)
    explicit, fused = results["explicit"], results["fused"]
    assert len(explicit["kept_indices"]) == len(fused["kept_indices"]) > 0
    for a, b in zip(explicit["kept_indices"], fused["kept_indices"]):
        assert torch.equal(a, b)
    assert torch.equal(explicit["padding_mask"], fused["padding_mask"])
    valid = ~fused["padding_mask"]
    torch.testing.assert_close(fused["x"][valid], explicit["x"][valid], atol=1e-5, rtol=1e-5)


def test_an_empty_row_stays_finite_on_the_fused_path(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7)
    source = torch.randn(2, 16000)
    mask = torch.zeros(2, 16000, dtype=torch.bool)
    mask[1] = True  # an empty utterance in the batch
    with scoring_path("fused"), torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    assert torch.isfinite(res["x"]).all() and res["padding_mask"][1].all()
    with torch.no_grad():
        alone = model(source[:1], mask=False, features_only=True)
    torch.testing.assert_close(res["x"][0, :alone["x"].size(1)], alone["x"][0], atol=1e-5,
                               rtol=1e-5)


def test_auto_takes_the_fused_path_except_for_cpu_inference():
    assert chosen_path(torch.device("cpu"), training=False) == "explicit"
    assert chosen_path(torch.device("cpu"), training=True) == "fused"
    assert chosen_path(torch.device("cuda"), training=False) == "fused"
    with scoring_path("explicit"):
        assert chosen_path(torch.device("cuda"), training=True) == "explicit"
    with pytest.raises(ValueError, match="scoring path"):
        with scoring_path("flash"):
            pass


LOG_SUM_EXP_ON_CPU = {"cpu": (torch.float32,)}


def fp32_received_attention(attn, x, mask):
    """The scores as stated, in fp32 from the layer's own (any dtype) projections:
    head mean of the softmax of q.k / sqrt(d) over valid keys, summed over valid
    queries."""
    from npy_tome_layer.reduction.selection import received_attention

    length, bsz, _ = x.shape

    def heads(t):
        return t.reshape(length, bsz, attn.num_heads, attn.head_dim).permute(1, 2, 0, 3).float()

    logits = (heads(attn.q_proj(x)) * attn.scaling) @ heads(attn.k_proj(x)).transpose(-1, -2)
    logits = logits.masked_fill(mask[:, None, None, :], float("-inf"))
    return received_attention(logits.softmax(dim=-1), mask)


@pytest.mark.parametrize("training", [False, True])
def test_scores_from_the_kernels_log_sum_exp_equal_the_softmax_pass(training, monkeypatch):
    """Where the fused kernel hands back each query's log-sum-exp, the scoring
    pass is exp(logits - lse): the same scores (1e-5 relative), outputs and
    gradients, with the output from that one kernel call (no second attention)."""
    attn = attention().train(training)
    attn.cpu_block_bytes = 4 * 4 * 37 * 5  # several blocks of rows and queries
    x, mask = batch()

    def run(kernels):
        monkeypatch.setattr(attn, "log_sum_exp_kernels", kernels)
        with scoring_path("fused"), collecting(ReceivedAttentionSum()) as evidence:
            out, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)
        grad, = torch.autograd.grad((out ** 2).sum(), x)
        return out, evidence.scores, grad

    softmax = run({})

    def second_attention(*args, **kwargs):
        raise AssertionError("the output must come from the kernel that gave the lse")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", second_attention)
    lse = run(LOG_SUM_EXP_ON_CPU)
    valid = ~mask.t()
    torch.testing.assert_close(lse[0][valid], softmax[0][valid], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lse[1], softmax[1], atol=0, rtol=1e-5)
    torch.testing.assert_close(lse[2], softmax[2], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(lse[1], fp32_received_attention(attn, x, mask), atol=0,
                                   rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_scores_are_fp32_under_half_precision(dtype, monkeypatch):
    """Half-precision layers score in fp32: the kernel's lse is not that exact
    in half precision, so the softmax pass scores there even where the kernel
    serves fp32."""
    attn = attention().to(dtype).eval()
    monkeypatch.setattr(attn, "log_sum_exp_kernels", LOG_SUM_EXP_ON_CPU)
    x, mask = batch()
    x = x.detach().to(dtype)
    with torch.no_grad():
        with scoring_path("fused"), collecting(ReceivedAttentionSum()) as evidence:
            attn(x, x, x, key_padding_mask=mask, need_weights=False)
        expected = fp32_received_attention(attn, x, mask)
    assert evidence.scores.dtype == torch.float32
    torch.testing.assert_close(evidence.scores, expected, atol=0, rtol=1e-5)


@pytest.mark.parametrize("refusal", ["dropout", "no kernel", "not for this input"])
def test_the_softmax_pass_scores_where_the_kernel_cannot(refusal, monkeypatch):
    import npy_tome_layer.encoder.attention as attention_module

    attn = attention()
    monkeypatch.setattr(attn, "log_sum_exp_kernels", LOG_SUM_EXP_ON_CPU)
    if refusal == "dropout":  # the CPU kernel has none: training with attention dropout
        attn.train()
        attn.dropout_module.p = 0.1
    elif refusal == "no kernel":
        monkeypatch.setattr(attention_module, "_aten", lambda name: getattr(
            torch.ops.aten, name + "_missing"))
    else:
        def refuses(*args, **kwargs):
            raise NotImplementedError("not for this dtype")
        monkeypatch.setattr(attention_module, "_aten", lambda name: refuses)
    x, mask = batch()
    with torch.no_grad(), scoring_path("fused"), collecting(ReceivedAttentionSum()) as evidence:
        out, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)
        expected = fp32_received_attention(attn, x, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(evidence.scores, expected, atol=0, rtol=1e-5)
