"""End-to-end ST: pruned HuBERT -> conv subsampler -> DeltaLM encoder -> DeltaLM decoder.

The DeltaLM encoder is shared with the MT path: a batch of token ids goes
straight into it, a batch of waveforms goes through HuBERT and the
subsampler first.
"""
import contextlib
import logging
import os
import sys
from typing import Optional

import torch
from torch import nn
from fairseq.data.data_utils import lengths_to_padding_mask
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    register_model,
    register_model_architecture,
)
from fairseq.models.speech_to_text.modules.convolution import Conv1dSubsampler
from fairseq.models.transformer import TransformerConfig
from omegaconf import OmegaConf

from ..errors import InputError
from ..io.checkpoints import checkpoint_model_args, checkpoint_task, load_checkpoint
from .deltalm import (
    DeltaLMDecoder,
    DeltaLMEncoder,
    DeltaLMModel,
    deltalm_base,
    load_released_deltalm,
)
from ..reduction import (ENCODER_SETTINGS, REDUCTION_SETTINGS, REDUCTIONS, build_reduction,
                         follows_rate)
from ..reduction.keep_rate import PRUNING_RATE, SCHEDULE_SETTINGS, check_rate_beside_schedule
from ..reduction.settings import TOKEN_REDUCTION
from ..encoder.pruned_hubert import REDUCTION_PREFIX, build_pruned_hubert, load_hubert_weights

logger = logging.getLogger(__name__)


class SpeechAndTextEncoder(FairseqEncoder):
    """Waveforms (float B x S) or tokens (long B x T) -> DeltaLM encoder output."""

    def __init__(self, dictionary, hubert, subsampler, text_encoder, freeze_hubert=False,
                 normalize_audio=False):
        super().__init__(dictionary)
        self.hubert = hubert
        self.subsampler = subsampler
        self.text_encoder = text_encoder
        self.freeze_hubert = freeze_hubert
        self.normalize_audio = normalize_audio  # HuBERT large was trained on normalised audio
        if freeze_hubert:
            for p in self.hubert.parameters():
                p.requires_grad_(False)

    def forward(self, src_tokens, src_lengths, **kwargs):
        if not src_tokens.is_floating_point():
            return self.text_encoder(src_tokens, src_lengths)
        return self.forward_speech(src_tokens, src_lengths)

    def forward_speech(self, audio, audio_lengths):
        padding_mask = lengths_to_padding_mask(audio_lengths)
        if self.normalize_audio:
            audio = _normalize_valid(audio, padding_mask)
        context = torch.no_grad() if self.freeze_hubert else contextlib.nullcontext()
        with context:
            hubert_out = self.hubert(audio, padding_mask=padding_mask if padding_mask.any() else None,
                                     mask=False, features_only=True)
        x, frame_mask = hubert_out["x"], hubert_out["padding_mask"]
        if frame_mask is None:
            frame_lengths = torch.full((x.size(0),), x.size(1), device=x.device, dtype=torch.long)
        else:
            # pruned positions hold filler frames; zero them so the subsampler's
            # convolutions do not read them into valid neighbours
            x = x.masked_fill(frame_mask.unsqueeze(-1), 0.0)
            frame_lengths = (~frame_mask).sum(dim=1)
        x, lengths = self.subsampler(x, frame_lengths)  # T x B x C
        lengths = lengths.clamp(min=1, max=x.size(0))
        encoder_out = self.text_encoder.forward_features(x.transpose(0, 1),
                                                         lengths_to_padding_mask(lengths))
        encoder_out[REDUCTION_OUTPUTS] = [hubert_out["reduction_outputs"]]
        return encoder_out

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.text_encoder.reorder_encoder_out(encoder_out, new_order)

    def max_positions(self):
        return None  # speech lengths are limited by the task (in samples)


# key of the reduction's outputs (what its loss reads) in the encoder's output
# and in the decoder's extra output
REDUCTION_OUTPUTS = "reduction_outputs"


class LengthMaskedSubsampler(Conv1dSubsampler):
    """fairseq's subsampler with frames past each row's length zeroed before
    every convolution: fairseq's lets the first layer's output past a row's
    end leak into the second layer's last valid frames, so a padded row would
    differ from the same utterance alone. Same parameters; changed from
    fairseq: ``forward`` only."""

    def forward(self, src_tokens, src_lengths):
        x = src_tokens.transpose(1, 2)  # B x C x T
        lengths = src_lengths
        for conv in self.conv_layers:
            past_end = torch.arange(x.size(2), device=x.device)[None, :] >= lengths[:, None]
            x = nn.functional.glu(conv(x.masked_fill(past_end.unsqueeze(1), 0.0)), dim=1)
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1  # kernel k, pad k//2
        return x.permute(2, 0, 1).contiguous(), self.get_out_seq_lens_tensor(src_lengths)


def _normalize_valid(audio, padding_mask):
    """Per-utterance zero mean / unit variance over valid samples (HuBERT large's
    task.normalize), so the result does not depend on padding. In fp32: a row
    of more than 65,504 samples would count to inf in fp16."""
    valid = (~padding_mask).float()
    samples = audio.float()
    n = valid.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (samples * valid).sum(dim=1, keepdim=True) / n
    var = (((samples - mean) * valid) ** 2).sum(dim=1, keepdim=True) / n
    return (((samples - mean) / torch.sqrt(var + 1e-5)) * valid).to(audio.dtype)


@register_model("hubert_transformer_pruning")
class HubertTransformerPruningModel(FairseqEncoderDecoderModel):
    @classmethod
    def add_args(cls, parser):
        DeltaLMModel.add_args(parser)
        parser.add_argument("--hubert-model-path", type=str, metavar="FILE",
                            help="official-format HuBERT checkpoint (hubert_base_ls960.pt)")
        parser.add_argument("--freeze-hubert", action="store_true")
        parser.add_argument("--fairseq-padding", action="store_true",
                            help="reproduce fairseq's padded speech path: HuBERT's GroupNorm "
                                 "statistics over the padding, a frame valid if any of its "
                                 "samples is, and subsampler convolutions that read past a "
                                 "row's end, so an utterance's features, the frames it keeps "
                                 "and its translation depend on its batch. Off: each row is "
                                 "computed as if alone (batch-invariant). Checkpoints written "
                                 "before this option keep fairseq's behaviour")
        parser.add_argument("--hubert-padding-mask-from-conv-lengths", action="store_true",
                            help="with --fairseq-padding: HuBERT's frame mask from conv "
                                 "output lengths (always so without --fairseq-padding)")
        for setting in reduction_settings():  # the reduction's, each declared once
            setting.add_flag(parser)
        parser.add_argument("--conv-kernel-sizes", type=str, help="subsampler kernels, e.g. 5,5")
        parser.add_argument("--conv-channels", type=int, help="subsampler channels")
        parser.add_argument("--load-pretrained-mt-encoder-decoder-from", type=str, metavar="FILE",
                            help="fairseq MT checkpoint (deltalm) for the encoder/decoder")

    @classmethod
    def build_hubert(cls, args):
        # The model config travels in args (and so in every checkpoint), so
        # fairseq-generate rebuilds HuBERT without the original file; the
        # weights come from the ST checkpoint's state dict.
        fresh = getattr(args, "hubert_cfg", None) is None
        if args.fairseq_padding is None:
            # new models are batch-invariant; a checkpoint written before the
            # option existed keeps the fairseq front end it was trained with
            args.fairseq_padding = not fresh
        if fresh:
            if not args.hubert_model_path:
                raise InputError("--hubert-model-path is required to build the ST model")
            state = load_checkpoint(args.hubert_model_path)
            args.hubert_cfg = OmegaConf.to_container(state["cfg"]["model"], resolve=True,
                                                     enum_to_str=True)
            args.hubert_normalize = bool(state["cfg"]["task"].get("normalize", False))
        hubert = build_pruned_hubert(args.hubert_cfg, **hubert_arguments(args))
        hubert.remove_pretraining_modules()
        if fresh:
            weights = {k: v for k, v in state["model"].items()
                       if not k.startswith(PRETRAINING_HEADS)}
            load_hubert_weights(hubert, weights, args.hubert_model_path)
            logger.info("loaded HuBERT from %s", args.hubert_model_path)
        return hubert

    @classmethod
    def build_model(cls, args, task):
        dictionary = task.target_dictionary
        take_reduction_inputs(args, task)
        hubert = cls.build_hubert(args)
        cfg = TransformerConfig.from_namespace(args)
        embed_tokens = DeltaLMModel.build_embedding(args, dictionary, args.encoder_embed_dim)
        text_encoder = DeltaLMEncoder(cfg, dictionary, embed_tokens)
        decoder = DeltaLMDecoder(cfg, dictionary, embed_tokens)
        subsampler_type = Conv1dSubsampler if args.fairseq_padding else LengthMaskedSubsampler
        subsampler = subsampler_type(
            hubert.encoder.embedding_dim, args.conv_channels, args.encoder_embed_dim,
            [int(k) for k in args.conv_kernel_sizes.split(",")],
        )
        encoder = SpeechAndTextEncoder(dictionary, hubert, subsampler, text_encoder,
                                       args.freeze_hubert, args.hubert_normalize)
        if getattr(args, "pretrained_deltalm_checkpoint", None):
            load_released_deltalm(text_encoder, decoder, args.pretrained_deltalm_checkpoint)
        if getattr(args, "load_pretrained_mt_encoder_decoder_from", None):
            load_mt_encoder_decoder(text_encoder, decoder,
                                    args.load_pretrained_mt_encoder_decoder_from)
        return cls(encoder, decoder)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        """fairseq's, with the reduction's outputs of a speech batch (what its
        loss reads) in the decoder's extra output, where the criterion finds them."""
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths, **kwargs)
        x, extra = self.decoder(prev_output_tokens, encoder_out=encoder_out, **kwargs)
        extra[REDUCTION_OUTPUTS] = encoder_out.get(REDUCTION_OUTPUTS, [{}])[0]
        return x, extra

    @property
    def length_reduction(self):
        return self.encoder.hubert.encoder.length_reduction

    # set by the task: True when fairseq rebuilds the model to load a checkpoint
    # into it (decoding, a sweep), False when a training starts from one
    from_checkpoint = False

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's, with the reduction's own weights matched to the reduction
        this model runs: another reduction's (a checkpoint swept or overridden
        to it) are left out. Where the checkpoint lacks this one's, a training
        that starts from it (--finetune-from-model) starts them fresh; a model
        rebuilt to decode the checkpoint is refused in one line (they would be
        random)."""
        prefix = HUBERT_PREFIX + REDUCTION_PREFIX
        own = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        missing = sorted(set(own) - set(state_dict))
        if strict and missing and self.from_checkpoint:
            raise InputError(f"the checkpoint has no weights for token_reduction "
                             f"{self.length_reduction.name!r} ({', '.join(missing[:3])}): it was "
                             "trained with another reduction, and this one's weights are "
                             "learned")
        if missing:
            logger.info("token_reduction %s starts its own weights fresh: %s",
                        self.length_reduction.name, ", ".join(missing))
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix) or k in own}
        state_dict.update((k, own[k]) for k in missing)
        if not self.from_checkpoint:
            state_dict = self._subsampler_fresh_where_it_differs(state_dict)
        return super().load_state_dict(state_dict, strict, model_cfg, args)

    def _subsampler_fresh_where_it_differs(self, state_dict):
        """A training started from a checkpoint whose subsampler has other layers
        (a mode with its own --conv-kernel-sizes, started from the dense run)
        starts the subsampler fresh: its weights mean nothing to another stack."""
        mine = {k: v for k, v in self.state_dict().items() if k.startswith(SUBSAMPLER_PREFIX)}
        theirs = {k: v for k, v in state_dict.items() if k.startswith(SUBSAMPLER_PREFIX)}
        if mine.keys() == theirs.keys() and all(
                mine[k].shape == theirs[k].shape for k in mine):
            return state_dict
        logger.info("the subsampler differs from the checkpoint's (%d tensors there, %d here): "
                    "it starts fresh", len(theirs), len(mine))
        kept = {k: v for k, v in state_dict.items() if not k.startswith(SUBSAMPLER_PREFIX)}
        kept.update(mine)
        return kept

    def reduction_losses(self, net_output, sample) -> tuple:
        """(loss terms, statistics) of the reduction in this forward, one per
        name in its ``loss_names`` and ``statistic_names`` (0 for a batch
        without its outputs: a text batch)."""
        outputs = net_output[1].get(REDUCTION_OUTPUTS)
        reduction = self.length_reduction
        terms = reduction.loss(outputs, sample) if outputs else {}
        counts = reduction.statistics(outputs, sample) if outputs else {}
        return ({name: terms.get(name, 0.0) for name in reduction.loss_names},
                {name: counts.get(name, 0) for name in reduction.statistic_names})


def take_reduction_inputs(args, task) -> None:
    """Settings of the model's reduction that the data sets (the CTC head's
    size): taken where the arguments have none, checked where a checkpoint has one."""
    own = {s.name for s in REDUCTIONS[TOKEN_REDUCTION.value_in(args)].settings}
    for name, (value, source) in getattr(task, "reduction_inputs", dict)().items():
        if name not in own:
            continue
        held = getattr(args, name, None)
        if held is None:
            setattr(args, name, value)
        elif held != value:
            raise InputError(f"{source}: gives {name} {value}, but the model was built with "
                             f"{held}: not the vocabulary it was trained with")


def load_mt_encoder_decoder(text_encoder, decoder, path):
    """Encoder/decoder weights of a fairseq MT checkpoint trained with ``deltalm``."""
    weights = load_checkpoint(path)["model"]
    for prefix, module in (("encoder.", text_encoder), ("decoder.", decoder)):
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as e:
            raise InputError(f"{path}: MT checkpoint does not fit the ST {prefix[:-1]}: {e}") from e
    logger.info("loaded MT encoder/decoder from %s", path)


# the ST model's HuBERT in its state dict, and the heads of HuBERT files it drops
HUBERT_PREFIX = "encoder.hubert."
SUBSAMPLER_PREFIX = "encoder.subsampler."
PRETRAINING_HEADS = ("final_proj.", "label_embs_concat", "target_glu.")


def reduction_settings():
    """Every setting of the pruned encoder: which reduction, from which layer,
    the keep rate and its schedule, and each registered reduction's own."""
    return ENCODER_SETTINGS + tuple(REDUCTION_SETTINGS.values())


# the subsampler's arguments: a resumed run must keep them as its reduction's
SUBSAMPLER_ARGUMENTS = ("conv_kernel_sizes", "conv_channels")


def resumed_checkpoint(args) -> Optional[str]:
    """The checkpoint fairseq-train will resume from, as fairseq chooses it:
    SAVE_DIR/checkpoint_last.pt where it exists (--finetune-from-model is then
    ignored), else a --restore-file other than the default; None for a new run."""
    restore = getattr(args, "restore_file", None) or "checkpoint_last.pt"
    if restore == "checkpoint_last.pt":
        last = os.path.join(getattr(args, "save_dir", None) or "checkpoints", restore)
        return last if os.path.isfile(last) else None
    return restore if os.path.isfile(restore) else None


def check_resumed_settings(args) -> None:
    """A run resumed from its own checkpoint keeps the reduction and subsampler it
    was trained with: fairseq would continue under other settings without a word
    (and the checkpoint then records them) or fail on the weights' shapes. One
    line naming the flag, before training."""
    path = resumed_checkpoint(args)
    if path is None or getattr(args, "reset_optimizer", False):
        return  # (a reset run, or a file of another stage: its own checks)
    try:
        state = load_checkpoint(path)
        trained = checkpoint_model_args(state)
    except Exception:  # not readable as a checkpoint: fairseq's load says why
        return
    if hasattr(trained, TOKEN_REDUCTION.name) and hasattr(args, TOKEN_REDUCTION.name):
        # this project's ST checkpoint and run (not a HuBERT file, not the MT stage)
        compared = [(s.name, s.value_in(trained), s.value_in(args))
                    for s in reduction_settings()]
        compared += [(name, getattr(trained, name, None), getattr(args, name, None))
                     for name in SUBSAMPLER_ARGUMENTS if getattr(trained, name, None) is not None]
        for name, before, now in compared:
            if before != now:
                raise InputError(
                    f"--{name.replace('_', '-')} {now}: the run resumes from {path}, trained "
                    f"with {name} {before}; resume with its settings, or train into another "
                    f"--save-dir (--finetune-from-model {path} starts there from its weights)")
    if checkpoint_task(state) == ST_TASK and getattr(trained, "arch", None) == getattr(
            args, "arch", None):  # the same stage's own run (another's: fairseq's load refuses)
        stop_if_finished(args, state, path)


def stop_if_finished(args, state: dict, path: str) -> None:
    """fairseq-train resumed from a checkpoint that has reached --max-update
    trains one update more before it checks (each rerun of a finished stage
    changed its checkpoint): a finished run ends here instead, exit status 0."""
    updates = ((state.get("optimizer_history") or [{}])[-1] or {}).get("num_updates", 0)
    max_update = getattr(args, "max_update", 0) or 0
    if 0 < max_update <= updates:
        print(f"fairseq-train: {path} has {updates} updates, --max-update {max_update}: the run "
              "is finished, nothing to train (raise --max-update to train on)", flush=True)
        sys.exit(0)


def hubert_arguments(args) -> dict:
    """``build_pruned_hubert``'s keyword arguments from an ST model's args, the
    one place they are read. A setting missing from an older checkpoint takes
    its declared default, what that checkpoint was trained with
    (``fairseq_padding`` None: decided by the caller)."""
    return dict(
        fairseq_padding=getattr(args, "fairseq_padding", None),
        padding_mask_from_conv_lengths=getattr(args, "hubert_padding_mask_from_conv_lengths",
                                               False),
        **{s.name: s.value_in(args) for s in reduction_settings()})


def rate_arguments(args) -> dict:
    """The keep-rate arguments of an ST model's args, for
    ``KeepRateSchedule.from_arguments`` (None where absent)."""
    return {s.name: getattr(args, s.name, None) for s in SCHEDULE_SETTINGS}


ST_TASK = "speech_and_text_translation"


def checkpoint_language(state: dict):
    """The target language the checkpoint's task was trained for, or None."""
    cfg = state.get("cfg") or {}
    task_cfg = cfg.get("task") if hasattr(cfg, "get") else None
    return getattr(task_cfg, "tgt_lang", None) or getattr(state.get("args"), "tgt_lang", None)


def check_st_checkpoint(path: str, tgt_lang=None, state=None) -> dict:
    """The state of a trained ST checkpoint of this project (for ``tgt_lang``
    when given), or an ``InputError`` saying what the file is instead."""
    state = load_checkpoint(path) if state is None else state
    task = checkpoint_task(state)
    if "model" not in state and "weights" in state:
        raise InputError(f"{path}: released DeltaLM weights, not a trained ST checkpoint")
    if task == "hubert_pretraining":
        raise InputError(f"{path}: a HuBERT checkpoint (task hubert_pretraining), not a trained "
                         "ST checkpoint")
    if task != ST_TASK:
        raise InputError(f"{path}: a checkpoint of task {task!r}, not a trained ST checkpoint "
                         f"of this project (task {ST_TASK})")
    args = checkpoint_model_args(state)
    if getattr(args, "hubert_cfg", None) is None:
        raise InputError(f"{path}: an MT-stage checkpoint (arch {getattr(args, 'arch', '?')}, "
                         "scripts/train_mt.sh), not an ST one; train_st.sh starts from it")
    trained_for = checkpoint_language(state)
    if tgt_lang is not None and trained_for is not None and trained_for != tgt_lang:
        raise InputError(f"{path}: a checkpoint of en-{trained_for}, not en-{tgt_lang}")
    return state


def hubert_from_st_checkpoint(path: str, **overrides):
    """The HuBERT of a trained ST checkpoint in eval mode, at the keep rate its
    training reached, or with ``overrides`` of ``build_pruned_hubert``'s
    arguments (e.g. ``pruning_rate``)."""
    state = check_st_checkpoint(path)
    args = checkpoint_model_args(state)
    kwargs = hubert_arguments(args)
    check_rate_beside_schedule(overrides, kwargs, whose="this checkpoint's")
    if kwargs["fairseq_padding"] is None:  # written before the option: fairseq's front end
        kwargs["fairseq_padding"] = True
    model = build_pruned_hubert(args.hubert_cfg, **{**kwargs, **overrides})
    model.remove_pretraining_modules()
    load_hubert_weights(model, st_hubert_weights(state["model"]), path)
    model.encoder.set_num_updates(
        (state.get("optimizer_history") or [{}])[-1].get("num_updates", 0))
    return model.eval()


def st_hubert_weights(weights: dict) -> dict:
    """HuBERT's tensors of an ST state dict, named as in a HuBERT file."""
    return {k[len(HUBERT_PREFIX):]: v for k, v in weights.items() if k.startswith(HUBERT_PREFIX)}


def _pruning_defaults(args, **arch_defaults):
    """Every setting not given takes ``arch_defaults``' value, else its
    declared default; the architectures' keep rate, 0.9, only for a reduction
    whose counts follow it (others, e.g. coverage, a merge threshold, conv,
    ctc: 1, the rate then not applying)."""
    rate_given = getattr(args, PRUNING_RATE.name, None) is not None
    for setting in reduction_settings():
        if getattr(args, setting.name, None) is None:
            setattr(args, setting.name, arch_defaults.get(setting.name, setting.default))
    if not rate_given:
        args.pruning_rate = FIXED_ARCH_RATE if follows_the_rate(args) else 1.0
    args.freeze_hubert = getattr(args, "freeze_hubert", False)
    # None: decided when HuBERT is built (new model or older checkpoint)
    args.fairseq_padding = getattr(args, "fairseq_padding", None)
    args.hubert_padding_mask_from_conv_lengths = getattr(
        args, "hubert_padding_mask_from_conv_lengths", False)
    args.conv_kernel_sizes = getattr(args, "conv_kernel_sizes", "5,5")
    args.conv_channels = getattr(args, "conv_channels", 1024)
    args.hubert_normalize = getattr(args, "hubert_normalize", False)
    deltalm_base(args)


# the paper's keep rate: the architectures' default for a reduction that follows the rate
FIXED_ARCH_RATE = 0.9


def follows_the_rate(args) -> bool:
    """Whether the reduction the args choose keeps counts the keep rate sets
    (the instance says: adjacent does without a merge threshold only). One
    that cannot be built yet (coverage without its share, ctc before the data
    gives its head's size) does not: its build says why later."""
    cls = REDUCTIONS[TOKEN_REDUCTION.check(args.token_reduction)]
    own = {s.name: s.value_in(args) for s in cls.settings}
    try:
        return follows_rate(build_reduction(args.token_reduction, 1, **own))
    except InputError:
        return False


@register_model_architecture("hubert_transformer_pruning", "hubert_transformer_pruning_layer")
def hubert_transformer_pruning_layer(args):
    # no max/min rate: KeepRateSchedule.from_arguments keeps --pruning-rate fixed
    _pruning_defaults(args)


@register_model_architecture("hubert_transformer_pruning",
                             "hubert_transformer_pruning_layer_schedule")
def hubert_transformer_pruning_layer_schedule(args):
    # a max and a min rate: KeepRateSchedule.from_arguments builds the schedule
    _pruning_defaults(args, pruning_max_rate=1.0, pruning_min_rate=0.9,
                      pruning_schedule_updates=10000)
