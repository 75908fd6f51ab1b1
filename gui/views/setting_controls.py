"""Form controls generated from a setting's declaration (:class:`engine.core.setting.Declared`).

:func:`control_for` picks the widget from the field's type and declaration: a combo box for a choice
(``Literal``) or a number with presets, a check box for a bool or a two-value toggle, a spin box for a
number, a text field for a whole number too large for a spin box (the seed). Every control has the
same small interface (:class:`SettingControl`): ``value``, ``set_value``, ``changed``, its label and
its tooltip, which is the command line's help word for word (:func:`engine.core.setting.help_text`).
Its objectName is the field's name in camelCase and its kind (``batchSizeSpin``, ``optimizerPicker``,
``ttaCheck``), unless the declaration keeps an older one.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QRegularExpression, Qt, Signal, Slot
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from engine.core.config import STRATEGY_NAMES
from engine.core.setting import Declared, check_value, describe_value, help_text

#: The largest number a QSpinBox holds; larger ranges get a text field.
SPIN_BOX_MAX = 2**31 - 1


def object_name(item: Declared, kind: str) -> str:
    """``batch_size`` + ``Spin`` → ``batchSizeSpin`` (or the declaration's own)."""
    if item.setting.object_name:
        return item.setting.object_name
    first, *rest = item.name.split("_")
    return first + "".join(part.capitalize() for part in rest) + kind


class SettingControl(QObject):
    """One declared setting's widget: ``value()``, ``set_value(v)``, and ``changed`` on every edit."""

    changed = Signal()

    def __init__(self, item: Declared, widget: QWidget, kind: str) -> None:
        super().__init__(widget)
        self.item = item
        self.widget = widget
        widget.setObjectName(object_name(item, kind))
        widget.setAccessibleName(item.setting.label)
        widget.setToolTip(help_text(item, STRATEGY_NAMES))

    @property
    def label(self) -> str:
        """The form row's label (empty for a check box, whose own text says it)."""
        return ""

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def problem(self) -> str | None:
        """Why the value shown cannot be used (one line naming the setting), or None."""
        try:
            return check_value(self.item, self.value())
        except ValueError as exc:
            return f"{self.item.setting.label.lower()}: {exc}"

    def set_applicable(self, strategy: str) -> None:
        """Greyed out for a strategy it does not apply to (its help says which it is for)."""
        self.widget.setEnabled(self.item.applies_to(strategy))

    @Slot()
    def _emit_changed(self) -> None:
        self.changed.emit()


class _Labelled(SettingControl):
    @property
    def label(self) -> str:
        return self.item.setting.label


class ChoiceControl(_Labelled):
    """A combo box of the declared choices (in words), each with its explanation as a tooltip."""

    def __init__(self, item: Declared) -> None:
        box = QComboBox()
        super().__init__(item, box, "Picker")
        self.box = box
        for value in item.choices:
            self.box.addItem(str(item.setting.choices.get(value, value)), value)
            explanation = item.setting.explanations.get(value)
            if explanation:
                self.box.setItemData(self.box.count() - 1, explanation, Qt.ItemDataRole.ToolTipRole)
        self.box.currentIndexChanged.connect(self._emit_changed)

    def value(self) -> Any:
        return self.box.currentData()

    def set_value(self, value: Any) -> None:
        self.box.setCurrentIndex(max(0, self.box.findData(value)))


class PresetControl(_Labelled):
    """A number chosen from a list: the special values (``automatic``) and the presets; a value from
    elsewhere (the command line, an older run) is added to the list as it is."""

    def __init__(self, item: Declared) -> None:
        box = QComboBox()
        super().__init__(item, box, "Picker")
        self.box = box
        for value, text in item.setting.special.items():
            self.box.addItem(text, value)
        for value in item.setting.presets:
            self.box.addItem(describe_value(item, value), value)
        self.box.currentIndexChanged.connect(self._emit_changed)

    def value(self) -> Any:
        return self.box.currentData()

    def set_value(self, value: Any) -> None:
        index = self.box.findData(value)
        if index < 0:
            self.box.addItem(describe_value(self.item, value), value)
            index = self.box.count() - 1
        self.box.setCurrentIndex(index)


class ToggleControl(SettingControl):
    """A check box: a bool, or a two-value choice (``toggle``: off, on)."""

    def __init__(self, item: Declared) -> None:
        check = QCheckBox(item.setting.check_text or item.setting.label)
        super().__init__(item, check, "Check")
        self.check = check
        self.check.toggled.connect(self._emit_changed)

    def value(self) -> Any:
        toggle = self.item.setting.toggle
        checked = self.check.isChecked()
        return checked if toggle is None else toggle[int(checked)]

    def set_value(self, value: Any) -> None:
        toggle = self.item.setting.toggle
        self.check.setChecked(bool(value) if toggle is None else value == toggle[1])


class IntControl(_Labelled):
    """A spin box; a special value below the range (``0: off``) is its first step, shown in words."""

    def __init__(self, item: Declared) -> None:
        spin = QSpinBox()
        super().__init__(item, spin, "Spin")
        self.spin = spin
        low, high = item.setting.bounds()
        specials = sorted(item.setting.special)
        lowest = min([low if low is not None else 0, *specials])
        self.spin.setRange(int(lowest), int(min(high if high is not None else SPIN_BOX_MAX, SPIN_BOX_MAX)))
        if specials and specials[0] == lowest:
            self.spin.setSpecialValueText(item.setting.special[specials[0]])
        if item.setting.unit:
            self.spin.setSuffix(f" {item.setting.unit}")
        self.spin.valueChanged.connect(self._emit_changed)

    def value(self) -> Any:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(int(value))


class FloatControl(_Labelled):
    """A spin box with the declared digits; learning rates step by their leading digit."""

    def __init__(self, item: Declared) -> None:
        spin = QDoubleSpinBox()
        super().__init__(item, spin, "Spin")
        self.spin = spin
        s = item.setting
        self.spin.setDecimals(s.decimals)
        low, high = s.bounds()
        smallest = 10.0**-s.decimals
        low = 0.0 if low is None else low
        self.spin.setRange(low + smallest if s.above_minimum else low, high if high is not None else 1e9)
        if s.log_scale:
            self.spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        else:
            self.spin.setSingleStep(smallest * 10 if s.decimals > 1 else 1.0)
        if s.unit:
            self.spin.setSuffix(f" {s.unit}")
        self.spin.valueChanged.connect(self._emit_changed)

    def value(self) -> Any:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(float(value))


class BigIntControl(_Labelled):
    """A text field of digits, for a whole number past a spin box's reach (a 64-bit seed)."""

    def __init__(self, item: Declared) -> None:
        edit = QLineEdit()
        super().__init__(item, edit, "Edit")
        self.edit = edit
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"[0-9]{1,19}")))
        self.edit.textChanged.connect(self._emit_changed)

    def value(self) -> Any:
        text = self.edit.text().strip()
        if not text:
            raise ValueError("a whole number is needed")
        return int(text)

    def set_value(self, value: Any) -> None:
        self.edit.setText(str(int(value)))


def control_for(item: Declared) -> SettingControl:
    """The control that suits ``item``'s type and declaration."""
    s = item.setting
    if item.kind is bool or s.toggle is not None:
        return ToggleControl(item)
    if item.choices:
        return ChoiceControl(item)
    if item.kind is int and s.presets:
        return PresetControl(item)
    if item.kind is int:
        high = s.bounds()[1]
        return BigIntControl(item) if high is not None and high > SPIN_BOX_MAX else IntControl(item)
    if item.kind is float:
        return FloatControl(item)
    raise TypeError(f"no form control for the setting {item.name!r} ({item.kind.__name__})")
