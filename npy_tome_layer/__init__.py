"""npy_tome_layer: pruned-HuBERT + DeltaLM speech translation as a fairseq --user-dir plugin.

Importing the package (installed, or via ``--user-dir npy_tome_layer``)
registers its tasks, models, architectures and criteria with fairseq, and
makes fairseq checkpoints load under torch >= 2.6 (see checkpoint_loading.py).
"""
from . import checkpoint_loading

checkpoint_loading.install()

from . import criterions, data, models, scoring, tasks  # noqa: E402,F401  (registration)
from .models.pruned_hubert import load_pruned_hubert  # noqa: E402,F401

__version__ = "0.1.0"
