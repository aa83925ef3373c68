"""The fairseq glue: HuBERT whose transformer shortens the sequence.

  pruned_hubert.py  ``PrunedHubertModel`` / ``PrunedTransformerEncoder``,
                    ``build_pruned_hubert``, ``load_pruned_hubert`` (official files)
  attention.py      fairseq's attention, handing a reduction its evidence
  front_end.py      the conv front end, batch-invariant
  config.py         HuBERT configurations (from a checkpoint, by size)
"""
from .pruned_hubert import (  # noqa: F401
    REDUCTION_PREFIX,
    PrunedHubertModel,
    build_pruned_hubert,
    load_hubert_weights,
    load_pruned_hubert,
)
