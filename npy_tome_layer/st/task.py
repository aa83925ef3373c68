"""Task ``speech_and_text_translation``: ST on S2T manifests, MT on fairseq-
preprocess data, or both (CRESS's multitask); dev BLEU for checkpoint selection."""
import ast
import difflib
import json
import logging
import os
from argparse import ArgumentParser, Namespace

import numpy as np
import torch
import yaml
from fairseq import metrics, utils
from fairseq.data import encoders
from fairseq.distributed import utils as distributed_utils
from fairseq.tasks import FairseqTask, register_task
from fairseq.tasks.translation import load_langpair_dataset

from ..errors import InputError, shorten
from ..io.dictionary import load_dictionary
from ..reduction import REDUCTIONS
from ..reduction.keep_rate import check_rate_beside_schedule
from .criterion import EXTRA_TEXT
from .ctc_vocabulary import FILE_NAME as CTC_VOCABULARY_FILE, CTCVocabulary
from .scoring import WRITTEN_REFERENCES
from .dataset import AUDIO_REPLACEMENTS, SpeechTranslationDataset
from .model import check_resumed_settings

logger = logging.getLogger(__name__)


def read_data_config(cfg_path: str) -> dict:
    """The data folder's config.yaml (written by prepare_mustc), checked."""
    if not os.path.isfile(cfg_path):
        raise InputError(f"{cfg_path}: data config not found (prepare_mustc writes it)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            data_cfg = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data_cfg, dict):
        raise InputError(f"{cfg_path}: expected a mapping, got {type(data_cfg).__name__}")
    for key in ("vocab_filename", "bpe_tokenizer"):
        if key not in data_cfg:
            raise InputError(f"{cfg_path}: missing '{key}'")
    return data_cfg


# the target language of a data folder prepared before config.yaml named it
DEFAULT_TGT_LANG = "de"


@register_task("speech_and_text_translation")
class SpeechAndTextTranslationTask(FairseqTask):
    """ST on S2T manifests and MT on fairseq-preprocess data, with CRESS's
    flags and meanings (ictnlp/CRESS, which the paper's code is built on):

    - ``--st-training``: speech batches from ``DATA/SPLIT.tsv``;
    - ``--st-training --mt-finetune``: each speech batch also gives the MT loss
      of its own transcripts (1:1 multitask, see the criterion);
    - ``--ext-mt-training`` (alone): the MT stage, text batches from
      ``--text-data`` sized by ``--max-tokens-text``; ``--mt-finetune`` alone
      is kept as another name for it;
    - ``--st-training --ext-mt-training``: one extra text batch of up to
      ``--max-tokens-text`` tokens joins every speech batch, and the loss is
      averaged over the target tokens of both (CRESS instead interleaves the
      two data sets' batches in one epoch);
    - ``--eval-bleu``: dev BLEU (sacreBLEU on detokenised text) in validation,
      for ``--best-checkpoint-metric bleu``.
    """

    @staticmethod
    def add_args(parser):
        parser.add_argument("data", help="directory with {split}.tsv and config.yaml")
        parser.add_argument("--config-yaml", default="config.yaml",
                            help="names the sentencepiece model and dictionary")
        parser.add_argument("--text-data", default=None, metavar="DIR",
                            help="fairseq-preprocess MT data (train.en-XX.en.bin ...)")
        parser.add_argument("--src-lang", default="en")
        parser.add_argument("--tgt-lang", default=None,
                            help="the target language (default: the one the data folder's "
                                 "config.yaml names, else de); another than the data's or the "
                                 "checkpoint's is refused")
        parser.add_argument("--st-training", action="store_true",
                            help="train on speech (the manifests in DATA)")
        parser.add_argument("--mt-finetune", action="store_true",
                            help="with --st-training: add the MT loss of each speech batch's "
                                 "transcripts (CRESS); alone: the same as --ext-mt-training")
        parser.add_argument("--ext-mt-training", action="store_true",
                            help="MT on --text-data; with --st-training one text batch joins "
                                 "every speech batch")
        parser.add_argument("--max-tokens-text", type=int, default=None, metavar="N",
                            help="max tokens per text batch (MT stage, --ext-mt-training); "
                                 "default: --max-tokens (4096 for the extra batches)")
        parser.add_argument("--batch-size-text", type=int, default=None, metavar="N",
                            help="max sentences per text batch")
        # not --max-source-positions: the models own that name (text positions)
        parser.add_argument("--max-audio-samples", "--max-audio-positions", type=int,
                            default=900000, metavar="N",
                            help="longest utterance in samples (CRESS: 900000, 56 s at 16 kHz)")
        parser.add_argument("--max-text-positions", type=int, default=512,
                            help="longest source/target text in tokens")
        parser.add_argument("--replace-audio", choices=AUDIO_REPLACEMENTS, default=None,
                            help="'silence': every utterance's audio is replaced by silence "
                                 "of the same length (the no-audio floor: what a model "
                                 "writes without listening; fairseq-generate with it)")
        # validation BLEU, as fairseq's translation task and CRESS spell it
        parser.add_argument("--eval-bleu", action="store_true",
                            help="decode the validation set and log sacreBLEU as 'bleu'")
        parser.add_argument("--eval-bleu-args", type=str, metavar="JSON", default="{}",
                            help='generation args, e.g. \'{"beam": 8, "lenpen": 1.2}\'')
        parser.add_argument("--eval-bleu-detok", type=str, default="space",
                            help="fairseq tokenizer that detokenises after sentencepiece "
                                 "decoding ('space': none)")
        parser.add_argument("--eval-bleu-detok-args", type=str, metavar="JSON", default="{}",
                            help="args for --eval-bleu-detok")
        parser.add_argument("--eval-bleu-remove-bpe", nargs="?", const="@@ ", default=None,
                            help="BPE symbol to remove before sentencepiece decoding")
        parser.add_argument("--eval-tokenized-bleu", action="store_true",
                            help="score with tokenize='none' instead of sacreBLEU's 13a")
        parser.add_argument("--eval-bleu-print-samples", action="store_true",
                            help="log one hypothesis and reference per validation batch")
        parser.add_argument("--eval-bleu-bpe", type=str, default=None, metavar="BPE",
                            help="BPE that decodes for --eval-bleu (default: the "
                                 "sentencepiece model named in config.yaml)")
        parser.add_argument("--eval-bleu-bpe-path", type=str, default=None, metavar="FILE",
                            help="model file of --eval-bleu-bpe")

        parser.add_argument("--ctc-vocab", default=None, metavar="FILE",
                            help="the transcripts' CTC labels (characters, one a line), for a "
                                 "token reduction trained on them (ctc); default: the data "
                                 "folder's ctc_vocab.txt where prepare_mustc wrote one")

    def __init__(self, args, dictionary, data_cfg):
        super().__init__(args)
        self.args = args  # legacy argparse task: cfg is this Namespace
        self.dictionary = dictionary
        self.data_cfg = data_cfg
        self._spm = None
        self._mt_train = None
        self._mt_batches = None
        self._mt_epoch = 0
        self._bleu = None  # (generator, bpe, detokenizer) when --eval-bleu
        self._ctc_vocabulary = None
        self.model_overrides = {}  # fairseq-generate's --model-overrides (setup_task)

    @classmethod
    def setup_task(cls, args, **kwargs):
        check_ddp_backend(args)
        check_half_precision(args)
        overrides = check_model_overrides_text(args)
        cfg_path = os.path.join(args.data, args.config_yaml)
        data_cfg = read_data_config(cfg_path)
        prepared = data_cfg.get("tgt_lang")  # (a folder prepared before it was written: None)
        given = getattr(args, "tgt_lang", None)
        if prepared and given and given != prepared:
            raise InputError(f"--tgt-lang {given}: {cfg_path} was prepared for en-{prepared} "
                             f"(its targets are {prepared})")
        args.tgt_lang = given or prepared or DEFAULT_TGT_LANG
        dict_path = cls._resolve(args.data, data_cfg["vocab_filename"])
        if not os.path.isfile(dict_path):
            raise InputError(f"{cfg_path}: vocab_filename {dict_path} not found")
        dictionary = load_dictionary(dict_path, dict_path)
        logger.info("dictionary: %d types", len(dictionary))
        task = cls(args, dictionary, data_cfg)
        task.model_overrides = overrides  # checked against the checkpoint in build_model
        return task

    @staticmethod
    def _resolve(base, path):
        return path if os.path.isabs(path) else os.path.join(base, path)

    @property
    def speech_input(self) -> bool:
        """Speech batches unless this is the text-only MT stage."""
        return self.args.st_training or not (self.args.mt_finetune or self.args.ext_mt_training)

    @property
    def ctc_vocabulary(self):
        """The CTC vocabulary: ``--ctc-vocab``, else the data folder's
        ``ctc_vocab.txt`` if there is one, else None."""
        if self._ctc_vocabulary is None:
            path = getattr(self.args, "ctc_vocab", None)
            default = os.path.join(self.args.data, CTC_VOCABULARY_FILE)
            if path is None and os.path.exists(default):
                path = default
            if path is not None:
                self._ctc_vocabulary = CTCVocabulary.from_file(path)
        return self._ctc_vocabulary

    def reduction_inputs(self) -> dict:
        """Settings of a token reduction that the data sets, by name, with the
        file each comes from: the CTC head's size from the CTC vocabulary."""
        vocabulary = self.ctc_vocabulary
        return {} if vocabulary is None else {"ctc_vocab_size": (vocabulary.size, vocabulary.path)}

    @property
    def transcripts_required(self) -> bool:
        """The model's reduction trains on the transcripts (it has a loss of its own)."""
        name = getattr(self.args, "token_reduction", None)
        return name in REDUCTIONS and bool(REDUCTIONS[name].loss_names)

    @property
    def mt_on_transcripts(self) -> bool:
        """CRESS's --st-training --mt-finetune: MT loss on each speech batch's transcripts."""
        return self.args.st_training and self.args.mt_finetune

    @property
    def extra_mt_batches(self) -> bool:
        return self.args.st_training and self.args.ext_mt_training

    @property
    def source_dictionary(self):
        return None if self.speech_input else self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        if self.speech_input:
            return self.args.max_audio_samples, self.args.max_text_positions
        return self.args.max_text_positions, self.args.max_text_positions

    # the pretrained files a fresh model starts from; a checkpoint brings its own weights
    PRETRAINED_PATH_ARGS = ("pretrained_deltalm_checkpoint", "load_pretrained_mt_encoder_decoder_from")

    def build_model(self, args, from_checkpoint=False):
        """fairseq passes ``from_checkpoint=True`` when it rebuilds a model to
        load a checkpoint (fairseq-generate): the DeltaLM / MT files named in
        its args may no longer exist and would be overwritten anyway."""
        if from_checkpoint and isinstance(args, Namespace):
            args = Namespace(**vars(args))
            for name in self.PRETRAINED_PATH_ARGS:
                setattr(args, name, None)
        if not from_checkpoint:
            check_resumed_settings(args)
        else:
            check_rate_override(self.model_overrides, args)
            trained = getattr(args, "tgt_lang", None)  # the training's task arguments
            if trained and self.args.tgt_lang and trained != self.args.tgt_lang:
                raise InputError(f"--tgt-lang {self.args.tgt_lang}: the checkpoint was trained "
                                 f"to translate into {trained}")
        model = super().build_model(args, from_checkpoint)
        model.from_checkpoint = from_checkpoint  # a reduction's missing weights: refused
        if self.args.eval_bleu:
            gen_args = Namespace(**_json_arg(self.args.eval_bleu_args, "--eval-bleu-args"))
            if self.args.eval_bleu_bpe:
                bpe = encoders.build_bpe(Namespace(bpe=self.args.eval_bleu_bpe,
                                                   sentencepiece_model=self.args.eval_bleu_bpe_path))
            else:
                bpe = self.build_bpe()
            detok = encoders.build_tokenizer(Namespace(
                tokenizer=self.args.eval_bleu_detok,
                **_json_arg(self.args.eval_bleu_detok_args, "--eval-bleu-detok-args")))
            self._bleu = (self.build_generator([model], gen_args), bpe, detok)
        return model

    def build_bpe(self, args=None):
        bpe = dict(self.data_cfg["bpe_tokenizer"])
        if "sentencepiece_model" in bpe:
            bpe["sentencepiece_model"] = self._resolve(self.args.data, bpe["sentencepiece_model"])
        return encoders.build_bpe(Namespace(**bpe))

    def encode_text(self, text: str) -> str:
        if self._spm is None:
            self._spm = self.build_bpe()
        return self._spm.encode(text)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        if self.speech_input:
            tsv = os.path.join(self.args.data, f"{split}.tsv")
            self.datasets[split] = SpeechTranslationDataset.from_tsv(
                tsv, self.dictionary, self.encode_text, shuffle=split.startswith("train"),
                silent=getattr(self.args, "replace_audio", None) == "silence",
                ctc_vocabulary=self.ctc_vocabulary,
                transcripts_required=self.transcripts_required)
        else:
            self.datasets[split] = self.load_text_dataset(split)

    # prepare_mustc binarises dev as valid and tst-COMMON as test (fairseq's names)
    TEXT_SPLIT_NAMES = {"dev": "valid", "tst-COMMON": "test"}

    def load_text_dataset(self, split):
        if not self.args.text_data:
            raise InputError("--text-data DIR is required for MT (--ext-mt-training)")
        src, tgt = self.args.src_lang, self.args.tgt_lang
        prefix = os.path.join(self.args.text_data, f"{split}.{src}-{tgt}.{src}")
        if split in self.TEXT_SPLIT_NAMES and not os.path.exists(prefix + ".idx"):
            split = self.TEXT_SPLIT_NAMES[split]
        return load_langpair_dataset(
            self.args.text_data, split, src, self.dictionary, tgt, self.dictionary,
            combine=False, dataset_impl=None, upsample_primary=1,
            left_pad_source=False, left_pad_target=False,
            max_source_positions=self.args.max_text_positions,
            max_target_positions=self.args.max_text_positions,
            shuffle=split.startswith("train"),
        )

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, **kwargs):
        if not self.speech_input:  # the MT stage sizes text batches by the text limits (CRESS)
            max_tokens = self.args.max_tokens_text or max_tokens
            max_sentences = self.args.batch_size_text or max_sentences
        if isinstance(dataset, SpeechTranslationDataset) and not dataset.shuffle:
            # dev/test: fairseq's default multiple of 8 silently left rows out of
            # generation (8 of 12 decoded, and none of fewer than 8)
            kwargs["required_batch_size_multiple"] = 1
        if self.speech_input and max_tokens and isinstance(dataset, SpeechTranslationDataset):
            # fairseq would assert "Sentences lengths should not exceed max_tokens"
            # without saying which one
            too_long = np.flatnonzero(dataset.sizes > max_tokens)
            if len(too_long):
                i = int(too_long[0])
                raise InputError(
                    f"{dataset.where(dataset.rows[i])}: {dataset.sizes[i]} samples, more than "
                    f"--max-tokens {max_tokens} (a batch must hold one utterance; "
                    f"{len(too_long)} utterance(s) too long): raise --max-tokens")
        return super().get_batch_iterator(dataset, max_tokens=max_tokens,
                                          max_sentences=max_sentences, **kwargs)

    # --st-training --ext-mt-training: one text batch joins each speech batch
    def _mt_epoch_iterator(self):
        """Next epoch of MT batches for this worker. Each worker reads its own
        shard; when the text has fewer batches than workers, workers share
        batches rather than one of them waiting forever for a batch that its
        (empty) shard never yields while the others block in all-reduce."""
        shards, shard = 1, 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shards = distributed_utils.get_data_parallel_world_size()
            shard = distributed_utils.get_data_parallel_rank()

        def iterator(num_shards, shard_id):
            return self.get_batch_iterator(
                self._mt_train, max_tokens=self.args.max_tokens_text or 4096,
                max_sentences=self.args.batch_size_text,
                max_positions=(self.args.max_text_positions, self.args.max_text_positions),
                ignore_invalid_inputs=True, seed=self.args.seed + self._mt_epoch,
                num_shards=num_shards, shard_id=shard_id,
                epoch=self._mt_epoch, disable_iterator_cache=True,
            )

        if shards > 1:
            num_batches = len(iterator(1, 0))
            if num_batches < shards:
                logger.warning("MT data has %d batch(es) for %d workers: workers share them",
                               num_batches, shards)
                shards, shard = max(num_batches, 1), shard % max(num_batches, 1)
        return iterator(shards, shard).next_epoch_itr(shuffle=True)

    def _next_mt_batch(self, model):
        if self._mt_train is None:
            self._mt_train = self.load_text_dataset("train")
        empty_epochs = 0
        found = self._mt_batches is not None  # mid-epoch: it has yielded batches
        while True:
            if self._mt_batches is None:
                self._mt_epoch += 1
                self._mt_batches = self._mt_epoch_iterator()
                found = False
            batch = next(self._mt_batches, None)
            if batch is None:
                self._mt_batches = None
                empty_epochs += 0 if found else 1
                if empty_epochs >= 2:
                    raise InputError(f"{self.args.text_data}: MT train split yields no batch "
                                     "(all pairs longer than --max-text-positions?)")
                continue
            if batch:
                found = True
                device = next(model.parameters()).device
                return utils.move_to_cuda(batch, device) if device.type == "cuda" else batch

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.extra_mt_batches:  # the criterion adds its loss (EXTRA_TEXT)
            sample = dict(sample, **{EXTRA_TEXT: self._next_mt_batch(model)})
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    # validation BLEU (--eval-bleu): sacreBLEU statistics per batch, summed
    # over batches and workers, scored once: the same number as
    # ``fairseq-generate --scoring sacrebleu`` on the split
    def valid_step(self, sample, model, criterion):
        loss, sample_size, logs = super().valid_step(sample, model, criterion)
        if self._bleu is not None:
            stats = self._bleu_statistics(sample, model)
            logs["_bleu_sys_len"], logs["_bleu_ref_len"] = stats.sys_len, stats.ref_len
            for i in range(BLEU_ORDER):
                logs[f"_bleu_counts_{i}"] = stats.counts[i]
                logs[f"_bleu_totals_{i}"] = stats.totals[i]
        return loss, sample_size, logs

    def detokenize(self, tokens, bpe, detok, escape_unk=False):
        """Token ids -> plain text, as fairseq-generate writes its D- and T- lines."""
        text = self.dictionary.string(tokens.int().cpu(), self.args.eval_bleu_remove_bpe,
                                      escape_unk=escape_unk)
        if bpe is not None:
            text = bpe.decode(text)
        return detok.decode(text) if detok is not None else text

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        # fairseq-generate scores each sentence of this batch next, in this
        # order: the scorer takes the references as written from here
        WRITTEN_REFERENCES.add_batch(sample.get("target_text"))
        return super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                      constraints=constraints)

    def _bleu_statistics(self, sample, model):
        import sacrebleu

        generator, bpe, detok = self._bleu
        hypos = self.inference_step(generator, [model], sample)
        hyps = [self.detokenize(h[0]["tokens"], bpe, detok) for h in hypos]
        # the manifest's text where the batch has it (speech batches); a text
        # batch keeps only tokens, whose unknown characters read as <unk>
        refs = sample.get("target_text") or [
            self.detokenize(utils.strip_pad(t, self.dictionary.pad()), bpe, detok,
                            escape_unk=True)  # an <unk> in the reference never matches
            for t in sample["target"]]
        if self.args.eval_bleu_print_samples and hyps:
            logger.info("example hypothesis: %s", hyps[0])
            logger.info("example reference: %s", refs[0])
        tokenize = "none" if self.args.eval_tokenized_bleu else "13a"
        return sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if self._bleu is None:
            return

        def total(key):
            return sum(_number(log.get(key, 0)) for log in logging_outputs)

        if not any("_bleu_sys_len" in log for log in logging_outputs):
            return  # not a validation pass (training steps carry no BLEU statistics)
        # a pass whose hypotheses are all empty has no n-grams but is still a
        # validation pass: it logs BLEU 0, so --best-checkpoint-metric bleu finds it
        # plain numbers, one meter each: fairseq keeps validation meters in the
        # checkpoint, and numpy arrays there fail torch's weights-only loader
        for key in BLEU_STATISTICS:
            metrics.log_scalar(key, total(key))
        metrics.log_derived("bleu", _derived_bleu)


BLEU_ORDER = 4
BLEU_STATISTICS = ([f"_bleu_counts_{i}" for i in range(BLEU_ORDER)]
                   + [f"_bleu_totals_{i}" for i in range(BLEU_ORDER)]
                   + ["_bleu_sys_len", "_bleu_ref_len"])


def _number(value) -> int:
    return int(value.item() if torch.is_tensor(value) else value)


def _derived_bleu(meters):
    from sacrebleu.metrics import BLEU

    def stat(key):
        return int(meters[key].sum)

    if stat("_bleu_totals_0") == 0:
        return 0.0  # no hypothesis n-grams: nothing matched
    score = BLEU.compute_bleu(
        correct=[stat(f"_bleu_counts_{i}") for i in range(BLEU_ORDER)],
        total=[stat(f"_bleu_totals_{i}") for i in range(BLEU_ORDER)],
        sys_len=stat("_bleu_sys_len"), ref_len=stat("_bleu_ref_len"), smooth_method="exp")
    return round(score.score, 2)


def _json_arg(value, flag):
    try:
        parsed = json.loads(value or "{}")
    except json.JSONDecodeError as e:
        raise InputError(f"{flag}: not valid JSON ({e}): {value!r}") from e
    if not isinstance(parsed, dict):
        raise InputError(f"{flag}: expected a JSON object such as '{{\"beam\": 8}}', got {value!r}")
    return parsed


def check_half_precision(args):
    """fairseq's --fp16 moves the model to CUDA ("Torch not compiled with CUDA
    enabled" on a CPU-only torch); its --bf16 sets --tpu, and a TPU run without
    torch_xla ends in an ``xla_device`` of None: one line before anything is
    built."""
    if getattr(args, "tpu", False):
        try:
            import torch_xla  # noqa: F401
        except ImportError:
            flag = "--bf16" if getattr(args, "bf16", False) else "--tpu"
            raise InputError(f"{flag}: fairseq runs it on a TPU (--bf16 sets --tpu) and "
                             "torch_xla is not installed here; on a CUDA GPU use --fp16, on "
                             "the CPU neither") from None
        return
    if not getattr(args, "fp16", False):
        return
    if getattr(args, "cpu", False):
        raise InputError("--fp16 with --cpu: fairseq's half precision runs on a CUDA GPU; on "
                         "the CPU train without --fp16")
    if not torch.cuda.is_available():
        raise InputError("--fp16: torch sees no CUDA GPU on this machine; fairseq's half "
                         "precision needs one (train without --fp16 on the CPU)")


def check_model_overrides_text(args) -> dict:
    """The --model-overrides dict, or a one-line InputError: fairseq-generate
    reads it with ``ast.literal_eval`` after the task is set up and ends in a
    SyntaxError traceback on anything that is not a Python literal, and sets a
    key the model does not read (a misspelling, the flag's dashes) without a word."""
    text = getattr(args, "model_overrides", None)
    if not isinstance(text, str):
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InputError(f"--model-overrides {shorten(text)!r}: not a Python dict literal "
                         "such as \"{'pruning_rate': 0.8}\"")
    known = overridable_names()
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key).replace("-", "_"), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"--model-overrides key {key!r}: not an argument of this model or "
                             f"task{hint}; keys are argument names with underscores, e.g. "
                             "'pruning_rate'")
    return value


def overridable_names() -> set:
    """The argument names a --model-overrides key may name: the ST model's and
    this task's (fairseq sets any key without a word)."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    parser = ArgumentParser(add_help=False)
    ARCH_MODEL_REGISTRY["hubert_transformer_pruning_layer"].add_args(parser)
    SpeechAndTextTranslationTask.add_args(parser)
    return {action.dest for action in parser._actions}


def check_rate_override(overrides: dict, args) -> None:
    """A keep rate given to a checkpoint whose rate follows a schedule sets
    nothing: the schedule's max and min rates decide (the sweep overrides all
    three)."""
    check_rate_beside_schedule(overrides, vars(args), where="--model-overrides ",
                               whose="this checkpoint's")


def check_ddp_backend(args):
    """fairseq's default pytorch_ddp fails at the first update that leaves a
    parameter without gradient, and this model always has some: an MT batch
    never reaches HuBERT or the subsampler, HuBERT's mask embedding is unused
    without masking, layerdrop skips layers. Say so before training starts."""
    world = getattr(args, "distributed_world_size", 1) or 1
    backend = getattr(args, "ddp_backend", "legacy_ddp")
    if world > 1 and backend in ("pytorch_ddp", "c10d") and not getattr(
            args, "find_unused_parameters", False):
        raise InputError(
            f"--ddp-backend {backend} on {world} workers fails on this model's unused "
            "parameters (MT batches skip HuBERT, layerdrop skips layers): pass "
            "--ddp-backend legacy_ddp (as the paper does) or --find-unused-parameters")
