"""One declaration per setting: what a config field means, its range and how people see it.

A field of a settings dataclass (:class:`engine.core.config.TrainConfig`) is declared with
:func:`setting`, which stores a :class:`Setting` in the field's metadata. Everything that shows or reads
that field is generated from it: the command line's options and their help (``engine.cli``), the Train
form's controls, labels, tooltips and saved state (``gui``), the checks of :func:`check_value` (which
also guard a ``config.json`` or a bundle read from disk), and the words a table uses for a value
(:func:`describe_value`). Adding a setting is one field.

Choices are ``Literal`` types, so mypy checks every comparison against them. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: Where a setting sits in the Train form: the model and strategy boxes, the visible "Training" group,
#: or the collapsible "Advanced" group.
Group = Literal["model", "strategy", "training", "advanced"]

Bound = float | Callable[[], float]


@dataclass(frozen=True)
class Setting:
    """What one config field means and allows; see the module docstring for who reads it."""

    label: str
    """A few words: the form's label, a table's row title, and the name in error messages."""
    help: str
    """One or two sentences: the command line's ``--help`` and the form's tooltip, word for word."""
    check_text: str = ""
    """For a check box (a bool or a :attr:`toggle`): its text, when the label is too short to say it."""
    group: Group = "training"
    minimum: Bound | None = None
    """The smallest number allowed (numbers only); values in :attr:`special` are allowed besides."""
    maximum: Bound | None = None
    """The largest number allowed; a callable is asked each time (a bound that depends on the machine)."""
    above_minimum: bool = False
    """The minimum itself is not allowed (a learning rate is greater than 0)."""
    unit: str = ""
    """Shown after a number: ``px``, ``MB``, ``epochs``."""
    choices: Mapping[Any, str] = field(default_factory=dict)
    """For a ``Literal`` field: each value's words (``"adamw": "AdamW"``); its order is the form's."""
    explanations: Mapping[Any, str] = field(default_factory=dict)
    """For a ``Literal`` field: one sentence per value (tooltips of the form's choices)."""
    special: Mapping[Any, str] = field(default_factory=dict)
    """Numbers with a meaning of their own, outside the range: ``{0: "off"}``, ``{-1: "automatic"}``."""
    words: Mapping[str, Any] = field(default_factory=dict)
    """Words the command line takes for a value: ``{"auto": -1, "model": 0}``."""
    presets: tuple[Any, ...] = ()
    """For a number: the values the form offers in a list (besides :attr:`special`)."""
    toggle: tuple[Any, Any] | None = None
    """For a two-value ``Literal``: (off, on), shown as a check box."""
    strategies: tuple[str, ...] = ()
    """The strategies it applies to (empty: all); elsewhere the form greys it out."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Each strategy's default, where it differs from the field's own default."""
    aliases: tuple[str, ...] = ()
    """Earlier command-line spellings that still work (``--early-stopping``)."""
    decimals: int = 3
    """For a float: the digits the form shows."""
    log_scale: bool = False
    """For a float: the form steps it by its leading digit (learning rates)."""
    object_name: str = ""
    """The form control's Qt objectName, where it predates the rule (the field's name in camelCase and
    the control's kind: ``batchSizeSpin``); tests and automation find controls by it."""
    saved_key: str = ""
    """The key the window saves it under, where it predates the rule (``train/`` and the field's name),
    so that what users saved before still reads back."""

    def bounds(self) -> tuple[float | None, float | None]:
        """(minimum, maximum), with the callables asked now."""
        return _bound(self.minimum), _bound(self.maximum)


def _bound(value: Bound | None) -> float | None:
    return value() if callable(value) else value


def setting(default: Any, **metadata: Any) -> Any:
    """A dataclass field with ``default`` and the :class:`Setting` built from ``metadata``."""
    return field(default=default, metadata={"setting": Setting(**metadata)})


@dataclass(frozen=True)
class Declared:
    """One declared field: its name, its type (``int``, ``float``, ``bool``, ``str`` or a ``Literal``),
    its default and its :class:`Setting`."""

    name: str
    kind: type[Any]
    choices: tuple[Any, ...]  # the Literal's values; empty for other types
    default: Any
    setting: Setting

    @property
    def option(self) -> str:
        """The command-line option: ``--early-stopping-patience``."""
        return "--" + self.name.replace("_", "-")

    def default_for(self, strategy: str) -> Any:
        return self.setting.defaults.get(strategy, self.default)

    def applies_to(self, strategy: str) -> bool:
        return not self.setting.strategies or strategy in self.setting.strategies


def declared(cls: type[Any]) -> tuple[Declared, ...]:
    """Every field of the dataclass ``cls`` declared with :func:`setting`, in declaration order."""
    found = _DECLARED.get(cls)
    if found is None:
        found = _DECLARED[cls] = tuple(_declared(cls))
    return found


_DECLARED: dict[type[Any], tuple[Declared, ...]] = {}


def _declared(cls: type[Any]) -> Iterator[Declared]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("setting")
        if meta is None:
            continue
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            kind: type[Any] = type(choices[0])
        else:
            choices = ()
            kind = hint if isinstance(hint, type) else object
        yield Declared(f.name, kind, choices, f.default, meta)


def range_text(item: Declared) -> str:
    """The values allowed, in words: ``from 1 to 10000``, ``0 (off) or from 1 to 1000``, ``one of a, b``."""
    if item.choices:
        return "one of " + ", ".join(str(c) for c in item.choices)
    if item.kind is bool:
        return "true or false"
    low, high = item.setting.bounds()
    parts = [f"{value} ({text})" for value, text in item.setting.special.items()]
    above = item.setting.above_minimum
    if low is not None and high is not None:
        if above:
            parts.append(f"greater than {_number(low)} and at most {_number(high)}")
        else:
            parts.append(f"from {_number(low)} to {_number(high)}")
    elif low is not None:
        parts.append(f"{'greater than' if above else 'at least'} {_number(low)}")
    elif high is not None:
        parts.append(f"at most {_number(high)}")
    return " or ".join(parts) if parts else "any number"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def check_value(item: Declared, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``item`` (one line naming the setting and its range), or None."""
    label = item.setting.label
    if item.choices:
        if value in item.choices and type(value) is item.kind:
            return None
        return f"unknown {label.lower()} {value!r}; choose one of {', '.join(map(str, item.choices))}"
    if item.kind is bool:
        return None if isinstance(value, bool) else f"{label.lower()} must be true or false, not {value!r}"
    if item.kind is str:
        return None if isinstance(value, str) and value else f"{label.lower()} must be a name, not {value!r}"
    number_ok = isinstance(value, int) if item.kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not number_ok:
        what = "a whole number" if item.kind is int else "a number"
        return f"{label.lower()} must be {what} ({range_text(item)}), not {value!r}"
    if value in item.setting.special:
        return None
    low, high = item.setting.bounds()
    above_low = low is None or value > low or (value == low and not item.setting.above_minimum)
    inside = math.isfinite(value) and above_low and (high is None or value <= high)
    return None if inside else f"{label.lower()} must be {range_text(item)}, not {_number(value)}"


def describe_value(item: Declared, value: Any) -> str:
    """A value in words, with its unit: ``on``, ``AdamW``, ``automatic``, ``288 px``, ``0.001``."""
    s = item.setting
    if value is None:
        return "–"
    if item.choices or s.choices:
        return str(s.choices.get(value, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in s.special:
        return s.special[value]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {s.unit}".strip()


def help_text(item: Declared, strategies: Sequence[str]) -> str:
    """The help of the command line and the form's tooltip, word for word: the declared help and the
    default (each of ``strategies``' own, where they differ)."""

    def shown(value: Any) -> str:  # a choice as the command line spells it; a number in words
        return str(value) if item.choices else describe_value(item, value)

    if item.setting.group in ("model", "strategy"):
        return item.setting.help
    defaults = dict(item.setting.defaults)
    if item.setting.strategies:
        defaults = {s: v for s, v in defaults.items() if s in item.setting.strategies}
    if not defaults:
        return f"{item.setting.help} Default: {shown(item.default)}."
    parts = [f"{shown(value)} for {strategy}" for strategy, value in defaults.items()]
    if not item.setting.strategies and len(defaults) < len(strategies):
        parts.append(f"{shown(item.default)} otherwise")
    return f"{item.setting.help} Default: {', '.join(parts)}."


def parse_word(item: Declared, text: str) -> Any:
    """A command-line word as the value it stands for: a named word (``auto``), else a number.

    ValueError (with the range in words) when it is neither.
    """
    lowered = text.strip().lower()
    if lowered in item.setting.words:
        return item.setting.words[lowered]
    try:
        if item.kind is int:
            return int(text)
        return float(text)
    except ValueError:
        names = ", ".join(item.setting.words)
        expected = f"{names} or a number" if names else ("a whole number" if item.kind is int else "a number")
        raise ValueError(f"expected {expected}, not {text!r}") from None
