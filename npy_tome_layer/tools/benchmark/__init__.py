"""Benchmark of the pruned HuBERT encoder, split by what it measures:

  cli.py        the flags of every mode and the dispatch (``__main__``)
  measuring.py  what every mode measures with: FLOP counts, peak memory,
                profiler-label shares, inputs, autocast, fairseq's dense model
  settings.py   keep rate x init layer grid and the alternatives (default mode)
  training.py   training step and attention paths against fairseq's dense model
  decoding.py   end-to-end beam search of trained checkpoints
  scaling.py    the width x batch x length grid (``--grid``)
  profiling.py  where one forward's time goes (``--profile``)

``python -m npy_tome_layer.tools.benchmark --help`` lists the flags.
"""
from .cli import main, parse_arguments
from .decoding import decode_timing
from .measuring import PeakMemory, count_flops, labelled_share, reduction_share
from .profiling import profile_pass
from .scaling import run_scaling
from .settings import measure_group, run_grid
from .training import (paths_markdown, plot_attention_paths, run_attention_paths,
                       run_training_step, train_markdown)

__all__ = ["PeakMemory", "count_flops", "decode_timing", "labelled_share", "main",
           "measure_group", "parse_arguments", "paths_markdown", "plot_attention_paths",
           "profile_pass", "reduction_share", "run_attention_paths", "run_grid", "run_scaling",
           "run_training_step", "train_markdown"]
