from . import pruned_hubert  # noqa: F401
