"""What every benchmark mode measures with: FLOP counts, peak memory, the
share of time under the reductions' profiler labels, the inputs and the
precision, fairseq's own dense model, the machine.

Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU the growth of
the process's peak resident set (VmHWM, reset through /proc/self/clear_refs
after glibc's malloc_trim) during the pass - the CPU allocator keeps no count.
"""
import contextlib
import ctypes
import os
import platform
from typing import Dict, Optional

import torch
from torch.autograd import DeviceType
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from fairseq.models.hubert.hubert import HubertModel
from omegaconf import OmegaConf

from ...encoder.config import hubert_config
from ...encoder.pruned_hubert import PrunedHubertModel
from ...evaluation.reference import share_weights
from ...evaluation.timing import timed_pass
from ...io.audio import SAMPLE_RATE
from ...reduction import PROFILE_LABELS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


# torch counts the CUDA attention kernels but not the CPU one that fairseq's
# fast path reaches through scaled_dot_product_attention: without this the
# dense model's attention would count as free and the ideal speedup would shrink
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                  _cpu_flash_attention_flops}


def count_flops(model: PrunedHubertModel, audio: torch.Tensor) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False,
                                                 custom_mapping=_CPU_ATTENTION) as counter:
        model.extract_features(audio, padding_mask=None, mask=False)
    return int(counter.get_total_flops())


class PeakMemory:
    """Peak memory of the block, in bytes above what was held before it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.bytes = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        elif self.start is not None:
            self.bytes = max(0, _status_kib("VmHWM") * 1024 - self.start)
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> Optional[int]:
    """Return freed heap to the OS, reset VmHWM to the current RSS; the RSS in bytes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return None  # not Linux/glibc: no CPU peak memory


def labelled_share(run, cuda: bool) -> float:
    """Share of ``run()``'s time under the reductions' profiler labels."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        total = run()
    field = "device_time_total" if cuda else "cpu_time_total"
    spent_us = sum(getattr(e, field) for e in prof.key_averages()
                   if e.key in PROFILE_LABELS and e.device_type == DeviceType.CPU)
    return spent_us / 1e6 / total


def reduction_share(model, audio) -> float:
    """Share of one pass spent under the reductions' profiler labels (scoring
    inside attention, top-k / matching / conv, gathering), from a profiled
    pass of its own (profiling slows every op alike, roughly)."""
    return labelled_share(lambda: timed_pass(model, audio), audio.is_cuda)


def fairseq_dense(reference: PrunedHubertModel, cfg: Dict) -> HubertModel:
    """fairseq's own HubertModel on the reference's weights (shared, no copy)."""
    model = HubertModel(hubert_config(cfg), OmegaConf.create({"sample_rate": SAMPLE_RATE}), [None])
    model.remove_pretraining_modules()
    return share_weights(model, reference)


def random_audio(duration: float, batch: int, device, dtype=torch.float32) -> torch.Tensor:
    """batch x samples of quiet noise, the same on every call (speed does not
    depend on the content; which frames a reduction keeps does, a little)."""
    g = torch.Generator().manual_seed(0)
    num_samples = int(duration * SAMPLE_RATE)
    return (0.1 * torch.randn(batch, num_samples, generator=g)).to(device=device, dtype=dtype)


def autocast(device, precision: str):
    """fp16 / bf16 as fairseq's --amp runs them: fp32 weights, matmuls in half
    precision under autocast; the reductions' scores stay fp32 (the model
    turns autocast off around them). fp32: no autocast."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[precision])


def machine_description(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def _mib(b):
    return "n/a" if b is None else f"{b / 2 ** 20:.0f}"
