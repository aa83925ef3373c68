"""ST checkpoints saved by fairseq-train before the encoder redesign (commit f1c86f3,
``tests/data/st_checkpoints_v1/make.py``) load unchanged and give the outputs they gave then."""
import os

import pytest
import torch

DATA = os.path.join(os.path.dirname(__file__), "data", "st_checkpoints_v1")


@pytest.mark.parametrize("name", ["schedule", "merge", "conv"])
def test_old_st_checkpoint_loads_and_gives_the_same_outputs(name):
    from fairseq import checkpoint_utils

    expected = torch.load(os.path.join(DATA, "expected.pt"), weights_only=True)
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [os.path.join(DATA, f"{name}.pt")], arg_overrides={"data": DATA})
    model = models[0].eval()
    audio, lengths = expected["audio"], expected["lengths"]
    want = expected[name]
    with torch.no_grad():
        out = model.encoder(audio, lengths)
        x, mask = model.encoder.hubert.extract_features(
            audio, padding_mask=torch.arange(audio.size(1))[None] >= lengths[:, None])
    assert model.encoder.hubert.encoder.keep_rate == pytest.approx(want["keep_rate"])
    torch.testing.assert_close(out["encoder_out"][0], want["encoder_out"], atol=1e-5, rtol=1e-5)
    assert torch.equal(mask, want["hubert_mask"])
    valid = ~mask.unsqueeze(-1)
    torch.testing.assert_close(x * valid, want["hubert"] * valid, atol=1e-5, rtol=1e-5)
