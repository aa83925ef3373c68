"""The work of a forward pass does not grow with the batch: every reduction's
selection, the front end's per-row statistics and the fused path's scoring
pass run as batched tensor operations, so a no-grad forward of 12 rows issues
as many tensor operations as one of 2 rows of the same lengths; and the host
waits for the device at most once per layer that shortens the sequence."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from npy_tome_layer.encoder.attention import scoring_path
from npy_tome_layer.encoder.config import hubert_model_config
from npy_tome_layer.encoder.pruned_hubert import build_pruned_hubert
from npy_tome_layer.reduction import REDUCTIONS

from .test_pruned_hubert import reduction_arguments, waveforms

aten = torch.ops.aten
# operations whose result the host must read before it can go on (a device
# synchronisation on a GPU): a scalar read, or an output whose size is the data's
HOST_READS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.unique_dim,
              aten._unique2, aten.unique_consecutive, aten.repeat_interleave}


class CountingOps(TorchDispatchMode):
    """Counts the aten operations run inside it, and the host reads among them."""

    def __init__(self):
        super().__init__()
        self.ops = self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if func.overloadpacket in HOST_READS:
            self.host_reads += 1
        return func(*args, **(kwargs or {}))


RATE, INIT = 0.7, 0
PATTERN = [16640, 9000]  # two lengths: the shorter row is padded


def tiny_model(mode):
    """Three layers, GroupNorm front end (the batch-invariant statistics run)."""
    torch.manual_seed(0)
    return build_pruned_hubert(hubert_model_config("tiny"), pruning_init_layer=INIT,
                               **reduction_arguments(mode, RATE)).eval()


def counted_forward(model, rows, path, monkeypatch):
    """(aten operations, host reads) of a no-grad forward of ``rows`` rows
    (PATTERN repeated); ``tolist`` reads the host without an aten call, so it
    is counted by hand."""
    source, mask = waveforms(PATTERN * (rows // len(PATTERN)))
    lists = []
    plain = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: lists.append(1) or plain(t))
    try:
        with torch.no_grad(), scoring_path(path), CountingOps() as counter:
            model(source, padding_mask=mask, mask=False, features_only=True)
    finally:
        monkeypatch.setattr(torch.Tensor, "tolist", plain)
    return counter.ops, counter.host_reads + len(lists)


@pytest.mark.parametrize("path", ["explicit", "fused"])
@pytest.mark.parametrize("mode", sorted(REDUCTIONS))
def test_a_forward_does_as_many_operations_for_12_rows_as_for_2(mode, path, monkeypatch):
    model = tiny_model(mode)
    small, _ = counted_forward(model, 2, path, monkeypatch)
    large, _ = counted_forward(model, 12, path, monkeypatch)
    assert small == large, f"{mode} ({path}): {small} operations at batch 2, {large} at 12"


# Host reads outside the reductions, per forward: the input check's
# ``bool(finite.all())`` and its search for too-short rows (``nonzero``), and
# fairseq's ``index_put`` of zeros at the padded frames before the first layer
# (a boolean mask: not seen here as a read, a sync on a GPU all the same).
FIXED_HOST_READS = 2


@pytest.mark.parametrize("path", ["explicit", "fused"])
@pytest.mark.parametrize("mode", sorted(REDUCTIONS))
def test_the_host_reads_at_most_once_per_acting_layer(mode, path, monkeypatch):
    model = tiny_model(mode)
    encoder = model.encoder
    acting = sum(encoder.length_reduction.acts_after(i, INIT, encoder.keep_rate)
                 for i in range(len(encoder.layers)))
    _, reads = counted_forward(model, 12, path, monkeypatch)
    assert reads <= acting + FIXED_HOST_READS, f"{mode} ({path}): {reads} host reads, " \
        f"{acting} acting layers"


@pytest.mark.parametrize("groups", [6, 2])
def test_front_end_statistics_of_all_rows_at_once_equal_each_row_alone(groups):
    from npy_tome_layer.encoder.front_end import valid_frames_group_norm

    torch.manual_seed(0)
    x = torch.randn(4, 6, 300) * 3 + 5  # offset: a one-pass variance would lose digits
    frames = torch.tensor([300, 171, 9, 0])
    weight, bias = torch.randn(6), torch.randn(6)
    out = valid_frames_group_norm(x, frames, groups, weight, bias, 1e-5)
    for b, n in enumerate(frames.tolist()):
        if n:
            alone = torch.nn.functional.group_norm(x[b:b + 1, :, :n], groups, weight, bias, 1e-5)
            torch.testing.assert_close(out[b, :, :n], alone[0], atol=1e-5, rtol=1e-5)
        assert not out[b, :, n:].any()  # past the row's end: 0
