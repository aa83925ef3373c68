"""Learning curves from a fairseq training log, and what the study reads off them.

fairseq logs each validation of each subset on one line: with ``--log-format
simple`` (and tqdm or none) ``... | valid on 'SUBSET' subset | loss 5.1 | ... |
bleu 23.4 | ... | num_updates 300 | ...``; with ``--log-format json``
``{"epoch": 3, "SUBSET_loss": ..., "SUBSET_bleu": 23.4, "SUBSET_num_updates": 300, ...}``.
scripts/study.sh keeps each run's log (``train.log``) and adds a line
``[study] training took N s`` per training session.
"""
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

Curve = List[Tuple[int, float]]  # (updates, BLEU), by updates

_SIMPLE = re.compile(r"valid on '([^']+)' subset \| (.*)$")
_TRAINING_TIME = re.compile(r"^\[study\] training took (\d+) s$", re.M)


def _simple_fields(line: str) -> Optional[Tuple[str, Dict[str, str]]]:
    found = _SIMPLE.search(line)
    if found is None:
        return None
    fields = {}
    for part in found.group(2).split(" | "):
        key, _, value = part.strip().partition(" ")
        fields[key] = value
    return found.group(1), fields


def _json_fields(line: str) -> Optional[Tuple[str, Dict[str, str]]]:
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    subsets = [k[:-len("_num_updates")] for k in record if k.endswith("_num_updates")]
    if len(subsets) != 1 or subsets[0] == "train":
        return None  # a training line, or none of fairseq's
    prefix = subsets[0] + "_"
    return subsets[0], {k[len(prefix):]: str(v) for k, v in record.items() if k.startswith(prefix)}


def validation_curves(log_text: str, metric: str = "bleu") -> Dict[str, Curve]:
    """{subset: [(updates, metric), ...]} of every validation the log holds, by
    updates; a validation logged twice at the same update (a resumed run) counts once,
    the later line."""
    points: Dict[str, Dict[int, float]] = {}
    for line in log_text.splitlines():
        parsed = _simple_fields(line) or _json_fields(line)
        if parsed is None:
            continue
        subset, fields = parsed
        try:
            updates, value = int(float(fields["num_updates"])), float(fields[metric])
        except (KeyError, ValueError):
            continue
        points.setdefault(subset, {})[updates] = value
    return {subset: sorted(by_update.items()) for subset, by_update in points.items()}


def training_seconds(log_text: str) -> int:
    """Wall time of the run's training sessions, as scripts/study.sh logged them."""
    return sum(int(s) for s in _TRAINING_TIME.findall(log_text))


def best_update(selection: Curve) -> int:
    """The update of fairseq's checkpoint_best.pt: the last validation at the
    curve's maximum (fairseq overwrites the best on a tie)."""
    if not selection:
        raise ValueError("no validation in the log")
    top = max(value for _, value in selection)
    return [updates for updates, value in selection if value == top][-1]


def value_at(curve: Curve, updates: int) -> float:
    for at, value in curve:
        if at == updates:
            return value
    raise ValueError(f"no validation at update {updates}")


def updates_to_reach(curve: Curve, level: float) -> Optional[int]:
    """The first validated update whose value is at least ``level``."""
    return next((updates for updates, value in curve if value >= level), None)


def read_off(log_text: str, selection_subset: str, curve_subset: str,
             share: float = 0.95) -> Dict:
    """What the study reports of one run: its updates, the update fairseq selected
    by ``selection_subset`` (dev), the ``curve_subset`` (tst-COMMON) value there
    (the plateau) and the first update reaching ``share`` of it, and its curve."""
    curves = validation_curves(log_text)
    for subset in (selection_subset, curve_subset):
        if subset not in curves:
            raise ValueError(f"no validation of {subset} in the log (the study's "
                             f"--valid-subset {selection_subset},{curve_subset})")
    selected = best_update(curves[selection_subset])
    plateau = value_at(curves[curve_subset], selected)
    return {"updates": max(u for u, _ in curves[curve_subset]), "best_update": selected,
            "curve_plateau": plateau,
            "updates_to_plateau_share": updates_to_reach(curves[curve_subset], share * plateau),
            "curve": curves[curve_subset], "training_seconds": training_seconds(log_text)}


def plot_curves(curves: Sequence[Tuple[str, int, Curve, int]], subset: str, path: str) -> None:
    """One line per (mode, seed, curve, selected update): a colour per mode, a
    line style per seed, a marker at the selected checkpoint."""
    from .plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours, styles = {}, {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for mode, seed, curve, selected in curves:
        colour = colours.setdefault(mode, cycle[len(colours) % len(cycle)])
        style = styles.setdefault(seed, ("-", "--", ":", "-.")[len(styles) % 4])
        xs, ys = [u for u, _ in curve], [v for _, v in curve]
        ax.plot(xs, ys, color=colour, linestyle=style, linewidth=1.2,
                label=f"{mode} seed {seed}")
        ax.plot([selected], [value_at(curve, selected)], "o", color=colour, markersize=4)
    ax.set_title("dot: the checkpoint the best dev BLEU selects", fontsize=9)
    save_labelled(fig, ax, "training updates (of the run itself)", f"{subset} BLEU at validation",
                  path)
