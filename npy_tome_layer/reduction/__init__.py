"""The method: how the HuBERT sequence is shortened between transformer layers.
Pure torch; imports nothing else of this package.

  interface.py   ``TokenReduction`` (what a reduction needs from the attention,
                 after which layers it acts, how it reduces), the evidence the
                 attention fills, the registry ``REDUCTIONS``
  reductions.py  the registered ones: prune (the method), merge, conv, uniform, random
  selection.py   the pruning rule as pure tensor functions (keep counts, received
                 attention, top-k in time order, gathering; the blind choices)
  merging.py     ToMe-style bipartite merging
  keep_rate.py   fixed keep rate or a linear schedule over updates
  cost.py        frames per layer and FLOPs as arithmetic (the benchmark's ideal)
"""
from . import reductions  # noqa: F401  (registers prune, merge, conv, uniform, random)
from .interface import (  # noqa: F401
    EVIDENCE_LABEL,
    PROFILE_LABELS,
    REDUCE_LABEL,
    REDUCTIONS,
    AttentionEvidence,
    Tokens,
    TokenReduction,
    build_reduction,
    register_reduction,
)
from .keep_rate import KeepRateSchedule, check_rate  # noqa: F401
