"""The speech translation system as fairseq parts (imported for registration):
model ``hubert_transformer_pruning`` (pruned HuBERT -> conv subsampler ->
DeltaLM, ``model.py``), model ``deltalm`` (``deltalm.py``), task and criterion
``speech_and_text_translation`` (``task.py``, ``criterion.py``), the speech
manifest dataset (``dataset.py``) and the ``sacrebleu`` scorer (``scoring.py``)."""
from . import criterion, deltalm, model, scoring, task  # noqa: F401  (registration)
