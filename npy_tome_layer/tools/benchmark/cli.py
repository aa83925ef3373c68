"""The benchmark's command line: the flags of every mode and the dispatch.

  python -m npy_tome_layer.tools.benchmark --out bench/            # rate x init grid, base size
  python -m npy_tome_layer.tools.benchmark --out bench/ --size tiny --durations 1 --batches 2 \\
      --rates 1.0 0.9 --init-layers 0 --repeats 1          # seconds; what CI runs
  python -m npy_tome_layer.tools.benchmark --grid --out bench_grid/   # widths x batches x lengths
  python -m npy_tome_layer.tools.benchmark --profile                  # where a forward's time goes

Default mode: random weights in the official configuration of --size (no
download). Per setting (duration x batch x keep rate x init layer): median
latency of --repeats forward passes after --warmup, throughput, peak memory
of one pass, FLOPs counted by torch.utils.flop_counter.FlopCounterMode, the
FLOP-ideal speedup, the measured speedup, and the share of time spent
scoring, selecting and gathering frames; the alternatives at about the same
number of frames (every registered reduction); optionally the training step,
the attention paths and end-to-end decoding (--decode-checkpoints). Writes
OUT/results.json, OUT/benchmark.md and OUT/*.png.

--grid: the scaling grid (scaling.py); --profile: the time split of one
forward per model (profiling.py).
"""
import argparse
import json
import os
import shlex
import sys

import torch

from ...encoder.config import HUBERT_SIZES
from ...io.flags import keep_rate_flag, positive_number_flag, whole_number_flag
from ...evaluation.reference import reference_model, setting_model
from ...io.atomic import write_text_atomically
from ...io.audio import MIN_SAMPLES, SAMPLE_RATE
from .decoding import decode_timing
from .measuring import fairseq_dense, machine_description, random_audio
from .profiling import profile_markdown, profile_pass
from .scaling import rate_driven_reductions, run_scaling, size_of_width, write_scaling
from .settings import plots, report_lines, run_grid

GRID_DEFAULTS = {"widths": [64, 384, 768], "batches": [1, 8, 32], "seconds": [2.5, 10],
                 "rates": [0.9, 0.8], "out": "bench_grid"}
PROFILE_DEFAULTS = {"widths": [64], "batches": [8], "seconds": [10], "rates": [0.9]}
SETTINGS_DEFAULTS = {"batches": [1, 8], "rates": [1.0, 0.95, 0.9, 0.85, 0.8]}


def audio_seconds_flag(text: str) -> float:
    """An audio length in seconds that HuBERT's front end can encode: at least
    one frame's MIN_SAMPLES (a shorter input fails inside the convolutions as
    "kernel size can't be greater than actual input size")."""
    seconds = positive_number_flag(text)
    if seconds * SAMPLE_RATE < MIN_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_SAMPLES / SAMPLE_RATE:g} s ({MIN_SAMPLES} samples, one "
            f"HuBERT frame), got {text!r}")
    return seconds


def device_problem(text: str):
    """Why ``--device`` cannot run here (not a torch device, CUDA where torch
    sees none), or None: said before any model is built."""
    try:
        device = torch.device(text)
    except RuntimeError:
        return f"not a torch device (cpu, cuda, cuda:1), got {text!r}"
    if device.type not in ("cpu", "cuda"):
        return f"the benchmark runs on cpu or cuda, got {text!r}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"{text}: torch sees no CUDA device on this machine"
    return None


def width_flag(text: str) -> int:
    """An encoder width that names a model size (argparse type)."""
    width = whole_number_flag(1)(text)
    try:
        size_of_width(width)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}, got {text!r}") from None
    return width


def mode_defaults(parser, args) -> None:
    """Fill the flags whose default depends on the mode; refuse what a mode
    cannot take (argparse's one-line error, naming the flag)."""
    if args.scaling and args.profile:
        parser.error("--grid and --profile are separate runs: give one")
    problem = device_problem(args.device)
    if problem is not None:
        parser.error(f"argument --device: {problem}")
    defaults = GRID_DEFAULTS if args.scaling else PROFILE_DEFAULTS if args.profile \
        else SETTINGS_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.reductions is None:
        args.reductions = rate_driven_reductions()
    if (args.scaling or args.profile) and any(rate >= 1.0 for rate in args.rates):
        parser.error("argument --rates: the grid and the profile compare reductions with "
                     "fairseq's dense model: give keep rates below 1")
    if not (args.scaling or args.profile) and args.out is None:
        parser.error("the following arguments are required: --out")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder (default mode: required; --grid: "
                        "default bench_grid)")
    modes = parser.add_argument_group("other modes")
    modes.add_argument("--grid", dest="scaling", action="store_true",
                       help="the scaling grid: --widths x --batches x --seconds, every "
                            "--reductions at each --rates from layer 0 against fairseq's dense "
                            "HubertModel; writes OUT/grid.md, grid.json, grid.png")
    modes.add_argument("--profile", action="store_true",
                       help="profile one forward per model (first of --widths, --seconds, "
                            "--batches): time in attention, scoring, selection/gather, mask, "
                            "other; prints the table")
    modes.add_argument("--widths", type=width_flag, nargs="+", default=None,
                       help="encoder widths (64 demo, 384 small, 768 base; grid default: all "
                            "three, profile: 64)")
    modes.add_argument("--seconds", type=audio_seconds_flag, nargs="+", default=None,
                       help="audio lengths (grid default 2.5 10; profile 10)")
    modes.add_argument("--reductions", nargs="+", choices=rate_driven_reductions(), default=None,
                       help="rate-driven registered reductions (default: all of them)")
    # the estimate leaves out building the models and starting up: 540 s of plan
    # ends within 10 minutes on a 2-core CPU
    modes.add_argument("--budget", type=positive_number_flag, default=540,
                       help="grid: seconds to plan the repeats for (default 540)")
    parser.add_argument("--size", default="base", choices=list(HUBERT_SIZES))
    parser.add_argument("--durations", type=audio_seconds_flag, nargs="+", default=[5, 10, 20])
    # defaults per mode (mode_defaults): the grid and the profile have their own
    parser.add_argument("--batches", type=whole_number_flag(1), nargs="+", default=None)
    parser.add_argument("--rates", type=keep_rate_flag, nargs="+", default=None)
    parser.add_argument("--init-layers", type=whole_number_flag(0), nargs="+", default=[0, 4, 6])
    parser.add_argument("--coverages", type=keep_rate_flag, nargs="+", default=[],
                        help="also the coverage reduction at these shares (grid; frames per "
                             "layer measured)")
    parser.add_argument("--repeats", type=whole_number_flag(1), default=5)
    parser.add_argument("--warmup", type=whole_number_flag(0), default=1)
    parser.add_argument("--no-alternatives", dest="alternatives", action="store_false")
    parser.add_argument("--alternatives-duration", type=audio_seconds_flag, default=10)
    parser.add_argument("--alternatives-batch", type=whole_number_flag(1), default=8)
    parser.add_argument("--train-step", action="store_true",
                        help="also time forward + backward: fairseq's dense HubertModel vs pruned")
    parser.add_argument("--train-step-duration", type=audio_seconds_flag, default=5)
    parser.add_argument("--train-step-batch", type=whole_number_flag(1), default=4)
    parser.add_argument("--train-step-rates", type=keep_rate_flag, nargs="+", default=[1.0, 0.9, 0.8])
    parser.add_argument("--attention-paths", action="store_true",
                        help="also compare the explicit and fused attention paths of the "
                             "pruning layers with fairseq's dense model (inference and training)")
    parser.add_argument("--paths-duration", type=audio_seconds_flag, default=10)
    parser.add_argument("--paths-batch", type=whole_number_flag(1), default=8)
    parser.add_argument("--paths-train-durations", type=audio_seconds_flag, nargs="+",
                        default=[5, 20])
    parser.add_argument("--paths-rates", type=keep_rate_flag, nargs="+", default=[0.9, 0.8])
    parser.add_argument("--no-grid", dest="grid", action="store_false",
                        help="skip the default mode's keep rate x init layer table (not --grid)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--threads", type=whole_number_flag(1), help="torch.set_num_threads (CPU)")
    parser.add_argument("--decode-checkpoints", nargs="*", metavar="NAME=CKPT",
                        help="also time beam search of these ST checkpoints on --decode-data")
    parser.add_argument("--decode-data")
    parser.add_argument("--decode-subset", default="tst-COMMON")
    parser.add_argument("--beam", type=whole_number_flag(1), default=5)
    args = parser.parse_args(argv)
    mode_defaults(parser, args)
    return args


def main(argv=None):
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        return profile_main(args)
    if args.scaling:
        return grid_main(args, argv)
    os.makedirs(args.out, exist_ok=True)
    machine = machine_description(torch.device(args.device))
    print(f"[benchmark] {args.size} HuBERT, random weights, {args.dtype}, {machine}", flush=True)
    rows = run_grid(args)
    report = report_lines(args, rows, machine)
    # written before the decoding step, so a failure there loses no encoder results
    write_text_atomically(os.path.join(args.out, "results.json"),
                          json.dumps({"machine": machine, "args": vars(args), "rows": rows},
                                     indent=1))
    if args.decode_checkpoints:
        runs = dict(spec.split("=", 1) for spec in args.decode_checkpoints)
        report += ["", f"End-to-end decoding ({args.decode_subset}, batch 1):", "",
                   decode_timing(runs, args.decode_data, args.decode_subset, args.beam)]
    write_text_atomically(os.path.join(args.out, "benchmark.md"), "\n".join(report) + "\n")
    written = plots(rows, args.out)
    print("\n".join(report))
    print(f"[benchmark] wrote {args.out}/benchmark.md, results.json, "
          + ", ".join(os.path.basename(p) for p in written))


def grid_main(args, argv) -> None:
    machine = machine_description(torch.device(args.device))
    command = "python -m npy_tome_layer.tools.benchmark " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    print(f"[benchmark grid] {args.dtype}, {machine}", flush=True)
    result = run_scaling(args.widths, args.batches, args.seconds, args.rates, args.reductions,
                         args.device, args.dtype, args.repeats, args.budget)
    paths = write_scaling(result, args.out, machine, args.dtype, command)
    with open(paths[0]) as f:
        print(f.read())
    print("[benchmark grid] wrote " + ", ".join(paths))


def profile_main(args) -> None:
    """One profiled forward of fairseq's dense model and of each reduction."""
    device = torch.device(args.device)
    width, seconds, batch = args.widths[0], args.seconds[0], args.batches[0]
    cfg, reference = reference_model(size_of_width(width), device, torch.float32)
    audio = random_audio(seconds, batch, device)
    entries = [("fairseq dense", 1.0, fairseq_dense(reference, cfg))] + [
        (mode, rate, setting_model(reference, cfg, mode, rate, 0))
        for mode in args.reductions for rate in args.rates]
    # the profiler's first session in a process starts its machinery: not timed
    profile_pass(entries[0][2], audio, args.dtype)
    rows = [{"mode": mode, "rate": rate, **profile_pass(model, audio, args.dtype)}
            for mode, rate, model in entries]
    print(f"Profile: width {width}, {seconds:g} s x {batch}, {args.dtype}, reductions from "
          f"layer 0, {machine_description(device)}; share of one profiled forward:")
    print(profile_markdown(rows))
