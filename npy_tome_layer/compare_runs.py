"""Compare trained ST checkpoints: BLEU, HuBERT frames kept, encoder time.

  python -m npy_tome_layer.compare_runs --data data/en-de --subset tst-COMMON \\
      --run dense=ckpt/st_baseline/avg.pt:ckpt/st_baseline/generate-avg.txt \\
      --run pruned=ckpt/st_fixed/avg.pt:ckpt/st_fixed/generate-avg.txt

BLEU is read from each run's fairseq-generate output (``scripts/evaluate.sh``
writes it); frames and times are measured here, now: every utterance of the
subset goes through the checkpoint's speech encoder one at a time (batch 1,
so no padding), ``--repeats`` times after one warm-up pass, the runs' passes
interleaved, and the median total is reported. Prints a markdown table.
"""
import argparse
import os
import re
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

from .speech import SAMPLE_RATE

BLEU_LINE = re.compile(r"^Generate .*?BLEU = ([0-9.]+)", re.M)


def bleu_from_generate_output(path: str) -> float:
    with open(path, encoding="utf-8") as f:
        m = BLEU_LINE.search(f.read())
    if not m:
        raise ValueError(f"{path}: no 'Generate ... BLEU = ' line (did fairseq-generate finish?)")
    return float(m.group(1))


def load_st_model(checkpoint: str, data: str, subset: str, overrides: Optional[Dict] = None):
    """(model in eval mode, the subset's dataset, task); ``overrides`` change
    model arguments before the model is built (e.g. the keep rate)."""
    from fairseq import checkpoint_utils

    import npy_tome_layer  # noqa: F401  (registers the task/model)

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data, **(overrides or {})})
    task.load_dataset(subset)
    return models[0].eval(), task.datasets[subset], task


def frames_left(features: torch.Tensor, mask) -> int:
    """Valid frames of one utterance's HuBERT output."""
    return features.size(1) if mask is None else int((~mask).sum())


@torch.inference_mode()
def hubert_frames(model, dataset) -> Tuple[int, int]:
    """(HuBERT frames in, frames out) over the subset, each utterance alone."""
    hubert, frames_in, frames_out = model.encoder.hubert, 0, 0
    for i in range(len(dataset)):
        audio = dataset[i]["source"].unsqueeze(0)
        frames_in += int(hubert.frame_lengths(torch.tensor(audio.size(1))))
        frames_out += frames_left(*hubert.extract_features(audio, padding_mask=None, mask=False))
    return frames_in, frames_out


@torch.inference_mode()
def measure_speech_encoder(model, dataset, repeats: int = 3, warmup: bool = True
                           ) -> Dict[str, float]:
    """HuBERT frames in/out and seconds for the subset, batch 1, on the CPU
    (median of ``repeats`` passes, after one untimed pass if ``warmup``)."""
    hubert = model.encoder.hubert
    audios = [dataset[i]["source"].unsqueeze(0) for i in range(len(dataset))]
    frames_in = sum(int(hubert.frame_lengths(torch.tensor(a.size(1)))) for a in audios)
    frames_out = 0
    hubert_times, encoder_times = [], []
    first = 0 if warmup else 1
    for rep in range(first, repeats + 1):  # pass 0 warms up
        t_hubert = t_encoder = 0.0
        for a in audios:
            lengths = torch.tensor([a.size(1)])
            start = time.perf_counter()
            features, mask = hubert.extract_features(a, padding_mask=None, mask=False)
            t_hubert += time.perf_counter() - start
            start = time.perf_counter()
            model.encoder.forward_speech(a, lengths)
            t_encoder += time.perf_counter() - start
            if rep == first:
                frames_out += frames_left(features, mask)
        if rep:
            hubert_times.append(t_hubert)
            encoder_times.append(t_encoder)
    return {"keep_rate": hubert.encoder.keep_rate,
            "init_layer": hubert.encoder.pruning_init_layer,
            "frames_in": frames_in, "frames_out": frames_out,
            "hubert_s": statistics.median(hubert_times),
            "encoder_s": statistics.median(encoder_times),
            "utterances": len(audios),
            "audio_s": sum(a.size(1) for a in audios) / SAMPLE_RATE}


def measure_interleaved(pairs, repeats: int = 3) -> List[Dict[str, float]]:
    """``measure_speech_encoder`` for each (model, dataset), with the timed passes
    of all of them interleaved (every round times each once): this machine's
    speed drifts by 10-30 % over minutes, which sequential runs would read as
    differences between settings."""
    results, hubert_s, encoder_s = [], [], []
    for model, dataset in pairs:  # warm-up, frame counts, first timed pass
        results.append(measure_speech_encoder(model, dataset, repeats=1))
        hubert_s.append([results[-1]["hubert_s"]])
        encoder_s.append([results[-1]["encoder_s"]])
    for _ in range(repeats - 1):
        for k, (model, dataset) in enumerate(pairs):
            r = measure_speech_encoder(model, dataset, repeats=1, warmup=False)
            hubert_s[k].append(r["hubert_s"])
            encoder_s[k].append(r["encoder_s"])
    for k, r in enumerate(results):
        r["hubert_s"] = statistics.median(hubert_s[k])
        r["encoder_s"] = statistics.median(encoder_s[k])
    return results


def markdown_table(rows: List[Dict], baseline: Optional[str] = None) -> str:
    base = next((r for r in rows if r["name"] == baseline), rows[0])
    lines = ["| run | keep rate (from layer) | BLEU | HuBERT frames kept | HuBERT time (s) "
             "| speech encoder time (s) | encoder speedup | speedup at base size |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bleu = "n/a" if r.get("bleu") is None else f"{r['bleu']:.2f}"
        lines.append(
            f"| {r['name']} | {r['keep_rate']:g} ({r['init_layer']}) | {bleu} "
            f"| {r['frames_out']}/{r['frames_in']} ({100 * r['frames_out'] / r['frames_in']:.1f} %) "
            f"| {r['hubert_s']:.3f} | {r['encoder_s']:.3f} "
            f"| {base['encoder_s'] / r['encoder_s']:.2f}x | {r['base_speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    from .benchmark import reference_speedups

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data directory (SPLIT.tsv)")
    parser.add_argument("--subset", default="tst-COMMON")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CKPT[:GENERATE_OUT]",
                        help="the first run is the speedup baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--reference-size", default="base",
                        help="HuBERT size of the last column: a random-weight encoder of that "
                             "size on the same audio at each run's setting (tiny in tests)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, pairs = [], []
    for spec in args.run:
        name, _, paths = spec.partition("=")
        ckpt, _, generate_out = paths.partition(":")
        if not name or not ckpt:
            sys.exit(f"compare_runs: --run {spec!r}: expected NAME=CHECKPOINT[:GENERATE_OUTPUT]")
        for path in filter(None, (ckpt, generate_out)):
            if not os.path.isfile(path):
                sys.exit(f"compare_runs: --run {name}: {path} does not exist")
        try:
            bleu = bleu_from_generate_output(generate_out) if generate_out else None
        except ValueError as e:
            sys.exit(f"compare_runs: {e}")
        model, dataset, _ = load_st_model(ckpt, args.data, args.subset)
        rows.append({"name": name, "bleu": bleu})
        pairs.append((model, dataset))
    for row, measured in zip(rows, measure_interleaved(pairs, args.repeats)):
        row.update(measured)
    settings = [model.encoder.hubert.encoder.final_setting for model, _ in pairs]
    dataset = pairs[0][1]
    audios = [dataset[i]["source"].unsqueeze(0) for i in range(len(dataset))]
    del pairs
    speedups = reference_speedups(settings, audios, args.reference_size, repeats=args.repeats)
    for row, setting in zip(rows, settings):
        row["base_speedup"] = speedups[setting]
    r = rows[0]
    print(f"{args.subset}: {r['utterances']} utterances, {r['audio_s']:.1f} s of audio; batch 1, "
          f"median of {args.repeats} interleaved passes, {torch.get_num_threads()} CPU threads; "
          f"last column: random-weight HuBERT-{args.reference_size}, same audio and settings")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
