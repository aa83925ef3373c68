"""Command-line tools, run as ``python -m npy_tome_layer.tools.NAME``:
prepare_mustc, average_checkpoints, tune_lenpen, compare_runs, sweep, study,
benchmark, visualize_pruning, inspect_checkpoint, choose_coverage, hubert_labels."""
