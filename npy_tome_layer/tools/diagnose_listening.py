"""Where does the audio stop? Per trained ST checkpoint, on one split:

  python -m npy_tome_layer.tools.diagnose_listening --data data/en-de --subset dev \\
      --run dense=ckpt/st_baseline/avg.pt --run fixed=ckpt/st_fixed/avg.pt

* ``HuBERT spread`` / ``encoder spread``: how much the time-averaged output of
  HuBERT, and of the whole speech encoder (HuBERT -> subsampler -> DeltaLM's
  encoder), differs between utterances: the mean cosine distance between the
  utterances' vectors (0: every utterance gives the same vector).
* ``cross-attention entropy``: the decoder's last cross-attention (head mean,
  teacher-forced on the reference), its entropy over the encoder frames
  divided by the log of their number, averaged over target tokens (1: spread
  evenly, looking nowhere in particular).
* ``audio gain``: teacher-forced negative log-likelihood of the references
  (bits per target token) with each utterance's audio replaced by silence of
  the same length, minus the same with the audio: what hearing the utterance
  is worth to the decoder (0: nothing).
Every utterance goes through alone (batch 1, no padding). Prints a markdown table.
"""
import argparse
import math
import os
from typing import Dict, List

import torch

from ..errors import InputError, exit_on_input_error
from ..evaluation.decoding import load_st_model
from ..io.paths import check_existing_file
from ..st.dataset import read_manifest
from ..st.model import check_st_checkpoint


def mean_cosine_distance(vectors: torch.Tensor) -> float:
    """Mean over distinct pairs of 1 - cosine similarity (N x C, N >= 2)."""
    if len(vectors) < 2:
        raise InputError(f"a spread needs at least 2 utterances, got {len(vectors)}")
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    similarity = unit @ unit.T
    n = len(vectors)
    return float((n * n - similarity.sum()) / (n * (n - 1)))


def attention_entropy(attn: torch.Tensor) -> float:
    """Mean over target tokens of the entropy of each row of ``attn``
    (T_tgt x T_src probabilities) over log(T_src); 0 for one source frame."""
    if attn.size(-1) < 2:
        return 0.0
    p = attn.double().clamp(min=1e-12)
    return float((-(p * p.log()).sum(dim=-1) / math.log(attn.size(-1))).mean())


@torch.inference_mode()
def diagnose(model, heard, silent) -> Dict[str, float]:
    """The four measures over the datasets ``heard`` and ``silent`` (the same
    utterances with their audio, and with silence)."""
    encoder = model.encoder
    hubert_vectors, encoder_vectors, entropies = [], [], []
    nll = {"heard": 0.0, "silent": 0.0}
    tokens = 0
    for i in range(len(heard)):
        for name, dataset in (("heard", heard), ("silent", silent)):
            batch = dataset.collater([dataset[i]])
            net = batch["net_input"]
            audio, lengths = net["src_tokens"], net["src_lengths"]
            if name == "heard":
                features, _ = encoder.hubert.extract_features(audio, padding_mask=None)
                hubert_vectors.append(features[0].float().mean(dim=0))
            encoder_out = encoder(audio, lengths)
            logits, extra = model.decoder(net["prev_output_tokens"], encoder_out=encoder_out)
            lprobs = model.get_normalized_probs((logits, extra), log_probs=True)[0].float()
            target = batch["target"][0]
            nll[name] -= float(lprobs.gather(1, target.unsqueeze(1)).sum()) / math.log(2)
            if name == "heard":
                tokens += target.numel()
                states = encoder_out["encoder_out"][0][:, 0]  # T x C of the one row
                encoder_vectors.append(states.float().mean(dim=0))
                attn = extra.get("attn", [None])[0]
                if attn is not None:
                    entropies.append(attention_entropy(attn[0]))
    return {
        "hubert_spread": mean_cosine_distance(torch.stack(hubert_vectors)),
        "encoder_spread": mean_cosine_distance(torch.stack(encoder_vectors)),
        "cross_attention_entropy": sum(entropies) / len(entropies) if entropies else float("nan"),
        "audio_gain": (nll["silent"] - nll["heard"]) / tokens,
    }


def markdown(rows: List[Dict]) -> str:
    lines = ["| run | HuBERT spread | encoder spread | cross-attention entropy "
             "| audio gain (bits/token) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['hubert_spread']:.4f} | {r['encoder_spread']:.4f} "
                     f"| {r['cross_attention_entropy']:.3f} | {r['audio_gain']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data directory (SPLIT.tsv)")
    parser.add_argument("--subset", default="dev")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CHECKPOINT")
    args = parser.parse_args(argv)
    with exit_on_input_error("diagnose_listening"):
        manifest = os.path.join(args.data, f"{args.subset}.tsv")
        check_existing_file(manifest, "--subset:")
        utterances = len(read_manifest(manifest))
        if utterances < 2:
            # a spread is a mean over pairs of utterances: one has none (inf / nan)
            raise InputError(f"--subset {args.subset}: {manifest} holds {utterances} "
                             "utterance(s); the spreads compare utterances, at least 2 are needed")
        rows = []
        for spec in args.run:
            name, _, checkpoint = spec.partition("=")
            if not name or not checkpoint:
                raise InputError(f"--run {spec!r}: expected NAME=CHECKPOINT")
            check_existing_file(checkpoint, f"--run {name}:")
            check_st_checkpoint(checkpoint)
            model, heard, task = load_st_model(checkpoint, args.data, args.subset)
            task.args.replace_audio = "silence"
            task.load_dataset(args.subset)
            rows.append({"name": name, **diagnose(model, heard, task.datasets[args.subset])})
        print(f"{args.subset}: {len(heard)} utterances, each alone")
        print(markdown(rows))


if __name__ == "__main__":
    main()
