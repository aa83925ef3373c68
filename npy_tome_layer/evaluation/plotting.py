"""matplotlib for writing PNG files: no display, no font-search debug lines
(importing fairseq runs logging.basicConfig(level=DEBUG) in wav2vec2_classification.py)."""
import logging


def pyplot():
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
