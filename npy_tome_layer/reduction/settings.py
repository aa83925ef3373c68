"""A reduction's settings, each declared once.

A ``Setting`` is one value a user may give. Its ``name`` is its one spelling:
the ST model's argument (so it is stored in and read back from every
checkpoint), the Python API's keyword (``load_pruned_hubert(...,
pruning_window=5)``), the key of a ``--model-overrides`` or of a sweep's
overrides, and, with dashes, the fairseq flag (``--pruning-window``). Its
``rule`` checks a Python value and parses a flag's text alike (``values.py``);
``default`` is what it is when not given (and what a checkpoint written before
it existed was trained with); ``help`` is the flag's help text.

``ENCODER_SETTINGS`` are every reduction's: which reduction and from which
layer (here), and the keep rate with its schedule (``keep_rate.py``). A
reduction class lists its own in ``TokenReduction.settings``; one shared by
two reductions is one object listed by both.
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from ..errors import InputError
from ..values import Rule, whole_number_rule


@dataclass(frozen=True)
class Setting:
    name: str
    rule: Optional[Rule]  # None: one of ``choices``
    default: Any
    help: str
    choices: Optional[Callable[[], Tuple[str, ...]]] = None  # read when asked: a registry

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """``value`` as the model uses it, or InputError naming the setting.
        None stands for "not given" where that is the default."""
        if value is None and self.default is None:
            return None
        if self.choices is not None:
            if not isinstance(value, str) or value not in self.choices():
                raise InputError(f"{self.name} must be one of {self.choices()}, got {value!r}")
            return value
        return self.rule.check(self.name, value)

    def add_flag(self, parser) -> None:
        """The fairseq flag. No default here: the architecture fills it in
        (fairseq leaves an unset model flag out of its arguments)."""
        if self.choices is not None:
            parser.add_argument(self.flag, choices=list(self.choices()), help=self.help)
        else:
            parser.add_argument(self.flag, type=self.rule.flag, help=self.help)

    def value_in(self, args):
        """The value an ST model's arguments hold; absent or None (a checkpoint
        written before the setting existed): the default."""
        value = getattr(args, self.name, None)
        return self.default if value is None else value


def registered_names() -> Tuple[str, ...]:
    from .interface import REDUCTIONS  # the registry fills after this module loads
    return tuple(REDUCTIONS)


TOKEN_REDUCTION = Setting(
    "token_reduction", None, "prune", choices=registered_names,
    help="how HuBERT's sequence is shortened after a layer: prune (the method: the frames "
         "that receive the most attention), or another registered reduction")
PRUNING_INIT_LAYER = Setting(
    "pruning_init_layer", whole_number_rule(0), 0,
    "first HuBERT layer (0-based) after which the sequence is shortened")


def settings_help(settings) -> str:
    """A docstring section listing ``settings`` (name, default, help)."""
    lines = ["", "", "    Settings (each also a fairseq flag, dashed):"]
    lines += [f"      {s.name} (default {s.default!r}): {s.help}" for s in settings]
    return "\n".join(lines) + "\n"
