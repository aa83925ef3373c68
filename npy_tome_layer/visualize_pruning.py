"""Draw which HuBERT frames survive each pruning layer, under the waveform.

  python -m npy_tome_layer.visualize_pruning --wav talk.wav --out pruning.png \\
      [--checkpoint hubert_base_ls960.pt | st_checkpoint.pt] [--rate 0.9] [--init-layer 0]

Without --checkpoint the official base configuration is built with random
weights. A HuBERT file (official format) is pruned at --rate/--init-layer; an
ST checkpoint of this plugin uses its own HuBERT weights and the rate it had
reached (override with --rate). Frames are 20 ms; row k of the lower panel
marks the frames still present after pruning layer k.
"""
import argparse
import sys
from typing import List, Optional

import numpy as np
import soundfile as sf
import torch

from .checkpoint_loading import CheckpointError, load_checkpoint
from .models.hubert_transformer import rate_arguments
from .models.pruned_hubert import (
    PrunedHubertModel,
    build_pruned_hubert,
    load_hubert_weights,
    load_pruned_hubert,
)
from .plotting import pyplot
from .speech import SAMPLE_RATE, AudioError, audio_info
from .standins import hubert_model_config

FRAME_SECONDS = 0.02


def load_for_visualisation(checkpoint: Optional[str], rate: Optional[float],
                           init_layer: Optional[int]) -> PrunedHubertModel:
    if checkpoint is None:
        torch.manual_seed(0)
        return build_pruned_hubert(hubert_model_config("base"), pruning_rate=rate or 0.9,
                                   pruning_init_layer=init_layer or 0).eval()
    state = load_checkpoint(checkpoint)
    cfg = state.get("cfg") or {}
    model_cfg = cfg.get("model") if hasattr(cfg, "get") else None
    hubert_cfg = getattr(model_cfg, "hubert_cfg", None)
    if hubert_cfg is None:  # an official HuBERT file
        return load_pruned_hubert(checkpoint, pruning_rate=rate or 0.9,
                                  pruning_init_layer=init_layer or 0)
    args = model_cfg  # an ST checkpoint: HuBERT config in its args, weights in its state
    num_updates = (state.get("optimizer_history") or [{}])[-1].get("num_updates", 0)
    model = build_pruned_hubert(
        hubert_cfg,
        pruning_init_layer=init_layer if init_layer is not None else args.pruning_init_layer,
        token_reduction=getattr(args, "token_reduction", "prune"),
        conv_stride=getattr(args, "conv_reduction_stride", 2),
        # absent in checkpoints written before the option: fairseq's front end
        fairseq_padding=getattr(args, "fairseq_padding", None) is not False,
        padding_mask_from_conv_lengths=getattr(args, "hubert_padding_mask_from_conv_lengths",
                                               False),
        reduction_seed=getattr(args, "token_reduction_seed", 0),
        **(rate_arguments(args) if rate is None else {"pruning_rate": rate}))
    model.remove_pretraining_modules()
    prefix = "encoder.hubert."
    load_hubert_weights(model, {k[len(prefix):]: v for k, v in state["model"].items()
                                if k.startswith(prefix)}, checkpoint)
    model.encoder.set_num_updates(num_updates)
    return model.eval()


def survival(model: PrunedHubertModel, audio: np.ndarray) -> np.ndarray:
    """layers x frames, 1 where the frame is still present after that layer."""
    with torch.inference_mode():
        kept: List[torch.Tensor] = model(torch.from_numpy(audio).float().unsqueeze(0),
                                         mask=False, features_only=True)["kept_indices"]
    frames = int(model.frame_lengths(torch.tensor(len(audio))))
    grid = np.zeros((len(kept), frames), dtype=np.float32)
    for row, idx in enumerate(kept):
        grid[row, idx[0][idx[0] < frames].numpy()] = 1.0
    return grid


def draw(audio: np.ndarray, grid: np.ndarray, first_layer: int, title: str, out: str) -> None:
    plt = pyplot()

    seconds = len(audio) / SAMPLE_RATE
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 2 + 0.25 * len(grid)), sharex=True,
                                      gridspec_kw={"height_ratios": [1, max(1, len(grid) / 4)]})
    top.plot(np.arange(len(audio)) / SAMPLE_RATE, audio, linewidth=0.4, color="0.3")
    top.set_ylabel("waveform")
    top.set_title(title, fontsize=9)
    extent = (0, grid.shape[1] * FRAME_SECONDS, first_layer + len(grid) - 0.5, first_layer - 0.5)
    bottom.imshow(grid, aspect="auto", interpolation="nearest", cmap="Blues", extent=extent,
                  vmin=0, vmax=1.3)
    bottom.set_ylabel("after layer")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, seconds)
    for row in range(len(grid)):
        bottom.text(seconds, first_layer + row, f" {int(grid[row].sum())}", va="center",
                    fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav", required=True, help="16 kHz mono audio")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--checkpoint", help="HuBERT or ST checkpoint (default: random base)")
    parser.add_argument("--rate", type=float, help="keep rate (default 0.9 / the checkpoint's)")
    parser.add_argument("--init-layer", type=int)
    args = parser.parse_args(argv)
    try:
        audio_info(args.wav)
        audio = sf.read(args.wav, dtype="float32")[0]
    except AudioError as e:
        sys.exit(f"visualize_pruning: {e}")
    except Exception as e:  # soundfile's errors do not always name the file
        sys.exit(f"visualize_pruning: cannot read {args.wav}: {e}")
    try:
        model = load_for_visualisation(args.checkpoint, args.rate, args.init_layer)
    except (CheckpointError, ValueError) as e:
        sys.exit(f"visualize_pruning: {e}")
    grid = survival(model, audio)
    enc = model.encoder
    title = (f"{args.wav}: keep rate {enc.keep_rate:g} per layer from layer "
             f"{enc.pruning_init_layer} ({enc.token_reduction}); "
             f"{int(grid[-1].sum()) if len(grid) else grid.shape[1]}/{grid.shape[1]} frames leave")
    draw(audio, grid, enc.pruning_init_layer, title, args.out)
    print(f"{args.out}: {title}")


if __name__ == "__main__":
    main()
