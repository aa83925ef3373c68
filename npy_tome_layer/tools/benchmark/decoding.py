"""End-to-end beam search of trained ST checkpoints, with the speech encoder
timed on its own."""
import time
from typing import Dict

import torch


def decode_timing(checkpoints: Dict[str, str], data: str, subset: str, beam: int) -> str:
    """End-to-end fairseq beam search over a subset, batch 1, per checkpoint,
    after one warm-up utterance; the speech encoder is also timed on its own."""
    from argparse import Namespace

    from ...evaluation.decoding import load_st_model

    lines = ["| model | beam | utterances | decode s (total) | of which speech encoder s |",
             "| --- | --- | --- | --- | --- |"]
    for name, ckpt in checkpoints.items():
        model, dataset, task = load_st_model(ckpt, data, subset)
        generator = task.build_generator([model], Namespace(beam=beam, max_len_a=0, max_len_b=50,
                                                            lenpen=1.0))
        samples = [dataset.collater([dataset[i]]) for i in range(len(dataset))]
        decode_s = encoder_s = 0.0
        with torch.inference_mode():
            task.inference_step(generator, [model], samples[0])  # warm-up
            for s in samples:
                start = time.perf_counter()
                model.encoder(**s["net_input"])
                encoder_s += time.perf_counter() - start
                start = time.perf_counter()
                task.inference_step(generator, [model], s)
                decode_s += time.perf_counter() - start
        lines.append(f"| {name} | {beam} | {len(samples)} | {decode_s:.2f} | {encoder_s:.2f} |")
    return "\n".join(lines)
