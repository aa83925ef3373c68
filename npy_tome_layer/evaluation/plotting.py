"""matplotlib for writing PNG files: no display, no font-search debug lines
(importing fairseq runs logging.basicConfig(level=DEBUG) in wav2vec2_classification.py)."""
import logging


def pyplot():
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# the picture formats a tool writes, chosen by the output's suffix
FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_format(path: str, flag: str) -> str:
    """The format of a picture named ``path`` (its suffix), checked before any
    work: matplotlib would write a name without a suffix as PNG under another
    name, and refuse an unknown suffix only once the figure is drawn."""
    from ..errors import InputError

    suffix = path.rpartition(".")[2].lower() if "." in path.rpartition("/")[2] else ""
    if suffix not in FIGURE_FORMATS:
        named = f"suffix .{suffix}" if suffix else "no suffix"
        raise InputError(f"{flag} {path}: {named}; a picture is written as "
                         f"{', '.join('.' + f for f in FIGURE_FORMATS)}")
    return suffix


def save_figure(fig, path: str, fmt: str, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` in ``fmt`` atomically (a killed run or a full
    disk leaves no half picture, and an older one stays whole) and close it."""
    from ..io.atomic import atomic_destination

    with atomic_destination(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    pyplot().close(fig)


def save_png(fig, path: str, dpi: int = 120) -> None:
    save_figure(fig, path, "png", dpi)


def save_labelled(fig, ax, xlabel: str, ylabel: str, path: str) -> None:
    """Label ``ax``, add a light grid and the legend, and ``save_png``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
