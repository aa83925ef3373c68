"""The pruned HuBERT encoder against fairseq's own HuBERT, on official-format files."""
import math

import pytest
import torch
from fairseq.models.hubert.hubert import HubertModel
from omegaconf import OmegaConf

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.io.checkpoints import load_checkpoint
from npy_tome_layer.encoder.config import hubert_config
from npy_tome_layer.encoder.pruned_hubert import build_pruned_hubert


def fairseq_hubert(path):
    """fairseq's own HubertModel with the checkpoint's weights (the reference)."""
    state = load_checkpoint(path)
    model = HubertModel(hubert_config(state["cfg"]["model"]), state["cfg"]["task"],
                        state["task_state"]["dictionaries"])
    model.load_state_dict(state["model"], strict=True)
    return model.eval()


def waveforms(lengths, total=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = total or max(lengths)
    source = torch.randn(len(lengths), total, generator=g)
    mask = torch.arange(total).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    return source.masked_fill(mask, 0.0), mask


def reduction_arguments(mode, rate):
    """load_pruned_hubert's / build_pruned_hubert's arguments for ``mode`` at
    about ``rate``: coverage takes no keep rate, only the share of received
    attention it keeps; ctc no rate either, the size of its head's vocabulary
    (its random head's labels then decide)."""
    from npy_tome_layer.reduction import REDUCTIONS

    own = {setting.name for setting in REDUCTIONS[mode].settings}
    if "pruning_coverage" in own:
        return {"token_reduction": mode, "pruning_coverage": rate}
    if "ctc_vocab_size" in own:
        return {"token_reduction": mode, "ctc_vocab_size": 6}
    return {"token_reduction": mode, "pruning_rate": rate}


def valid_counts(mask, batch, width):
    if mask is None:
        return [width] * batch
    return (~mask).sum(1).tolist()


def chain(n, rate, steps):
    for _ in range(steps):
        n = max(1, math.ceil(rate * n))
    return n


@pytest.mark.parametrize("ckpt", ["hubert_tiny", "hubert_tiny_preln"])
@pytest.mark.parametrize("padded", [False, True])
def test_rate_one_equals_fairseq(ckpt, padded, request):
    # unpadded: the default model is fairseq's; padded: the option that reproduces it
    path = request.getfixturevalue(ckpt)
    ours = load_pruned_hubert(path, pruning_rate=1.0, fairseq_padding=padded)
    ref = fairseq_hubert(path)
    assert ours.encoder.required_seq_len_multiple == 2
    # 16960 samples -> 52 frames; 16640 -> 51 (odd: exercises the multiple-of-2 padding)
    source, mask = waveforms([16640, 12000] if padded else [16640, 16640])
    mask = mask if padded else None
    with torch.no_grad():
        x, m = ours.extract_features(source, padding_mask=mask)
        x_ref, m_ref = ref.extract_features(source, padding_mask=mask)
    assert x.shape == x_ref.shape
    assert (x - x_ref).abs().max().item() <= 1e-5
    if padded:
        assert torch.equal(m, m_ref)
    else:
        assert m is None and m_ref is None
    # the same state dict loads into both
    assert set(ours.state_dict()) == set(ref.state_dict())


@pytest.mark.parametrize("rate,init", [(0.9, 0), (0.7, 0), (0.5, 1), (0.8, 2), (0.6, 2)])
def test_exact_length_chain(hubert_tiny, rate, init):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=rate, pruning_init_layer=init)
    layers = len(model.encoder.layers)
    lengths = [32000, 20000, 7000]
    source, mask = waveforms(lengths)
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    x, out_mask = res["x"], res["padding_mask"]
    n_in = model.frame_lengths(torch.tensor(lengths)).tolist()  # each row's own frames
    expected = [chain(n, rate, layers - init) for n in n_in]
    assert valid_counts(out_mask, 3, x.size(1)) == expected
    assert x.size(1) == max(expected)
    kept = res["kept_indices"]
    assert len(kept) == layers - init
    widths = [max(chain(n, rate, s + 1) for n in n_in) for s in range(layers - init)]
    assert [k.size(1) for k in kept] == widths
    last = kept[-1]
    for b, kb in enumerate(expected):
        row = last[b, :kb]
        assert (row[1:] > row[:-1]).all(), "kept frames stay in time order"
        assert (row < n_in[b]).all(), "a padded frame never replaces a valid one"


def test_unpadded_batch_returns_no_mask(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.8)
    source, _ = waveforms([16640, 16640])
    with torch.no_grad():
        x, mask = model.extract_features(source)
    assert mask is None and x.size(1) == chain(51, 0.8, 3)


@pytest.mark.parametrize("rate", [1.0, 0.9, 0.7, 0.5])
@pytest.mark.parametrize("init", [0, 2])
def test_batch_invariance(hubert_tiny_preln, rate, init):
    """layer_norm front end: a row's valid outputs do not depend on its batch.
    29200 and 15120 samples padded to 48000 keep the same frame count as alone."""
    model = load_pruned_hubert(hubert_tiny_preln, pruning_rate=rate, pruning_init_layer=init)
    lengths = [29200, 15120]
    batch, mask = waveforms(lengths, total=48000, seed=3)
    batch = torch.cat([batch, waveforms([48000], seed=4)[0]])
    mask = torch.cat([mask, torch.zeros(1, 48000, dtype=torch.bool)])
    with torch.no_grad():
        xb, mb = model.extract_features(batch, padding_mask=mask)
        for b, n in enumerate(lengths):
            xa, ma = model.extract_features(batch[b:b + 1, :n])
            assert ma is None
            kb = int((~mb[b]).sum())
            assert kb == xa.size(1)
            assert (xb[b, :kb] - xa[0]).abs().max().item() <= 1e-4


def test_batch_invariance_any_length_with_conv_length_mask(hubert_tiny_preln):
    """fairseq marks a frame valid if any sample is; the conv-length option
    gives each row exactly its alone-length, so arbitrary lengths work (a
    layer-norm front end has no statistics over time)."""
    model = load_pruned_hubert(hubert_tiny_preln, pruning_rate=0.7, fairseq_padding=True,
                               padding_mask_from_conv_lengths=True)
    lengths = [30001, 17777]
    batch, mask = waveforms(lengths, total=40000, seed=5)
    with torch.no_grad():
        xb, mb = model.extract_features(batch, padding_mask=mask)
        for b, n in enumerate(lengths):
            xa, _ = model.extract_features(batch[b:b + 1, :n])
            kb = int((~mb[b]).sum())
            assert kb == xa.size(1)
            assert (xb[b, :kb] - xa[0]).abs().max().item() <= 1e-4


def test_schedule_values_and_evaluation_at_reached_rate(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_max_rate=1.0, pruning_min_rate=0.6,
                               pruning_schedule_updates=1000)
    rates = []
    for update in (0, 500, 1000, 5000):
        model.set_num_updates(update)
        rates.append(model.encoder.keep_rate)
    assert rates == pytest.approx([1.0, 0.8, 0.6, 0.6])
    source, _ = waveforms([16640])
    with torch.no_grad():
        x, _ = model.extract_features(source)
    assert x.size(1) == chain(51, 0.6, 3)


def test_gradient_reaches_input_of_first_layer(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.5).train()
    captured = {}

    def keep_input(module, args, kwargs):
        args[0].retain_grad()
        captured["x"] = args[0]

    model.encoder.layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)
    source, mask = waveforms([16640, 12000])
    x, out_mask = model.extract_features(source, padding_mask=mask)
    x.masked_fill(out_mask.unsqueeze(-1), 0).pow(2).sum().backward()
    grad = captured["x"].grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.encoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_training_with_layerdrop_prunes_after_layers_that_ran(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.5, encoder_layerdrop=0.5).train()
    source, _ = waveforms([16640])
    for _ in range(5):
        res = model(source, mask=False, features_only=True)
        assert res["x"].size(1) == chain(51, 0.5, len(res["kept_indices"]))


def test_bf16_runs_with_fp32_scores(hubert_tiny, monkeypatch):
    import npy_tome_layer.reduction.reductions as token_reduction

    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7).to(torch.bfloat16)
    seen = []
    real = token_reduction.select_frames

    def spy(scores, padding_mask, rate):
        seen.append(scores.dtype)
        return real(scores, padding_mask, rate)

    monkeypatch.setattr(token_reduction, "select_frames", spy)
    source, _ = waveforms([16640])
    with torch.no_grad():
        x, _ = model.extract_features(source.to(torch.bfloat16))
    assert seen == [torch.float32] * 3 and x.dtype == torch.bfloat16
    assert x.size(1) == chain(51, 0.7, 3)


@pytest.mark.parametrize("kwargs,words", [
    (dict(pruning_rate=0.0), ["pruning_rate", "0.0", "(0, 1]"]),
    (dict(pruning_rate=1.5), ["pruning_rate", "1.5", "(0, 1]"]),
    (dict(pruning_max_rate=0.5, pruning_min_rate=0.9), ["pruning_min_rate", "0.9", "0.5"]),
    (dict(pruning_max_rate=1.2, pruning_min_rate=0.9), ["pruning_max_rate", "1.2"]),
    (dict(pruning_init_layer=-1), ["pruning_init_layer", "-1", "[0, 3]"]),
    (dict(pruning_init_layer=4), ["pruning_init_layer", "4", "[0, 3]"]),
])
def test_bad_arguments_raise_when_built(hubert_tiny, kwargs, words):
    cfg = load_checkpoint(hubert_tiny)["cfg"]["model"]
    with pytest.raises(ValueError) as err:
        build_pruned_hubert(cfg, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_init_layer_equal_to_depth_is_dense(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.5, pruning_init_layer=3)
    source, _ = waveforms([16640])
    with torch.no_grad():
        res = model(source, mask=False, features_only=True)
        x_ref, _ = fairseq_hubert(hubert_tiny).extract_features(source)
    x = res["x"]
    assert res["kept_indices"] == []
    assert (x - x_ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("block_bytes", [1, 4 * 9 * 9 * 2, 4 * 9 * 9 * 8])  # 1 head, 2 heads, 2 rows
def test_attention_in_blocks_equals_one_block(block_bytes):
    from fairseq.modules import MultiheadAttention

    from npy_tome_layer.encoder.attention import ReducibleAttention, collecting
    from npy_tome_layer.reduction.interface import ReceivedAttentionSum

    torch.manual_seed(0)
    attn = MultiheadAttention(32, 4, self_attention=True).double()
    attn.__class__ = ReducibleAttention  # as the encoder installs it
    x = torch.randn(9, 3, 32, dtype=torch.float64, requires_grad=True)  # T x B x C
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[1, 6:] = True
    mask[2, 3:] = True
    log_size = torch.rand(3, 9, dtype=torch.float64)

    def run(block, key_log_size=log_size):
        attn.cpu_block_bytes = block
        with collecting(ReceivedAttentionSum(key_log_size)) as evidence:
            out, extra = attn(x, x, x, key_padding_mask=mask)
        assert extra is None
        grad, = torch.autograd.grad((out ** 2).sum(), x)
        return out, evidence.scores, grad

    whole = run(1 << 30)
    for a, b in zip(run(block_bytes), whole):
        assert torch.allclose(a.double(), b.double(), atol=1e-6)
    # the received attention is the head mean over valid queries
    assert torch.allclose(whole[1].sum(dim=1), (~mask).sum(dim=1).float(), atol=1e-5)
    # and the output is fairseq's attention when no size bias is added
    ours, _, _ = run(block_bytes, key_log_size=None)
    theirs, _ = attn(x, x, x, key_padding_mask=mask, need_weights=False)  # nothing collected
    valid = ~mask.t()
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-6)


@pytest.mark.parametrize("rate,init", [(0.9, 0), (0.85, 2), (1.0, 0)])
def test_padded_rows_equal_themselves_alone_by_default(hubert_tiny, rate, init):
    """HuBERT-base's GroupNorm front end and lengths that are not multiples of
    the 320-sample hop: every padded row gives the frames, kept positions and
    features of the same audio alone."""
    model = load_pruned_hubert(hubert_tiny, pruning_rate=rate, pruning_init_layer=init)
    lengths = [29237, 17777, 30999, 8123]
    batch, mask = waveforms(lengths, total=33001, seed=7)
    with torch.no_grad():
        res = model(batch, padding_mask=mask, mask=False, features_only=True)
        for b, n in enumerate(lengths):
            alone = model(batch[b:b + 1, :n], mask=False, features_only=True)
            kb = int((~res["padding_mask"][b]).sum())
            assert kb == alone["x"].size(1)
            assert (res["x"][b, :kb] - alone["x"][0]).abs().max().item() <= 1e-4
            for kept_b, kept_a in zip(res["kept_indices"], alone["kept_indices"]):
                assert kept_b[b, :kept_a.size(1)].tolist() == kept_a[0].tolist()


def test_fairseq_padding_reproduces_the_batch_dependence(hubert_tiny):
    """The option keeps fairseq's padded front end: the same audio in a padded
    batch differs from itself alone (what the default removes)."""
    model = load_pruned_hubert(hubert_tiny, pruning_rate=1.0, fairseq_padding=True)
    batch, mask = waveforms([29237, 12000], total=33001, seed=7)
    with torch.no_grad():
        xb, mb = model.extract_features(batch, padding_mask=mask)
        xa, _ = model.extract_features(batch[:1, :29237])
    n = min(xa.size(1), int((~mb[0]).sum()))
    assert (xb[0, :n] - xa[0, :n]).abs().max().item() > 1e-2


def test_group_norm_of_an_empty_row_stays_finite(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.9)
    batch, mask = waveforms([16000, 0], total=16000, seed=1)
    with torch.no_grad():
        x, m = model.extract_features(batch, padding_mask=mask)
    assert torch.isfinite(x).all() and m[1].all() and not m[0].all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_batch_invariant_front_end_in_half_precision(hubert_tiny, dtype):
    """The per-row GroupNorm computes in fp32 and hands back the input's dtype:
    the row equals itself alone to a few units in the dtype's last place (its
    fp32 statistics, taken for all rows at once, agree with the fused kernel's
    on the row alone to float rounding, which can tip a half-precision
    rounding that the half-precision layers after it carry on)."""
    model = load_pruned_hubert(hubert_tiny, pruning_rate=1.0).to(dtype)
    batch, mask = waveforms([29237, 12001], total=33001, seed=7)
    with torch.no_grad():
        conv, conv_mask = model.extract_features(batch.to(dtype), padding_mask=mask,
                                                 ret_conv=True)
        alone, _ = model.extract_features(batch[1:, :12001].to(dtype), ret_conv=True)
    n = int((~conv_mask[1]).sum())
    assert conv.dtype == dtype and torch.isfinite(conv).all() and n == alone.size(1)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(conv[1, :n], alone[0], rtol=2 * eps, atol=4 * eps)


def test_the_encoder_is_built_once_and_is_fairseqs_own(monkeypatch):
    """fairseq's HubertModel builds its transformer; the pruned model makes that
    one shorten (no second encoder, no second draw of initial weights)."""
    from fairseq.models.wav2vec import wav2vec2

    from npy_tome_layer.encoder.config import hubert_model_config
    from npy_tome_layer.encoder.pruned_hubert import PrunedTransformerEncoder

    built = []
    original = wav2vec2.TransformerEncoder.__init__
    monkeypatch.setattr(wav2vec2.TransformerEncoder, "__init__",
                        lambda self, *a, **k: built.append(self) or original(self, *a, **k))
    model = build_pruned_hubert(hubert_model_config("tiny"), pruning_rate=0.7)
    assert built == [model.encoder] and isinstance(model.encoder, PrunedTransformerEncoder)
