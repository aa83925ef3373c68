"""The method: how the HuBERT sequence is shortened between transformer layers.
Pure torch; of this package it imports only ``errors.py`` and ``values.py``.

  interface.py   ``TokenReduction`` (its settings, what it needs from the
                 attention, after which layers it acts, how it reduces, its
                 loss if any), the evidence the attention fills, the registry
                 ``REDUCTIONS`` and ``build_reduction``
  settings.py    ``Setting``: one value a user gives, declared once (name, rule,
                 default, help); flags, defaults and API keywords follow
  reductions.py  the registered ones: prune (the method), merge, conv, uniform, random,
                 and the content-adaptive coverage and the windowed local
  adjacent.py    the registered ones whose tokens stand for runs of frames (spans):
                 adjacent (A-ToMe neighbour merging) and fold (prune, dropped
                 frames averaged into the nearest kept one)
  ctc.py         the registered one the transcript trains: ctc (a CTC head's
                 labels decide which frames are one token; its loss)
  runs.py        contiguous runs of tokens pooled into one (states, sizes, spans)
  selection.py   the pruning rule as pure tensor functions (keep counts, received
                 attention, top-k in time order, gathering; the blind choices)
  merging.py     ToMe-style bipartite merging
  keep_rate.py   fixed keep rate or a linear schedule over updates, and its settings
  cost.py        frames per layer and FLOPs as arithmetic (the benchmark's ideal)
"""
from . import reductions  # noqa: F401  (registers every reduction)
from . import adjacent  # noqa: F401  (registers adjacent and fold, after those)
from . import ctc  # noqa: F401  (registers ctc)
from .interface import (  # noqa: F401
    ENCODER_SETTINGS,
    EVIDENCE_LABEL,
    PROFILE_LABELS,
    REDUCE_LABEL,
    REDUCTION_SETTINGS,
    REDUCTIONS,
    AttentionEvidence,
    Tokens,
    TokenReduction,
    build_reduction,
    default_reduction,
    follows_rate,
    reduction_defaults,
    register_reduction,
)
from .keep_rate import KeepRateSchedule  # noqa: F401
from .settings import Setting  # noqa: F401
