"""The deprecation warnings fairseq's own calls cause (hydra 1.0's compose API,
torch's weight_norm and cuda.amp.autocast), the DataLoader's pin_memory notice
on a machine without an accelerator and fairseq's tensorboardX notice are
silenced by importing the plugin; a warning of anyone else still shows, and
-W / PYTHONWARNINGS bring them all back."""
import os
import subprocess
import sys

# what fairseq-train does on the CPU, in the order it does it
PROBE = r'''
import sys, warnings
if "plugin" in sys.argv:
    import npy_tome_layer
import torch
from torch.utils.data import DataLoader
list(DataLoader([1, 2], pin_memory=True))
torch.nn.utils.weight_norm(torch.nn.Linear(2, 2))
with torch.cuda.amp.autocast(enabled=False):
    pass
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
args = options.parse_args_and_arch(options.get_training_parser(),
                                   ["data", "--arch", "transformer", "--task", "translation"])
convert_namespace_to_omegaconf(args)
warnings.warn("a warning of the caller's own")
'''


def probe(*flags, **env):
    proc = subprocess.run([sys.executable, "-c", PROBE, *flags], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_importing_the_plugin_silences_what_fairseq_causes():
    # also in a process started after fairseq's DataLoader workers set PYTHONWARNINGS
    for out in (probe("plugin", PYTHONWARNINGS=""),
                probe("plugin", PYTHONWARNINGS="ignore:semaphore_tracker:UserWarning")):
        lines = [line for line in out.splitlines() if line.strip()]
        # the caller's warning (a program given with -c shows no source line), nothing else
        assert len(lines) == 1 and \
            lines[0].endswith("UserWarning: a warning of the caller's own"), out


def test_without_the_plugin_or_with_warnings_asked_for_they_show():
    for out in (probe(PYTHONWARNINGS=""), probe("plugin", PYTHONWARNINGS="default")):
        for message in ("'pin_memory' argument is set as true", "weight_norm` is deprecated",
                        "hydra.experimental.compose() is no longer experimental"):
            assert message in out, (message, out[-2000:])
    assert "Please install tensorboardX" in probe(PYTHONWARNINGS="")
