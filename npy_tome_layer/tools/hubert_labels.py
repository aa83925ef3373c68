"""HuBERT's first-iteration targets for a prepared pair's train split, in the
layout fairseq's ``hubert_pretraining`` task reads:

    python -m npy_tome_layer.tools.hubert_labels --data DATA_DIR --out LABEL_DIR \\
        [--clusters 50] [--valid-share 0.05] [--seed 1] [--max-fit-frames 200000]
    python -m npy_tome_layer.tools.hubert_labels --arch-flags HUBERT.pt

Only ``DATA_DIR/train.tsv`` is read (dev and tst-COMMON are never seen). Each
train row's segment is cut to ``LABEL_DIR/wav/ID.wav`` (fairseq's HuBERT
dataset reads one file per utterance); a share of the rows, chosen by
``--seed``, becomes the validation split. Features are those of fairseq's
recipe for the first iteration: Kaldi MFCCs (13 coefficients, 25 ms windows
every 10 ms, no energy, no dither) with deltas and delta-deltas, 39 values
at 100 frames per second, computed by kaldi-native-fbank (Kaldi's own
algorithm as a maintained C++ library; torchaudio, which fairseq's recipe
uses, has no build for this torch). scikit-learn's ``MiniBatchKMeans`` learns
``--clusters`` centroids on the train rows' frames and labels every frame.
Writes ``train.tsv``/``valid.tsv`` (first line the wav folder, then
``ID.wav<TAB>samples``), ``train.km``/``valid.km`` (one line of labels per
utterance, its frame count that of the audio at ``LABEL_RATE``) and
``dict.km.txt``; the folder appears whole or not at all.

``--arch-flags`` prints, one per line, the fairseq-train flags and values that
rebuild the architecture of an official-format HuBERT file (its
``cfg.model``), so a pre-training run starts from random weights of that shape.
"""
import argparse
import os
import random
import sys
from typing import List, Tuple

import numpy as np
import soundfile as sf

from ..errors import InputError, exit_on_input_error
from ..io.atomic import atomic_destination, check_output_folder, remove_killed_temporaries
from ..io.flags import keep_rate_flag, whole_number_flag
from ..io.audio import SAMPLE_RATE
from ..st.dataset import check_audio, parse_audio_ref, read_audio, read_manifest

LABEL_RATE = 100  # MFCC frames per second: one every 10 ms
WINDOW_SAMPLES = SAMPLE_RATE * 25 // 1000
SHIFT_SAMPLES = SAMPLE_RATE // LABEL_RATE
DELTA_WINDOW = 2  # frames each side, as Kaldi's and torchaudio's deltas (window 5)
# cfg.model fields that set the shape of fairseq's HubertModel
ARCH_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
               "encoder_attention_heads", "final_dim", "extractor_mode", "layer_norm_first",
               "conv_feature_layers", "conv_pos", "conv_pos_groups", "conv_bias",
               "activation_fn")


def mfcc_frame_count(num_samples: int) -> int:
    """Frames of Kaldi's framing with snip_edges: whole windows only."""
    if num_samples < WINDOW_SAMPLES:
        return 0
    return 1 + (num_samples - WINDOW_SAMPLES) // SHIFT_SAMPLES


def deltas(features: np.ndarray, window: int = DELTA_WINDOW) -> np.ndarray:
    """Kaldi's regression deltas over time (T x D): sum_n n (x[t+n] - x[t-n]) /
    (2 sum_n n^2), n = 1..window, the edge frames repeated."""
    padded = np.pad(features, ((window, window), (0, 0)), mode="edge")
    length = len(features)
    total = sum(n * (padded[window + n:window + n + length] - padded[window - n:window - n + length])
                for n in range(1, window + 1))
    return total / (2 * sum(n * n for n in range(1, window + 1)))


def mfcc_features(audio: np.ndarray) -> np.ndarray:
    """T x 39: 13 MFCCs, their deltas and delta-deltas (fairseq's first
    HuBERT iteration), T = ``mfcc_frame_count(len(audio))``."""
    import kaldi_native_fbank as knf

    options = knf.MfccOptions()
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.frame_opts.dither = 0.0  # deterministic labels
    options.use_energy = False
    extractor = knf.OnlineMfcc(options)
    extractor.accept_waveform(SAMPLE_RATE, audio.astype(np.float32).tolist())
    extractor.input_finished()
    mfcc = np.array([extractor.get_frame(i) for i in range(extractor.num_frames_ready)],
                    dtype=np.float32).reshape(-1, options.num_ceps)
    first = deltas(mfcc)
    return np.concatenate([mfcc, first, deltas(first)], axis=1)


def train_segments(data_dir: str) -> List[Tuple[str, np.ndarray]]:
    """(id, audio) of every row of ``data_dir/train.tsv``, checked as the task checks them."""
    manifest = os.path.join(data_dir, "train.tsv")
    base, cache, segments = os.path.dirname(os.path.abspath(manifest)), {}, []
    for row in read_manifest(manifest):
        where = f"{manifest}:{row['_line']} ({row['id']})"
        if not row["id"] or os.sep in row["id"] or row["id"] in (".", ".."):
            raise InputError(f"{where}: id {row['id']!r} cannot name a wav file")
        ref = parse_audio_ref(row["audio"], base)
        segments.append((row["id"], read_audio(ref, check_audio(ref, where, cache), where)))
    if len({name for name, _ in segments}) != len(segments):
        raise InputError(f"{manifest}: ids are not unique")
    return segments


def validation_ids(ids: List[str], share: float, seed: int) -> set:
    """A ``share`` of the ids (at least one, and at least one left to train on)."""
    if len(ids) < 2:
        raise InputError(f"HuBERT pre-training needs at least 2 train rows, got {len(ids)}")
    count = min(len(ids) - 1, max(1, round(share * len(ids))))
    return set(random.Random(seed).sample(sorted(ids), count))


def fit_kmeans(features: List[np.ndarray], clusters: int, seed: int, max_frames: int):
    """MiniBatchKMeans with fairseq's recipe settings, on at most
    ``max_frames`` frames drawn by ``seed``."""
    from sklearn.cluster import MiniBatchKMeans

    frames = np.concatenate(features)
    if len(frames) < clusters:
        raise InputError(f"--clusters {clusters}: the train rows have only {len(frames)} frames")
    if len(frames) > max_frames:
        frames = frames[np.random.default_rng(seed).choice(len(frames), max_frames,
                                                           replace=False)]
    kmeans = MiniBatchKMeans(n_clusters=clusters, init="k-means++", max_iter=100,
                             batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
                             reassignment_ratio=0.0, random_state=seed)
    return kmeans.fit(frames)


def write_split(folder: str, name: str, wav_root: str, rows) -> None:
    """NAME.tsv and NAME.km of (id, samples, labels) rows."""
    with open(os.path.join(folder, f"{name}.tsv"), "w", encoding="utf-8") as tsv, \
            open(os.path.join(folder, f"{name}.km"), "w", encoding="utf-8") as km:
        tsv.write(wav_root + "\n")
        for utterance, samples, labels in rows:
            tsv.write(f"{utterance}.wav\t{samples}\n")
            km.write(" ".join(map(str, labels)) + "\n")


def make_labels(data_dir: str, out: str, clusters: int, valid_share: float, seed: int,
                max_fit_frames: int, log=print) -> dict:
    segments = train_segments(data_dir)
    short = [name for name, audio in segments if mfcc_frame_count(len(audio)) == 0]
    if short:
        raise InputError(f"{data_dir}/train.tsv: {short[0]} is shorter than one MFCC window "
                         f"({WINDOW_SAMPLES} samples)")
    valid = validation_ids([name for name, _ in segments], valid_share, seed)
    log(f"[hubert_labels] {len(segments)} train rows ({len(valid)} for validation): MFCC")
    features = {name: mfcc_features(audio) for name, audio in segments}
    kmeans = fit_kmeans([features[n] for n, _ in segments if n not in valid], clusters, seed,
                        max_fit_frames)
    log(f"[hubert_labels] k-means, {clusters} clusters: inertia {kmeans.inertia_:.1f}")
    final = os.path.abspath(out)
    # a killed run's half-written folder (OUT.tmp-PID, hundreds of wavs) is
    # not this run's to keep: each rerun would leave one more
    remove_killed_temporaries(final, log=lambda m: log(f"[hubert_labels] {m}"))
    with atomic_destination(final) as tmp:
        os.makedirs(os.path.join(tmp, "wav"))
        rows = {"train": [], "valid": []}
        for name, audio in segments:
            sf.write(os.path.join(tmp, "wav", f"{name}.wav"), audio, SAMPLE_RATE,
                     subtype="FLOAT")
            labels = kmeans.predict(features[name]).tolist()
            rows["valid" if name in valid else "train"].append((name, len(audio), labels))
        for split, split_rows in rows.items():
            write_split(tmp, split, os.path.join(final, "wav"), split_rows)
        with open(os.path.join(tmp, "dict.km.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{i} 1\n" for i in range(clusters))
    return {split: len(split_rows) for split, split_rows in rows.items()}


def arch_flags(hubert_file: str) -> List[str]:
    """fairseq-train flags for the architecture of an official-format HuBERT file."""
    from ..io.checkpoints import checkpoint_task, load_checkpoint

    state = load_checkpoint(hubert_file)
    model_cfg = (state.get("cfg") or {}).get("model")
    task = checkpoint_task(state)
    if task not in (None, "hubert_pretraining") or not model_cfg or \
            any(field not in model_cfg for field in ARCH_FIELDS):
        raise InputError(f"{hubert_file}: not a HuBERT file (task {task!r}; a HuBERT file's "
                         f"cfg.model has {', '.join(ARCH_FIELDS)})")
    flags = []
    for field in ARCH_FIELDS:
        value, flag = model_cfg[field], "--" + field.replace("_", "-")
        if isinstance(value, bool):
            flags += [flag] if value else []
        else:
            flags += [flag, str(value)]
    return flags


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="prepared pair directory (reads train.tsv only)")
    p.add_argument("--out", help="label folder to write (must not exist)")
    p.add_argument("--clusters", type=whole_number_flag(2), default=50)
    p.add_argument("--valid-share", type=keep_rate_flag, default=0.05)
    p.add_argument("--seed", type=whole_number_flag(0), default=1)
    p.add_argument("--max-fit-frames", type=whole_number_flag(1), default=200000,
                   help="frames k-means learns from (drawn from the train rows)")
    p.add_argument("--arch-flags", metavar="HUBERT_PT",
                   help="print the architecture flags of this HuBERT file and exit")
    args = p.parse_args(argv)
    with exit_on_input_error("hubert_labels"):
        if args.arch_flags:
            print("\n".join(arch_flags(args.arch_flags)))
            return
        if not args.data or not args.out:
            p.error("--data and --out are required (or --arch-flags)")
        if os.path.exists(args.out):
            raise InputError(f"--out {args.out}: exists; remove it to make the labels again")
        check_output_folder(args.out, "--out")
        counts = make_labels(args.data, args.out, args.clusters, args.valid_share, args.seed,
                             args.max_fit_frames,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"wrote {args.out}: {counts['train']} train and {counts['valid']} valid "
              f"utterances, {args.clusters} clusters at {LABEL_RATE} labels per second")


if __name__ == "__main__":
    main()
