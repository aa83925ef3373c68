from .frame_pruning import (  # noqa: F401
    gather_frames,
    keep_counts,
    prune_frames,
    received_attention,
    select_frames,
)
from .keep_rate import KeepRateSchedule  # noqa: F401
