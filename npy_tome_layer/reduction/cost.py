"""The cost model: frames each layer runs on and the encoder's multiply-add
FLOPs under a reduction setting, as arithmetic (the FLOP ideal of the benchmark)."""
from typing import Dict, Union

from .interface import TokenReduction, build_reduction


def reduced_lengths(frames: int, num_layers: int, rate: float, init_layer: int,
                    reduction: TokenReduction, seq_multiple: int = 1):
    """(sequence length each transformer layer runs on, valid frames leaving,
    sequence lengths each reduction step started from)."""
    valid = frames
    run = frames + (-frames) % seq_multiple  # fairseq pads to required_seq_len_multiple
    lengths, steps = [], []
    for i in range(num_layers):
        lengths.append(run)
        if reduction.acts_after(i, init_layer, rate):
            steps.append(run)
            valid, run = reduction.lengths_after(valid, run, rate)
    return lengths, valid, steps


def encoder_flops_formula(model_cfg: Dict, num_samples: int, batch: int = 1, rate: float = 1.0,
                          init_layer: int = 0, reduction: Union[str, TokenReduction] = "prune",
                          **settings) -> Dict[str, int]:
    """Multiply-add FLOPs (2 per MAC, as FlopCounterMode counts) of
    ``extract_features``: conv front end, projection, positional conv, layers.
    A layer on n frames: 8nC^2 (q, k, v, out) + 4n^2C (QK^T, AV) + 4nCF (FFN).
    ``reduction``: a built one (a model's: its settings as they are), or a
    registered name built with ``settings`` (its own)."""
    conv_layers = eval(model_cfg["conv_feature_layers"])  # noqa: S307 (fairseq's format)
    c, f = model_cfg["encoder_embed_dim"], model_cfg["encoder_ffn_embed_dim"]
    front, n_in, c_in = 0, num_samples, 1
    for dim, kernel, stride_ in conv_layers:
        n_out = (n_in - kernel) // stride_ + 1
        front += 2 * c_in * dim * kernel * n_out
        n_in, c_in = n_out, dim
    frames = n_in
    if c_in != c:
        front += 2 * c_in * c * frames  # post_extract_proj (absent when the dims agree)
    k, groups = model_cfg["conv_pos"], model_cfg["conv_pos_groups"]
    front += 2 * (c // groups) * c * k * (frames + 2 * (k // 2) - k + 1)  # pos_conv before SamePad
    # arithmetic only: a name's weights are never used
    step = reduction if isinstance(reduction, TokenReduction) else \
        build_reduction(reduction, 1, **settings)
    lengths, frames_out, steps = reduced_lengths(
        frames, model_cfg["encoder_layers"], rate, init_layer, step,
        model_cfg.get("required_seq_len_multiple", 1))
    layers = sum(8 * n * c * c + 4 * n * n * c + 4 * n * c * f for n in lengths)
    layers += sum(step.flops(n, c) for n in steps)
    return {"front_end": batch * front, "layers": batch * layers,
            "total": batch * (front + layers), "frames_out": frames_out}
