import os
import sys

import pytest

import npy_tome_layer  # noqa: F401  (registration + checkpoint-loading fix)
from npy_tome_layer.standins import write_hubert_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def hubert_tiny(tmp_path_factory):
    """Base-like: post-LN, GroupNorm front end, required_seq_len_multiple=2."""
    path = str(tmp_path_factory.mktemp("hubert") / "hubert_tiny.pt")
    write_hubert_checkpoint(path, "tiny", num_clusters=20)
    return path


@pytest.fixture(scope="session")
def hubert_tiny_preln(tmp_path_factory):
    """Large-like: pre-LN (layer_norm_first), layer_norm front end."""
    path = str(tmp_path_factory.mktemp("hubert") / "hubert_tiny_preln.pt")
    write_hubert_checkpoint(path, "tiny", num_clusters=20, layer_norm_first=True,
                            extractor_mode="layer_norm", encoder_layers=4)
    return path
