"""npy_tome_layer: pruned-HuBERT + DeltaLM speech translation as a fairseq --user-dir plugin.

Importing the package (installed, or via ``--user-dir npy_tome_layer``)
registers its task, models, architectures, criterion and scorer with fairseq,
makes fairseq checkpoints load under torch >= 2.6 (``io/fairseq_patches.py``),
and silences the deprecation warnings fairseq's own calls cause
(``io/library_noise.py``).

Layers, each importing only those above it in this list: ``reduction`` (the
method), ``io``, ``encoder`` (fairseq glue), ``st`` (the ST system),
``evaluation`` (what the tools share), ``demo``, ``tools`` (commands); every
layer raises ``errors.InputError`` for bad input.
"""
from .errors import install_one_line_errors
from .io.library_noise import silence_library_noise

silence_library_noise()  # before fairseq is imported: some of it speaks at import

from .io import fairseq_patches  # noqa: E402

fairseq_patches.install()
install_one_line_errors()

from . import st  # noqa: E402,F401  (registration)
from .encoder import build_pruned_hubert, load_pruned_hubert  # noqa: E402,F401

__version__ = "0.1.0"
