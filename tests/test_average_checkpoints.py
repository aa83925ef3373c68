"""Checkpoint averaging: the mean of the tensors, a file fairseq loads, the
last N chosen by number, an existing output never replaced silently."""
import os
import subprocess
import sys

import pytest
import torch

from npy_tome_layer.tools.average_checkpoints import (
    AveragingError,
    average_model_states,
    last_checkpoints,
)
from npy_tome_layer.io.atomic import save_atomically
from npy_tome_layer.io.checkpoints import load_checkpoint


@pytest.fixture
def two_checkpoints(mt_checkpoint, tmp_path):
    """A real fairseq-train checkpoint and a copy with different weights
    (an elementwise map, so tensors the model ties stay tied)."""
    first = str(tmp_path / "checkpoint1.pt")
    second = str(tmp_path / "checkpoint2.pt")
    raw = torch.load(mt_checkpoint[0], weights_only=True)
    save_atomically(raw, first)
    raw["model"] = {k: v * 3 - 0.5 if v.is_floating_point() else v
                    for k, v in raw["model"].items()}
    save_atomically(raw, second)
    return first, second


def test_average_of_two_is_the_mean_of_their_tensors(two_checkpoints):
    first, second = two_checkpoints
    a, b = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    avg = average_model_states([second, first])["model"]
    assert set(avg) == set(a)
    for k in a:
        if a[k].is_floating_point():
            expected = ((a[k].double() + b[k].double()) / 2).to(a[k].dtype)
            assert torch.equal(avg[k], expected), k
            assert not torch.equal(avg[k], a[k]), k
        else:
            assert torch.equal(avg[k], a[k])


def test_cli_writes_a_checkpoint_fairseq_loads(two_checkpoints, tmp_path, st_corpus):
    from fairseq import checkpoint_utils

    out = str(tmp_path / "avg.pt")
    cmd = [sys.executable, "-m", "npy_tome_layer.tools.average_checkpoints",
           "--checkpoint-dir", str(tmp_path), "--num-epoch-checkpoints", "2", "--output", out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "averaged 2 checkpoints" in proc.stdout
    # plain containers only, as fairseq writes them: torch's weights-only loader takes it
    raw = torch.load(out, weights_only=True)
    assert raw["last_optimizer_state"] is None and len(raw["averaged_from"]) == 2
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [out], arg_overrides={"data": st_corpus["data"]})
    expected = average_model_states(list(two_checkpoints))["model"]
    for k, v in models[0].state_dict().items():
        assert torch.equal(v, expected[k]), k
    # a second run refuses to replace the output
    before = os.stat(out).st_mtime_ns
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "exists; pass --overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr and os.stat(out).st_mtime_ns == before


def test_last_checkpoints_by_number_not_name_order(tmp_path):
    for name in ("checkpoint2.pt", "checkpoint9.pt", "checkpoint10.pt", "checkpoint_last.pt",
                 "checkpoint_best.pt", "checkpoint_3_500.pt", "checkpoint_4_1000.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in last_checkpoints(str(tmp_path), 2)] == \
        ["checkpoint10.pt", "checkpoint9.pt"]
    assert [os.path.basename(p) for p in last_checkpoints(str(tmp_path), 1, by_update=True)] == \
        ["checkpoint_4_1000.pt"]
    with pytest.raises(AveragingError, match=r"asked for the last 4 checkpointEPOCH.pt files, found 3"):
        last_checkpoints(str(tmp_path), 4)


def test_mismatched_checkpoints_name_the_file(two_checkpoints, tmp_path):
    first, _ = two_checkpoints
    raw = torch.load(first, weights_only=True)
    raw["model"].pop(next(iter(raw["model"])))
    odd = str(tmp_path / "odd.pt")
    save_atomically(raw, odd)
    with pytest.raises(AveragingError, match=r"odd.pt: parameters differ from .*checkpoint1.pt"):
        average_model_states([first, odd])
