"""The settings dialog's "Backends Backlot starts" tab: the launch entries, a table and an editor for one.

Plain data in and out: entries as the settings' plain form (``{name: {"kind", "command": [...], "port", …}}``).
"Add from a folder…" asks for a folder and emits ``preset_requested``; the app layer answers with ``_on_preset``
(the filled-in entry and a note, shown for editing) or ``_on_preset_failed`` (a sentence). Whatever is typed stays
typed: a bad value is named in a sentence and blocks Save, it is never thrown away.
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from backlot.services.launch.entry import LaunchEntry, check_name
from backlot.widgets.param_fields import mark_invalid

STARTS = {"on-demand": "on demand", "with-backlot": "with Backlot"}
RESTARTS = {"on-crash": "on crash", "never": "never"}
COLUMNS = ("Name", "Kind", "Command", "Port", "Starts", "Restarts", "Keeps running")
EDITED = ("kind", "command", "cwd", "port", "start", "restart", "keep_running")  # the rest is kept as it was
HELP = ("Backends Backlot starts with itself or when you press Start on their card, restarts when they crash, and "
        "stops when it closes (unless they keep running). Add from a folder fills one in from a ComfyUI, Wan2GP, "
        "RVC or AudioLDM checkout, or a llama.cpp or Ollama folder.")


@dataclass
class Row:
    """One entry as the editor holds it: text as typed, so nothing is lost while it is not valid yet."""

    name: str
    kind: str = "comfyui"
    command: str = ""
    cwd: str = ""
    port: str = ""
    start: str = "on-demand"
    restart: str = "on-crash"
    keep_running: bool = False
    rest: dict[str, Any] = field(default_factory=dict)  # env, host, timeouts: kept as they were
    note: str = ""
    # where the command and the environment say the port (argument index or variable, and the text before it),
    # so editing the port changes them too
    port_args: list[tuple[int, str]] = field(default_factory=list, compare=False)
    port_env: list[tuple[str, str]] = field(default_factory=list, compare=False)

    def find_port(self) -> None:
        """Note where the command and the environment give the port now."""
        port = self.port.strip()
        self.port_args, self.port_env = [], []
        if not port.isdigit():
            return
        try:
            argv = self.argv()
        except ValueError:
            return
        for i, arg in enumerate(argv):
            if arg == port or arg.endswith(f"={port}"):
                self.port_args.append((i, arg[: -len(port)]))
        env = self.rest.get("env")
        for key, value in (env.items() if isinstance(env, dict) else ()):
            if str(value) == port or str(value).endswith(f":{port}"):
                self.port_env.append((key, str(value)[: -len(port)]))

    def follow_port(self) -> bool:
        """Put the port, as now typed, where the command and the environment said the old one; True if the
        command changed."""
        port = self.port.strip()
        if not port.isdigit():
            return False
        env = self.rest.get("env")
        if isinstance(env, dict):
            self.rest["env"] = {**env, **{key: prefix + port for key, prefix in self.port_env}}
        try:
            argv = self.argv()
        except ValueError:
            return False
        if not self.port_args or any(i >= len(argv) for i, _ in self.port_args):
            return False
        for i, prefix in self.port_args:
            argv[i] = prefix + port
        command = shlex.join(argv)
        changed, self.command = command != self.command, command
        return changed

    @classmethod
    def of(cls, name: str, entry: Mapping[str, Any], note: str = "") -> Row:
        """A row for an entry in its plain form."""
        command = entry.get("command") or []
        row = cls(name, str(entry.get("kind", "")), shlex.join(command) if isinstance(command, list) else str(command),
                  str(entry.get("cwd") or ""), str(entry.get("port", "")), str(entry.get("start", "on-demand")),
                  str(entry.get("restart", "on-crash")), bool(entry.get("keep_running", False)),
                  {k: v for k, v in entry.items() if k not in EDITED}, note)
        row.find_port()
        return row

    def argv(self) -> list[str]:
        """The command as arguments (ValueError for an unclosed quote)."""
        return shlex.split(self.command)

    def entry(self) -> dict[str, Any]:
        """The plain form (ValueError when the command or port cannot be read)."""
        return {**self.rest, "kind": self.kind.strip(), "command": self.argv(), "cwd": self.cwd.strip() or None,
                "port": int(self.port.strip()), "start": self.start, "restart": self.restart,
                "keep_running": self.keep_running}

    def issues(self) -> list[tuple[str, str]]:
        """What is wrong with this entry on its own: (field, sentence) pairs."""
        who = f"'{self.name}'" if self.name else "an entry"
        out = []
        if not self.name.strip():
            out.append(("name", "an entry needs a name"))
        else:
            try:
                check_name(self.name)
            except ValueError as err:
                out.append(("name", str(err)))
        try:
            argv = self.argv()
        except ValueError:
            out.append(("command", f"{who}: the command has a quote that is not closed"))
        else:
            if not argv or not argv[0].strip():
                out.append(("command", f"{who}: the command is empty; give the program to run and its arguments"))
        port = self.port.strip()
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            out.append(("port", f"{who}: the port must be a number from 1 to 65535, got {port!r}"))
        if not self.kind.strip():
            out.append(("kind", f"{who}: choose the kind of backend it is"))
        if not out:
            try:
                LaunchEntry.model_validate(self.entry())
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                out.append((where, f"{who}: {where + ': ' if where else ''}{first['msg']}"))
        return out

    def problems(self) -> list[str]:
        """What is wrong with this entry on its own, as sentences."""
        return [text for _, text in self.issues()]


def _norm(entry: Mapping[str, Any]) -> Any:
    try:
        return LaunchEntry.model_validate(entry).model_dump(mode="json")
    except ValidationError:
        return dict(entry)


class LaunchEntriesEditor(QWidget):
    """The launch entries: a table, the selected one's fields, Add from a folder…, New and Remove."""

    changed = Signal()  # anything was edited, added or removed
    preset_requested = Signal(str)  # a folder to make an entry from

    def __init__(self, entries: Mapping[str, Mapping[str, Any]], kinds: Sequence[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.baseline = {name: _norm(e) for name, e in entries.items()}
        self.rows = [Row.of(name, e) for name, e in sorted(entries.items())]
        self._loading = False
        self._folder_dialog: QFileDialog | None = None
        self.table = QTableWidget(0, len(COLUMNS), objectName="launchTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)  # one line per entry; the whole command is in its tooltip and below
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selected)
        self.add_folder = QPushButton("Add from a folder…", objectName="addFromFolder")
        self.add_folder.setToolTip("Choose a ComfyUI, Wan2GP, RVC or AudioLDM checkout, or a llama.cpp or Ollama "
                                   "folder: the entry is filled in with its Python, flags and a free port")
        self.add_folder.clicked.connect(self._pick_folder)
        self.new_button = QPushButton("New", objectName="newEntry")
        self.new_button.clicked.connect(self.add_blank)
        self.remove_button = QPushButton("Remove", objectName="removeEntry")
        self.remove_button.setToolTip("Remove the selected entry (a running backend is stopped when you save)")
        self.remove_button.clicked.connect(self.remove_selected)
        self.status = QLabel(objectName="presetStatus", wordWrap=True)
        # the selected entry's fields
        self.name = QLineEdit(objectName="launchName")
        self.kind = QComboBox(objectName="launchKind")  # the kinds Backlot knows, no other
        self.kind.addItems(list(kinds))
        self.command = QLineEdit(objectName="launchCommand")
        self.command.setPlaceholderText("/path/to/venv/bin/python main.py --port 8188")
        self.cwd = QLineEdit(objectName="launchCwd")
        self.cwd.setPlaceholderText("default: the program's folder")
        self.port = QLineEdit(objectName="launchPort")
        self.port.setMaximumWidth(90)
        self.start = QComboBox(objectName="launchStart")
        for value, words in STARTS.items():
            self.start.addItem(words, value)
        self.restart = QComboBox(objectName="launchRestart")
        for value, words in RESTARTS.items():
            self.restart.addItem(words, value)
        self.keep_running = QCheckBox("Keep running when Backlot closes (taken back at the next start)",
                                      objectName="launchKeepRunning")
        self.note = QLabel(objectName="launchNote", wordWrap=True)
        self.note.setStyleSheet("color: palette(mid);")
        self.form = QWidget()
        form = QFormLayout(self.form)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Name", self.name)
        form.addRow("Kind", self.kind)
        form.addRow("Command", self.command)
        form.addRow("Folder", self.cwd)
        ports = QHBoxLayout()
        ports.addWidget(self.port)
        ports.addWidget(QLabel("Starts"))
        ports.addWidget(self.start)
        ports.addWidget(QLabel("Restarts"))
        ports.addWidget(self.restart)
        ports.addStretch(1)
        form.addRow("Port", ports)
        form.addRow("", self.keep_running)
        form.addRow("", self.note)
        for edit in (self.name, self.command, self.cwd, self.port):
            edit.textChanged.connect(self._on_edited)
        self.kind.currentTextChanged.connect(self._on_edited)
        for box in (self.start, self.restart):
            box.currentIndexChanged.connect(self._on_edited)
        self.keep_running.toggled.connect(self._on_edited)
        buttons = QHBoxLayout()
        for b in (self.add_folder, self.new_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        intro = QLabel(HELP, wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.form)
        self._fill_table()
        self.select(0 if self.rows else -1)

    # ----- reading -----
    def current(self) -> int:
        """The selected row's index (-1: none)."""
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else -1

    def problems(self) -> list[str]:
        """Sentences for everything that keeps the entries from being saved (each entry, then clashes)."""
        out = [p for row in self.rows for p in row.problems()]
        names: set[str] = set()
        ports: dict[str, Row] = {}
        for row in self.rows:
            if row.name in names:
                out.append(f"two entries are named '{row.name}'; give each its own name")
            names.add(row.name)
            port = row.port.strip()
            if port.isdigit():
                other = ports.setdefault(f"{row.rest.get('host', '127.0.0.1')}:{port}", row)
                if other is not row:
                    out.append(f"'{other.name}' and '{row.name}' both use port {port}; give one another port")
        return out

    def values(self) -> dict[str, dict[str, Any]]:
        """Every entry's plain form (only when ``problems()`` is empty)."""
        return {row.name: row.entry() for row in self.rows}

    def changes(self) -> dict[str, dict[str, Any] | None]:
        """Entries added or changed (their plain form) and removed (None), against what the dialog opened with."""
        now = {name: _norm(e) for name, e in self.values().items()}
        out: dict[str, dict[str, Any] | None] = {n: e for n, e in now.items() if self.baseline.get(n) != e}
        out.update({n: None for n in self.baseline if n not in now})
        return out

    def saved(self) -> None:
        """The entries were written: they are the new baseline."""
        self.baseline = {name: _norm(e) for name, e in self.values().items()}

    # ----- editing -----
    def add_row(self, row: Row) -> None:
        """Add an entry (its name made unique) and select it for editing."""
        base, n = row.name or "backend", 2
        row.name = base
        taken = {r.name for r in self.rows}
        while row.name in taken:
            row.name, n = f"{base}-{n}", n + 1
        self.rows.append(row)
        self._fill_table()
        self.select(len(self.rows) - 1)
        self.changed.emit()

    def add_blank(self) -> None:
        """A new entry to fill in by hand."""
        self.add_row(Row("backend", note="Give the program and its arguments, and the port it listens on."))
        self.command.setFocus()

    def remove_selected(self) -> None:
        """Remove the selected entry."""
        i = self.current()
        if i < 0:
            return
        del self.rows[i]
        self._fill_table()
        self.select(min(i, len(self.rows) - 1))
        self.changed.emit()

    def select(self, i: int) -> None:
        """Select row ``i`` (-1: none) and show it in the fields."""
        if 0 <= i < len(self.rows):
            self.table.selectRow(i)
        else:
            self.table.clearSelection()
        self._on_selected()

    def add_from_folder(self, folder: str) -> None:
        """Ask for the entry a folder would make (the app layer answers with ``_on_preset``)."""
        if folder:
            self.status.setText(f"Looking at {folder}…")
            self.status.setStyleSheet("")
            self.preset_requested.emit(folder)

    # ----- slots fed by the app layer -----
    def _on_preset(self, name: str, entry: Mapping[str, Any], note: str) -> None:
        """The filled-in entry for the folder: added and selected for editing, with its note."""
        row = Row.of(name, entry, note)
        self.add_row(row)
        self.status.setText(f"Added '{row.name}': check it, then Save.")
        self.status.setStyleSheet("")

    def _on_preset_failed(self, sentence: str) -> None:
        """The folder is not one Backlot knows how to start."""
        self.status.setText(sentence)
        self.status.setStyleSheet("color: #d33c3c;")

    # ----- internals -----
    def _pick_folder(self) -> None:
        dialog = QFileDialog(self, "A backend's folder")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly)
        dialog.fileSelected.connect(self.add_from_folder)
        self._folder_dialog = dialog
        dialog.open()

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            self._fill_row(i, row)

    def _fill_row(self, i: int, row: Row) -> None:
        cells = (row.name, row.kind, row.command, row.port, STARTS.get(row.start, row.start),
                 RESTARTS.get(row.restart, row.restart), "yes" if row.keep_running else "no")
        for col, text in enumerate(cells):
            item = self.table.item(i, col)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(i, col, item)
            item.setText(text.replace("\n", " "))  # one line per entry
            item.setToolTip(text if col == 2 else "")

    def _on_selected(self) -> None:
        i = self.current()
        has = 0 <= i < len(self.rows)
        self.form.setEnabled(has)
        self.remove_button.setEnabled(has)
        row = self.rows[i] if has else Row("")
        self._loading = True
        try:
            self.name.setText(row.name)
            if row.kind and self.kind.findText(row.kind) < 0:
                self.kind.addItem(row.kind)
            self.kind.setCurrentText(row.kind)
            self.command.setText(row.command)
            self.command.setCursorPosition(0)  # the program first
            self.cwd.setText(row.cwd)
            self.cwd.setCursorPosition(0)
            self.port.setText(row.port)
            self.start.setCurrentIndex(max(0, self.start.findData(row.start)))
            self.restart.setCurrentIndex(max(0, self.restart.findData(row.restart)))
            self.keep_running.setChecked(row.keep_running)
            self.note.setText(row.note)
            self.note.setVisible(bool(row.note))
        finally:
            self._loading = False
        self._mark(row if has else None)

    def _on_edited(self, *_: object) -> None:
        i = self.current()
        if self._loading or not 0 <= i < len(self.rows):
            return
        row = self.rows[i]
        port_edited = self.port.text() != row.port
        command_edited = self.command.text() != row.command
        row.name = self.name.text().strip()
        row.kind = self.kind.currentText().strip()
        row.cwd = self.cwd.text()
        row.port = self.port.text()
        row.start = str(self.start.currentData())
        row.restart = str(self.restart.currentData())
        row.keep_running = self.keep_running.isChecked()
        row.command = self.command.text()
        if command_edited:
            row.find_port()  # the user rewrote the command: where it says the port now
        elif port_edited and row.follow_port():  # the command says the port too: it follows
            self._loading = True
            self.command.setText(row.command)
            self._loading = False
        self._fill_row(i, row)
        self._mark(row)
        self.changed.emit()

    def _mark(self, row: Row | None) -> None:
        issues = row.issues() if row is not None else []
        for name, edit in (("name", self.name), ("command", self.command), ("port", self.port), ("cwd", self.cwd)):
            mark_invalid(edit, next((text for where, text in issues if where == name), None))
