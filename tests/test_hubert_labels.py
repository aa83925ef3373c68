"""HuBERT's first-iteration targets (tools/hubert_labels): MFCC framing and
deltas as Kaldi's, the validation share, the architecture of a HuBERT file."""
import numpy as np
import pytest

from npy_tome_layer.errors import InputError
from npy_tome_layer.tools.hubert_labels import (arch_flags, deltas, mfcc_features,
                                                mfcc_frame_count, validation_ids)


@pytest.mark.parametrize("samples", [400, 401, 559, 560, 16000, 31646])
def test_mfcc_frames_are_whole_25ms_windows_every_10ms(samples):
    audio = np.random.default_rng(0).standard_normal(samples).astype(np.float32)
    features = mfcc_features(audio)
    assert features.shape == (mfcc_frame_count(samples), 39) == (1 + (samples - 400) // 160, 39)
    assert np.isfinite(features).all()


def test_short_audio_has_no_mfcc_frame():
    assert mfcc_frame_count(399) == 0 and mfcc_frame_count(0) == 0


def test_deltas_are_kaldis_regression_with_repeated_edges():
    ramp = np.arange(10, dtype=np.float64)[:, None] * np.array([[1.0, -2.0]])
    d = deltas(ramp)
    np.testing.assert_allclose(d[2:-2], np.tile([[1.0, -2.0]], (6, 1)))  # the slope inside
    # first frame: (1*(x1 - x0) + 2*(x2 - x0)) / 10 with x[-1] = x[-2] = x0
    np.testing.assert_allclose(d[0], [0.5, -1.0])
    assert deltas(np.zeros((1, 3))).shape == (1, 3)


def test_validation_share_is_deterministic_and_leaves_training_rows():
    ids = [f"u{i}" for i in range(40)]
    assert validation_ids(ids, 0.05, 1) == validation_ids(list(reversed(ids)), 0.05, 1)
    assert len(validation_ids(ids, 0.05, 1)) == 2
    assert len(validation_ids(ids[:2], 1.0, 1)) == 1
    with pytest.raises(InputError, match="at least 2 train rows"):
        validation_ids(ids[:1], 0.05, 1)


def test_arch_flags_rebuild_the_files_shape(hubert_tiny, st_corpus):
    flags = arch_flags(hubert_tiny)
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert pairs["--encoder-layers"] == "3" and pairs["--encoder-embed-dim"] == "32"
    assert pairs["--conv-feature-layers"].startswith("[(32,10,5)]")
    with pytest.raises(InputError, match="not a HuBERT file"):
        arch_flags(st_corpus["deltalm"])
