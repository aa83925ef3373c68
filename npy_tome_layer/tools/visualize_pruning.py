"""Draw which HuBERT frames survive each pruning layer, under the waveform.

  python -m npy_tome_layer.tools.visualize_pruning --wav talk.wav --out pruning.png \\
      [--checkpoint hubert_base_ls960.pt | st_checkpoint.pt] [--rate 0.9] [--init-layer 0] \\
      [--ctc-vocab DATA/ctc_vocab.txt]

Without --checkpoint the official base configuration is built with random
weights. A HuBERT file (official format) is pruned at --rate/--init-layer; an
ST checkpoint of this plugin uses its own HuBERT weights and the rate it had
reached (override with --rate). Frames are 20 ms; row k of the lower panel
marks the frames still present after pruning layer k (dark), and, for
reductions whose tokens stand for runs of frames (adjacent, fold, ctc), the
frames each run covers (light shades alternating from run to run); with
--ctc-vocab, a ctc checkpoint's tokens carry the label its head gave the run
(``_`` the blank, ``▁`` a space) on the row of the layer where they formed.
"""
import argparse
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch

from ..io.flags import keep_rate_flag, whole_number_flag
from ..encoder.config import hubert_model_config
from ..encoder.pruned_hubert import PrunedHubertModel, build_pruned_hubert, load_pruned_hubert
from ..errors import InputError, exit_on_input_error
from ..evaluation.plotting import figure_format, pyplot, save_figure
from ..io.atomic import check_output_file
from ..io.audio import SAMPLE_RATE, audio_info, first_non_finite, non_finite_problem
from ..io.checkpoints import checkpoint_task, load_checkpoint
from ..st.ctc_vocabulary import CTCVocabulary
from ..st.model import check_st_checkpoint, hubert_from_st_checkpoint

FRAME_SECONDS = 0.02


def load_for_visualisation(checkpoint: Optional[str], rate: Optional[float],
                           init_layer: Optional[int]) -> PrunedHubertModel:
    if checkpoint is None:
        torch.manual_seed(0)
        return build_pruned_hubert(hubert_model_config("base"), pruning_rate=rate or 0.9,
                                   pruning_init_layer=init_layer or 0).eval()
    state = load_checkpoint(checkpoint)
    if checkpoint_task(state) in (None, "hubert_pretraining"):  # an official HuBERT file
        return load_pruned_hubert(checkpoint, pruning_rate=rate or 0.9,
                                  pruning_init_layer=init_layer or 0)
    # an ST checkpoint: its own HuBERT, at the rate it reached unless told otherwise
    overrides = {} if init_layer is None else {"pruning_init_layer": init_layer}
    if rate is not None:
        overrides.update(pruning_rate=rate, pruning_max_rate=None, pruning_min_rate=None)
    check_st_checkpoint(checkpoint, state=state)
    return hubert_from_st_checkpoint(checkpoint, **overrides)


class Encoded(NamedTuple):
    """One utterance through the encoder: per layer from the init layer on, the
    original frame of each position and the frames it stands for; the
    utterance's frames; what the reduction keeps for its loss (ctc: its logits)."""
    kept: List[torch.Tensor]
    spans: List[torch.Tensor]
    frames: int
    reduction_outputs: Dict[str, torch.Tensor]


def encode(model: PrunedHubertModel, audio: np.ndarray) -> Encoded:
    with torch.inference_mode():
        res = model(torch.from_numpy(audio).float().unsqueeze(0), mask=False,
                    features_only=True)
    return Encoded(res["kept_indices"], res["spans"],
                   int(model.frame_lengths(torch.tensor(len(audio)))),
                   res["reduction_outputs"] or {})


def ctc_run_labels(encoded: Encoded, vocabulary) -> List[Tuple[float, str]]:
    """(centre in seconds, the head's label) of each token the CTC reduction
    made at its layer (the first reducing one): a run of frames with one label."""
    logits = encoded.reduction_outputs.get("ctc_logits")
    if logits is None or not encoded.spans:
        return []
    labels = logits[0].argmax(dim=-1)
    return [((first + last + 1) / 2 * FRAME_SECONDS, vocabulary.label(int(labels[first])))
            for first, last in encoded.spans[0][0].tolist() if last < encoded.frames]


def survival(model: PrunedHubertModel, audio: np.ndarray, encoded=None) -> np.ndarray:
    """layers x frames, 1 where the frame is still present after that layer."""
    kept, _, frames, _ = encoded or encode(model, audio)
    grid = np.zeros((len(kept), frames), dtype=np.float32)
    for row, idx in enumerate(kept):
        grid[row, idx[0][idx[0] < frames].numpy()] = 1.0
    return grid


def run_shading(spans: List[torch.Tensor], frames: int) -> np.ndarray:
    """layers x frames: the frames of each run of more than one frame, shaded
    0.3 and 0.5 alternately so neighbouring runs stay apart; 0 elsewhere."""
    grid = np.zeros((len(spans), frames), dtype=np.float32)
    for row, layer_spans in enumerate(spans):
        for j, (first, last) in enumerate(layer_spans[0].tolist()):
            if first < last < frames:
                grid[row, first:last + 1] = 0.3 if j % 2 else 0.5
    return grid


def draw(audio: np.ndarray, grid: np.ndarray, first_layer: int, title: str, out: str,
         runs: Optional[np.ndarray] = None, fmt: str = "png",
         labels: Sequence[Tuple[float, str]] = ()) -> None:
    """``labels``: (seconds, text) written on the first reducing layer's row."""
    plt = pyplot()

    seconds = len(audio) / SAMPLE_RATE
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 2 + 0.25 * len(grid)), sharex=True,
                                      gridspec_kw={"height_ratios": [1, max(1, len(grid) / 4)]})
    top.plot(np.arange(len(audio)) / SAMPLE_RATE, audio, linewidth=0.4, color="0.3")
    top.set_ylabel("waveform")
    top.set_title(title, fontsize=9)
    extent = (0, grid.shape[1] * FRAME_SECONDS, first_layer + len(grid) - 0.5, first_layer - 0.5)
    shown = grid if runs is None else np.maximum(grid, runs)
    bottom.imshow(shown, aspect="auto", interpolation="nearest", cmap="Blues", extent=extent,
                  vmin=0, vmax=1.3)
    bottom.set_ylabel("after layer")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, seconds)
    for row in range(len(grid)):
        bottom.text(seconds, first_layer + row, f" {int(grid[row].sum())}", va="center",
                    fontsize=7)
    for at, text in labels:
        bottom.text(at, first_layer, text, ha="center", va="center", fontsize=6, color="darkred")
    fig.tight_layout()
    save_figure(fig, out, fmt)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav", required=True, help="16 kHz mono audio")
    parser.add_argument("--out", required=True,
                        help="picture to write, its format by suffix: .png, .pdf or .svg")
    parser.add_argument("--checkpoint", help="HuBERT or ST checkpoint (default: random base)")
    parser.add_argument("--rate", type=keep_rate_flag, help="keep rate (default 0.9 / the checkpoint's)")
    parser.add_argument("--init-layer", type=whole_number_flag(0))
    parser.add_argument("--ctc-vocab", help="a ctc checkpoint's CTC vocabulary (the data "
                                            "folder's ctc_vocab.txt): each token its label")
    args = parser.parse_args(argv)
    with exit_on_input_error("visualize_pruning"):
        run(args)


def run(args):
    audio_info(args.wav)
    try:
        audio = sf.read(args.wav, dtype="float32")[0]
    except Exception as e:  # soundfile's errors do not always name the file
        raise InputError(f"cannot read {args.wav}: {e}") from e
    bad = first_non_finite(audio)  # the model's own check would not name the file
    if bad is not None:
        raise InputError(f"--wav: {non_finite_problem(args.wav, bad)}")
    check_output_file(args.out, "--out")
    fmt = figure_format(args.out, "--out")
    vocabulary = CTCVocabulary.from_file(args.ctc_vocab) if args.ctc_vocab else None
    model = load_for_visualisation(args.checkpoint, args.rate, args.init_layer)
    if vocabulary:
        head = getattr(model.encoder.length_reduction, "head", None)
        if model.encoder.token_reduction != "ctc" or head is None:
            raise InputError(f"--ctc-vocab {args.ctc_vocab}: the model's reduction, "
                             f"{model.encoder.token_reduction}, has no CTC head")
        if head.out_features != vocabulary.size:
            raise InputError(f"--ctc-vocab {args.ctc_vocab}: {vocabulary.size} labels, the "
                             f"checkpoint's CTC head has {head.out_features}")
    encoded = encode(model, audio)
    labels = ctc_run_labels(encoded, vocabulary) if vocabulary else []
    grid = survival(model, audio, encoded)
    enc = model.encoder
    title = (f"{args.wav}: keep rate {enc.keep_rate:g} per layer from layer "
             f"{enc.pruning_init_layer} ({enc.token_reduction}); "
             f"{int(grid[-1].sum()) if len(grid) else grid.shape[1]}/{grid.shape[1]} frames leave")
    draw(audio, grid, enc.pruning_init_layer, title, args.out,
         run_shading(encoded.spans, encoded.frames), fmt, labels)
    print(f"{args.out}: {title}")


if __name__ == "__main__":
    main()
