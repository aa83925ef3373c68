"""Average the model weights of fairseq checkpoints (the last N of a run, or a list).

fairseq's own ``scripts/average_checkpoints.py`` is not in the pip package;
this does the same job on ``fairseq.checkpoint_utils``:

  python -m npy_tome_layer.tools.average_checkpoints --checkpoint-dir ckpt/st \\
      --num-epoch-checkpoints 10 --output ckpt/st/avg_last_10.pt

Floating-point tensors are averaged in float64 and cast back to their dtype;
other tensors (integer buffers) must agree and are taken as they are. The
rest of the file (cfg, args, extra state) comes from the first input (the
newest with --checkpoint-dir), so the
result loads wherever that checkpoint does; the optimizer state is dropped.
An existing output is never replaced unless ``--overwrite`` is given.
"""
import argparse
import os
import re
from typing import Dict, List, Sequence

import torch
from omegaconf import OmegaConf

from ..io.flags import whole_number_flag
from ..errors import InputError, exit_on_input_error
from ..io.atomic import check_output_file, save_atomically
from ..io.checkpoints import checkpoint_task, load_checkpoint
from ..st.model import ST_TASK

EPOCH_FILE = re.compile(r"^checkpoint(\d+)\.pt$")
UPDATE_FILE = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")


class AveragingError(InputError):
    pass


def last_checkpoints(directory: str, num: int, by_update: bool = False) -> List[str]:
    """The ``num`` newest ``checkpointE.pt`` (or ``checkpoint_E_U.pt``) files,
    newest first, ordered by the number in the name, not the file time."""
    pattern = UPDATE_FILE if by_update else EPOCH_FILE
    if not os.path.isdir(directory):
        raise AveragingError(f"{directory}: checkpoint directory does not exist")
    found = []
    for name in os.listdir(directory):
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    kind = "checkpoint_EPOCH_UPDATE.pt (--save-interval-updates)" if by_update \
        else "checkpointEPOCH.pt"
    if len(found) < num:
        raise AveragingError(
            f"{directory}: asked for the last {num} {kind} files, found {len(found)}")
    return [path for _, path in sorted(found, reverse=True)[:num]]


# model arguments that make two checkpoints different models (not training options)
MODEL_SETTINGS = ("arch", "pruning_", "token_reduction", "conv_", "encoder_", "decoder_",
                  "hubert_cfg", "hubert_normalize", "hubert_padding_mask", "fairseq_padding",
                  "share_",
                  "layernorm_embedding")


def model_settings(state: Dict) -> Dict:
    args = (state.get("cfg") or {}).get("model") or state.get("args")
    if args is None:
        return {}
    items = vars(args) if hasattr(args, "__dict__") and not hasattr(args, "keys") else args
    return {k: items[k] for k in items if str(k).startswith(MODEL_SETTINGS)}


def average_model_states(paths: Sequence[str]) -> Dict:
    """The newest checkpoint's state with ``model`` replaced by the mean."""
    if not paths:
        raise AveragingError("no checkpoints to average")
    sums: Dict[str, torch.Tensor] = {}
    reference = None
    for path in paths:
        state = load_checkpoint(path)
        if "model" not in state:
            raise AveragingError(f"{path}: no 'model' weights (not a fairseq checkpoint)")
        if checkpoint_task(state) != ST_TASK:
            raise AveragingError(f"{path}: a checkpoint of task {checkpoint_task(state)!r}, not "
                                 f"of this project's training ({ST_TASK})")
        model = state["model"]  # finite: loading refuses a tensor holding NaN or inf
        if reference is None:
            reference = (path, model)
            sums = {k: v.double().clone() if v.is_floating_point() else v.clone()
                    for k, v in model.items()}
            newest = state
            continue
        ref_path, ref_model = reference
        settings, ref_settings = model_settings(state), model_settings(newest)
        differ = sorted(k for k in set(settings) | set(ref_settings)
                        if settings.get(k) != ref_settings.get(k))
        if differ:
            k = differ[0]
            raise AveragingError(f"{path}: a different model from {ref_path} ({k} "
                                 f"{settings.get(k)} vs {ref_settings.get(k)}"
                                 f"{f', and {len(differ) - 1} more settings' if len(differ) > 1 else ''})")
        if set(model) != set(ref_model):
            only_here = sorted(set(model) - set(ref_model))[:5]
            only_ref = sorted(set(ref_model) - set(model))[:5]
            raise AveragingError(f"{path}: parameters differ from {ref_path}: only here "
                                 f"{only_here}, only there {only_ref}")
        for k, v in model.items():
            if v.shape != ref_model[k].shape:
                raise AveragingError(f"{path}: {k} has shape {tuple(v.shape)}, "
                                     f"{ref_path} has {tuple(ref_model[k].shape)}")
            if v.is_floating_point():
                sums[k] += v.double()
            elif not torch.equal(v, sums[k]):
                raise AveragingError(f"{path}: integer tensor {k} differs from {ref_path}")
    averaged = {k: (v / len(paths)).to(reference[1][k].dtype) if v.is_floating_point() else v
                for k, v in sums.items()}
    out = dict(newest)
    if OmegaConf.is_config(out.get("cfg")):
        # fairseq's loader turned cfg into a DictConfig; fairseq saves plain
        # containers (and torch's weights-only loader accepts only those)
        out["cfg"] = OmegaConf.to_container(out["cfg"], resolve=True)
    out["model"] = averaged
    out["last_optimizer_state"] = None
    out.setdefault("extra_state", {})
    out["averaged_from"] = [os.path.abspath(p) for p in paths]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", help="checkpoint files (or use --checkpoint-dir)")
    parser.add_argument("--checkpoint-dir", help="directory of a fairseq-train run")
    parser.add_argument("--num-epoch-checkpoints", type=whole_number_flag(1),
                        help="average the last N checkpointEPOCH.pt files")
    parser.add_argument("--num-update-checkpoints", type=whole_number_flag(1),
                        help="average the last N checkpoint_EPOCH_UPDATE.pt files")
    parser.add_argument("--output", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    with exit_on_input_error("average_checkpoints"):
        run(args)


def run(args):
    if bool(args.inputs) == bool(args.checkpoint_dir):
        raise AveragingError("give either --inputs or --checkpoint-dir")
    if args.checkpoint_dir:
        counts = [args.num_epoch_checkpoints, args.num_update_checkpoints]
        if sum(c is not None for c in counts) != 1 or min(c for c in counts if c is not None) < 1:
            raise AveragingError("with --checkpoint-dir give one of --num-epoch-checkpoints "
                                 "or --num-update-checkpoints, >= 1")
        paths = last_checkpoints(args.checkpoint_dir,
                                 args.num_epoch_checkpoints or args.num_update_checkpoints,
                                 by_update=args.num_update_checkpoints is not None)
    else:
        paths = args.inputs
    if os.path.exists(args.output) and not args.overwrite:
        raise AveragingError(f"{args.output} exists; pass --overwrite to replace it")
    check_output_file(args.output, "--output")
    state = average_model_states(paths)
    save_atomically(state, args.output)
    print(f"averaged {len(paths)} checkpoints -> {args.output}")
    for p in paths:
        print(f"  {p}")


if __name__ == "__main__":
    main()
