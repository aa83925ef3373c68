"""Task ``speech_and_text_translation``: ST on S2T manifests, MT on fairseq-
preprocess data, or both at once (multitask: each update adds an MT batch
to the ST batch)."""
import logging
import os
from argparse import Namespace

import torch
import yaml
from fairseq import utils
from fairseq.data import Dictionary, encoders
from fairseq.distributed import utils as distributed_utils
from fairseq.tasks import FairseqTask, register_task
from fairseq.tasks.translation import load_langpair_dataset

from ..data.speech_translation_dataset import SpeechTranslationDataset

logger = logging.getLogger(__name__)


@register_task("speech_and_text_translation")
class SpeechAndTextTranslationTask(FairseqTask):
    @staticmethod
    def add_args(parser):
        parser.add_argument("data", help="directory with {split}.tsv and config.yaml")
        parser.add_argument("--config-yaml", default="config.yaml",
                            help="names the sentencepiece model and dictionary")
        parser.add_argument("--text-data", default=None, metavar="DIR",
                            help="fairseq-preprocess MT data (train.en-XX.en.bin ...)")
        parser.add_argument("--src-lang", default="en")
        parser.add_argument("--tgt-lang", default="de")
        parser.add_argument("--st-training", action="store_true",
                            help="train on speech (the manifests in DATA)")
        parser.add_argument("--mt-finetune", action="store_true",
                            help="train on text; with --st-training, add an MT batch per update")
        parser.add_argument("--max-tokens-text", type=int, default=4096,
                            help="max text tokens per MT batch")
        # not --max-source-positions: the models own that name (text positions)
        parser.add_argument("--max-audio-samples", type=int, default=480000,
                            help="longest utterance in samples (30 s at 16 kHz)")
        parser.add_argument("--max-text-positions", type=int, default=512,
                            help="longest source/target text in tokens")

    def __init__(self, args, dictionary, data_cfg):
        super().__init__(args)
        self.args = args  # legacy argparse task: cfg is this Namespace
        self.dictionary = dictionary
        self.data_cfg = data_cfg
        self._spm = None
        self._mt_train = None
        self._mt_batches = None
        self._mt_epoch = 0

    @classmethod
    def setup_task(cls, args, **kwargs):
        cfg_path = os.path.join(args.data, args.config_yaml)
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{cfg_path}: data config not found")
        with open(cfg_path) as f:
            data_cfg = yaml.safe_load(f) or {}
        for key in ("vocab_filename", "bpe_tokenizer"):
            if key not in data_cfg:
                raise ValueError(f"{cfg_path}: missing '{key}'")
        dict_path = cls._resolve(args.data, data_cfg["vocab_filename"])
        if not os.path.isfile(dict_path):
            raise FileNotFoundError(f"{cfg_path}: vocab_filename {dict_path} not found")
        dictionary = Dictionary.load(dict_path)
        logger.info("dictionary: %d types", len(dictionary))
        return cls(args, dictionary, data_cfg)

    @staticmethod
    def _resolve(base, path):
        return path if os.path.isabs(path) else os.path.join(base, path)

    @property
    def speech_input(self) -> bool:
        """Speech batches unless this is text-only MT fine-tuning."""
        return self.args.st_training or not self.args.mt_finetune

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
        return super().build_model(args, from_checkpoint)

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
                tsv, self.dictionary, self.encode_text, shuffle=split.startswith("train"))
        else:
            self.datasets[split] = self.load_text_dataset(split)

    def load_text_dataset(self, split):
        if not self.args.text_data:
            raise ValueError("--text-data DIR is required for MT (--mt-finetune)")
        src, tgt = self.args.src_lang, self.args.tgt_lang
        return load_langpair_dataset(
            self.args.text_data, split, src, self.dictionary, tgt, self.dictionary,
            combine=False, dataset_impl=None, upsample_primary=1,
            left_pad_source=False, left_pad_target=False,
            max_source_positions=self.args.max_text_positions,
            max_target_positions=self.args.max_text_positions,
            shuffle=split.startswith("train"),
        )

    # multitask: one MT batch joins each ST update
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
                self._mt_train, max_tokens=self.args.max_tokens_text,
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
                    raise ValueError(f"{self.args.text_data}: MT train split yields no batch "
                                     "(all pairs longer than --max-text-positions?)")
                continue
            if batch:
                found = True
                device = next(model.parameters()).device
                return utils.move_to_cuda(batch, device) if device.type == "cuda" else batch

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        loss, sample_size, logs = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad)
        if self.args.st_training and self.args.mt_finetune:
            mt_loss, mt_size, mt_logs = super().train_step(
                self._next_mt_batch(model), model, criterion, optimizer, update_num, ignore_grad)
            loss = loss + mt_loss
            sample_size += mt_size
            for key, value in mt_logs.items():
                logs[key] = logs.get(key, 0) + value
        return loss, sample_size, logs
