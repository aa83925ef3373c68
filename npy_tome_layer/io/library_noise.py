"""Warnings and log lines that fairseq's own code causes and a user can do nothing
about, silenced where they arise: fairseq 0.12 calls APIs that hydra 1.3 and
torch 2.x have deprecated, asks the DataLoader to pin memory on machines without
an accelerator, and announces at import that tensorboardX is missing (only its
text-to-speech task uses it; --tensorboard-logdir says by itself when no
tensorboard is installed).

Each filter names one message, so any other warning still shows. Running Python
with -W or PYTHONWARNINGS (e.g. ``PYTHONWARNINGS=default``) keeps all of them.
"""
import logging
import sys
import warnings

# (category, start of the message as a regular expression)
FAIRSEQ_CALLS_DEPRECATED_APIS = [
    # hydra: fairseq composes its config through hydra's 1.0-era API
    (UserWarning, r"\s*hydra\.experimental\.(initialize|compose)\(\) is no longer experimental"),
    (UserWarning, r"\s*The version_base parameter is not specified"),
    (UserWarning, r"\s*The strict flag in the compose API is deprecated"),
    (UserWarning, r"\s*In 'config': Usage of deprecated keyword in package header"),
    (UserWarning, r"\s*'config' is validated against ConfigStore schema with the same name"),
    # torch: fairseq's HuBERT/wav2vec2 positional convolution and its training step
    (FutureWarning, r"`torch\.nn\.utils\.weight_norm` is deprecated"),
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated"),
    (UserWarning, r"Support for mismatched key_padding_mask and attn_mask is deprecated"),
    # fairseq's data iterators always ask for pinned memory; without an accelerator
    # torch ignores the request and says so once per loader
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
]

# loggers whose INFO/DEBUG lines are about fairseq's or hydra's internals
QUIET_LOGGERS = ["fairseq.tasks.text_to_speech", "hydra"]


# what fairseq's data iterators put in PYTHONWARNINGS themselves when they start
# DataLoader workers: every process started after that inherits it, and it is no
# request of the user's
FAIRSEQ_OWN_WARNOPTION = "ignore:semaphore_tracker:UserWarning"


def silence_library_noise() -> None:
    if any(option != FAIRSEQ_OWN_WARNOPTION for option in sys.warnoptions):
        return  # the user asked for warnings explicitly
    for category, message in FAIRSEQ_CALLS_DEPRECATED_APIS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
