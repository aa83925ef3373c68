from . import deltalm, hubert_transformer, pruned_hubert  # noqa: F401  (registration)
