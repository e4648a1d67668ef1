"""Form pieces built from the task schema: one editor per parameter (its value, why it is invalid) and input checks."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from backlot.services.tasks import InputSpec, ParamSpec, SchemaError

# File name patterns offered by the input pickers, per media type (the core sniffs the content at submit).
MEDIA_SUFFIXES: dict[str, tuple[str, ...]] = {
    "image": ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"),
    "audio": ("wav", "mp3", "flac", "ogg", "m4a", "aac", "opus"),
    "video": ("mp4", "mov", "mkv", "webm", "avi"),
}
AUTO = "auto"  # shown where a parameter is left to the backend's own default
_INT_LIMIT = 2_000_000_000  # QSpinBox is 32-bit; no parameter needs more
# Set on a form or dialog: an editor holding an invalid value gets a red frame (its reason is shown in words too).
INVALID_STYLE = '*[invalid="true"] { border: 1px solid #cc3b3b; border-radius: 2px; }'


def mark_invalid(widget: QWidget, reason: str | None, tip: str = "") -> None:
    """Show or clear an invalid value: a red frame (stylesheet ``[invalid="true"]``) and the reason as tooltip."""
    widget.setToolTip(reason or tip)
    if bool(widget.property("invalid")) != bool(reason):
        widget.setProperty("invalid", bool(reason))
        widget.style().unpolish(widget)
        widget.style().polish(widget)


class ParamField(QObject):
    """The editor of one parameter: ``value()`` is None when left to the backend, ``error()`` the reason it is invalid."""

    changed = Signal()

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None, *, suggest: bool = False) -> None:
        super().__init__(parent)
        self.spec = spec
        self._suggest = suggest and spec.type == "str"  # free text with a list to pick from (the workflows)
        self.widget = self._build(parent)
        self.widget.setObjectName(f"param-{spec.name}")
        self.widget.setToolTip(self.describe())

    def describe(self) -> str:
        """Help text with the range and default, for the tooltip."""
        s = self.spec
        bits = [s.help]
        if s.min is not None or s.max is not None:
            bits.append(f"range {_num(s.min) if s.min is not None else '…'} to {_num(s.max) if s.max is not None else '…'}")
        bits.append(f"default {s.default!r}" if s.default is not None else "default: the backend's own")
        return "; ".join(bits)

    def _build(self, parent: QWidget | None) -> QWidget:
        s = self.spec
        if s.type == "int":
            box = QSpinBox(parent)
            lo = int(s.min) if s.min is not None else -_INT_LIMIT
            box.setRange(lo - 1 if s.default is None else lo, int(s.max) if s.max is not None else _INT_LIMIT)
            self._auto_at_minimum(box)
            box.setValue(int(s.default) if s.default is not None else box.minimum())
            box.valueChanged.connect(self.changed)
            return box
        if s.type == "float":
            dbox = QDoubleSpinBox(parent)
            span = (s.max if s.max is not None else 1e9) - (s.min if s.min is not None else 0)
            dbox.setDecimals(2)
            dbox.setSingleStep(0.05 if span <= 2 else 0.5 if span <= 100 else 1.0)
            low = float(s.min) if s.min is not None else -1e9
            dbox.setRange(low - dbox.singleStep() if s.default is None else low, s.max if s.max is not None else 1e9)
            self._auto_at_minimum(dbox)
            dbox.setValue(float(s.default) if s.default is not None else dbox.minimum())
            dbox.valueChanged.connect(self.changed)
            return dbox
        if s.type == "bool":
            check = QCheckBox(parent)
            check.setChecked(bool(s.default))
            check.toggled.connect(self.changed)
            return check
        if s.type == "choice":
            combo = QComboBox(parent)
            combo.addItems(list(s.choices))
            if s.default is not None:
                combo.setCurrentText(str(s.default))
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if self._suggest:
            pick = QComboBox(parent, editable=True)
            pick.addItem("")
            if (edit := pick.lineEdit()) is not None:
                edit.setPlaceholderText(f"{AUTO} (the task's own)")
            if s.default is not None:
                pick.setEditText(str(s.default))
            pick.editTextChanged.connect(self.changed)
            return pick
        line = QLineEdit(parent)
        line.setPlaceholderText('{"key": 1}' if s.type == "object" else AUTO)
        if s.default is not None:
            line.setText(str(s.default))
        line.textChanged.connect(self.changed)
        return line

    def _auto_at_minimum(self, box: QSpinBox | QDoubleSpinBox) -> None:
        if self.spec.default is None:
            box.setSpecialValueText(AUTO)  # the lowest value stands for "leave it to the backend"

    def raw(self) -> Any:
        """What the editor holds, None when left to the backend (not yet checked)."""
        w = self.widget
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            return None if w.specialValueText() and w.value() == w.minimum() else w.value()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return (w.currentText().strip() or None) if w.isEditable() else w.currentText()
        assert isinstance(w, QLineEdit)
        return w.text().strip() or None

    def error(self) -> str | None:
        """Why the value is invalid, as the core would say it; None when it is fine."""
        value = self.raw()
        if value is None:
            return None
        try:
            self.spec.coerce(value)
        except SchemaError as err:
            return str(err)
        return None

    def value(self) -> Any:
        """The typed value to send, or None when left to the backend, unchanged from the default, or invalid."""
        value = self.raw()
        if value is None or self.error() is not None:
            return None
        typed = self.spec.coerce(value)
        return None if typed == self.spec.default else typed

    def set_suggestions(self, items: Sequence[tuple[str, str]]) -> None:
        """The values offered in the list (name, tooltip) of a suggesting field; what is typed stays."""
        w = self.widget
        if not (isinstance(w, QComboBox) and w.isEditable()):
            return
        text = w.currentText()
        w.blockSignals(True)
        w.clear()
        w.addItem("")
        for name, tip in items:
            w.addItem(name)
            w.setItemData(w.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        w.setEditText(text)
        w.blockSignals(False)

    def set_value(self, value: Any) -> None:
        """Put a value in the editor (None: back to the default)."""
        w, value = self.widget, self.spec.default if value is None else value
        if isinstance(w, QSpinBox):
            w.setValue(w.minimum() if value is None else int(value))
        elif isinstance(w, QDoubleSpinBox):
            w.setValue(w.minimum() if value is None else float(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, QLineEdit):
            w.setText("" if value is None else json.dumps(value) if isinstance(value, dict) else str(value))


def _num(x: float) -> str:
    return f"{x:g}"


def input_problem(spec: InputSpec, path: str) -> str | None:
    """Why this input path cannot do, judged from the name alone (the core reads the file at submit)."""
    if not path:
        return f"choose the {spec.media} file: {spec.help}" if spec.required else None
    suffix = PurePath(path).suffix.lower().lstrip(".")
    other = next((m for m, names in MEDIA_SUFFIXES.items() if suffix in names and m != spec.media), None)
    if other:
        return f"{PurePath(path).name} is {_a(other)} file, not {_a(spec.media)} file ({spec.help})"
    return None


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def clear_box(box: QWidget) -> None:
    """Remove every child widget and nested layout of ``box`` (the form is rebuilt per task)."""
    if box.layout() is not None:
        _clear_layout(box.layout())


def _clear_layout(layout: Any) -> None:
    while layout.count():
        item = layout.takeAt(0)
        if item.widget() is not None:
            item.widget().hide()  # gone from view now, even before the deferred delete runs
            item.widget().deleteLater()
        elif item.layout() is not None:
            _clear_layout(item.layout())
