"""matplotlib for writing PNG files: no display, no font-search debug lines
(importing fairseq runs logging.basicConfig(level=DEBUG) in wav2vec2_classification.py)."""
import logging


def pyplot():
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path: str, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` atomically (a killed run leaves no half PNG) and close it."""
    from ..io.atomic import atomic_destination

    with atomic_destination(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)


def save_labelled(fig, ax, xlabel: str, ylabel: str, path: str) -> None:
    """Label ``ax``, add a light grid and the legend, and ``save_png``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
